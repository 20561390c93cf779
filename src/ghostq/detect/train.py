"""Full-precision training: `ghostq train CONFIG` (one process) or under torchrun (DDP, rank 0 writes).

Every epoch writes `fp/last.pt` (model, EMA, optimizer, scheduler, scaler, RNG, epoch) atomically, so
`--resume` continues exactly; `fp/best.pt` keeps the EMA weights with the best val mAP50. A non-finite loss
stops training with a clear message and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ghostq.atomic import atomic_write_text
from ghostq.config import Config, config_hash
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
from ghostq.errors import GhostqError
from ghostq.runs import RunDir

TRAIN_SECTIONS = ["run", "data", "model", "train", "loss"]


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
    if info.is_main:
        import yaml

        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            run.path / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    if not info.is_main:
        summary = trainer.fit(stop_after, show_progress)
    else:
        with run.stage("train", digest) as stage:
            summary = trainer.fit(stop_after, show_progress)
            for name in ("best.pt", "last.pt", "metrics.json", "curves.png"):
                stage.add_artifact(trainer.fp_dir / name)
            if summary["epochs_done"] < cfg.train.epochs:
                stage.status = "partial"
    final = trainer._eval_model()
    return TrainResult(run.path, best, summary, final.cpu() if info.is_main else final)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
