"""Full-precision training: `ghostq train CONFIG` (one process) or under torchrun (DDP, rank 0 writes).

Every epoch writes `fp/last.pt` (model, EMA, optimizer, scheduler, scaler, RNG, epoch) atomically, so
`--resume` continues exactly; `fp/best.pt` keeps the EMA weights with the best val mAP50. A non-finite loss
stops training with a clear message and leaves the last good checkpoint untouched.

Rank 0 holds the run folder's lock for the whole call. A finished `fp/` is never retrained under a changed
config without `--force`, and `--resume` refuses changed settings it cannot honour (the optimizer, schedule and
RNG continue from the checkpoint), so `config.yaml` never records what did not happen.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ghostq.core.config import Config, config_hash
from ghostq.core.errors import GhostqError
from ghostq.core.runs import RunDir, config_changes
from ghostq.detect.builders import (  # noqa: F401  (re-exported: the training API in one place)
    augment_from_config,
    build_loss_from_config,
    build_model_from_config,
    lr_factor,
    make_optimizer,
    pick_device,
)
from ghostq.detect.data.prepare import data_fingerprint, prepare_data
from ghostq.detect.distributed import init_distributed
from ghostq.detect.trainer import Trainer

TRAIN_SECTIONS = ["run", "data", "model", "train", "loss"]
# What --resume honours when it differs from fp/last.pt: the loop runs to the new epoch count (the schedule is
# rebuilt for it), the rest only says where and how often the work runs.
RESUME_MAY_CHANGE = frozenset(
    {"train.epochs", "train.val_every", "train.device", "train.threads", "data.workers", "data.cache_images"}
)


@dataclass
class TrainResult:
    """Where training left its artifacts, and its headline numbers."""

    run_dir: Path
    best_path: Path
    metrics: dict[str, Any]
    model: nn.Module  # the trained model (EMA weights when EMA is on), on CPU
    skipped: bool = False


def train(
    cfg: Config,
    *,
    resume: bool = False,
    force: bool = False,
    stop_after: int | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train the detector of `cfg`; skip when `fp/` is current (same config and data) unless forced."""
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    info = init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    run = RunDir(cfg.run_dir)
    with ExitStack() as stack:
        if info.is_main:
            stack.enter_context(run.lock("ghostq train"))
            if resume:
                check_resumable(run.path / "fp" / "last.pt", cfg)
            elif not force:
                run.require_same_config(cfg.model_dump(mode="json"), {"train": TRAIN_SECTIONS})
        return _train(cfg, run, info, device, resume=resume, force=force, stop_after=stop_after,
                      show_progress=show_progress)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def check_resumable(last: Path, cfg: Config) -> None:
    """One-line GhostqError when `cfg` differs from `last`'s config in a way --resume cannot honour."""
    from ghostq.detect.checkpoint import load_checkpoint

    if not last.is_file():
        raise GhostqError(f"{last}: nothing to resume from (train without --resume)")
    saved = load_checkpoint(last)["config"]
    changes = [c for c in config_changes(saved, cfg.model_dump(mode="json"), TRAIN_SECTIONS)
               if c.split(" ", 1)[0] not in RESUME_MAY_CHANGE]
    if not changes:
        return
    sections = sorted({c.split(".", 1)[0] for c in changes} & {"data", "model", "loss"})
    if sections:
        raise GhostqError(f"{last}: cannot resume: config sections {sections} differ from the checkpoint's "
                          f"({'; '.join(changes)}); retrain with --force instead")
    raise GhostqError(f"{last}: --resume cannot honour changed {'; '.join(changes)} (the optimizer, schedule and "
                      "RNG continue from the checkpoint); resume with the checkpoint's values, or retrain with --force")


def _train(cfg: Config, run: RunDir, info: Any, device: torch.device, *, resume: bool, force: bool,
           stop_after: int | None, show_progress: bool) -> TrainResult:
    if info.enabled and not info.is_main:
        torch.distributed.barrier()  # rank 0 generates / reads the data first
    splits = prepare_data(cfg)
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    digest = config_hash(cfg, TRAIN_SECTIONS) + ":" + data_fingerprint(splits)
    best = run.path / "fp" / "best.pt"
    if not (force or resume) and run.is_current("train", digest):
        from ghostq.detect.checkpoint import load_detector

        metrics = _read_json(run.path / "fp" / "metrics.json")
        return TrainResult(run.path, best, metrics, load_detector(best)[0], skipped=True)
    trainer = Trainer(cfg, splits, info, device)
    if resume:
        if not (trainer.fp_dir / "last.pt").is_file():
            raise GhostqError(
                f"{trainer.fp_dir / 'last.pt'}: nothing to resume from (train without --resume)"
            )
        trainer.load_last()
    if not info.is_main:
        summary = trainer.fit(stop_after, show_progress)
    else:
        with run.stage("train", digest) as stage:
            summary = trainer.fit(stop_after, show_progress)
            for name in ("best.pt", "last.pt", "metrics.json", "curves.png"):
                stage.add_artifact(trainer.fp_dir / name)
            if summary["epochs_done"] < cfg.train.epochs:
                stage.status = "partial"
            run.write_config(cfg.model_dump(mode="json"))  # not an artifact: `ghostq run` rewrites it whole
    final = trainer._eval_model()
    return TrainResult(run.path, best, summary, final.cpu() if info.is_main else final)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
