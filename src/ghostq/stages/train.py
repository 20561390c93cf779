"""The train stage: full-precision training of the config's detector into runs/<name>/fp/.

Every epoch writes `fp/last.pt` atomically, so `--resume` continues exactly; `fp/best.pt` keeps the EMA weights
with the best val mAP50. A finished `fp/` is never retrained under a changed config without `--force`, and
`--resume` refuses changed settings it cannot honour (the optimizer, schedule and RNG continue from the
checkpoint), so `config.yaml` never records what did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.runs import config_changes
from ghostq.stages.runner import STAGE_SECTIONS, Session, read_json, session

# What --resume honours when it differs from fp/last.pt: the loop runs to the new epoch count (the schedule is
# rebuilt for it), the rest only says where and how often the work runs.
RESUME_MAY_CHANGE = frozenset(
    {"train.epochs", "train.val_every", "train.device", "train.threads", "data.workers", "data.cache_images"}
)
ARTIFACTS = ("best.pt", "last.pt", "metrics.json", "curves.png")


@dataclass
class TrainResult:
    """Where training left its artifacts, and its headline numbers."""

    run_dir: Path
    best_path: Path
    metrics: dict[str, Any]
    model: nn.Module  # the trained model (EMA weights when EMA is on), on CPU
    skipped: bool = False


def train(cfg: Config, *, resume: bool = False, force: bool = False, stop_after: int | None = None,
          show_progress: bool = True, within: Session | None = None) -> TrainResult:
    """Train the detector of `cfg`; skip when `fp/` is current (same config and data) unless forced."""
    with session(cfg, "ghostq train", given=within) as s:
        if resume and s.is_main:
            check_resumable(s.run.path / "fp" / "last.pt", cfg)
        elif not force and within is None:
            s.require_same_config(["train"])
        return _train(s, resume=resume, force=force, stop_after=stop_after, show_progress=show_progress)
    raise AssertionError("unreachable")  # the session does not swallow exceptions


def check_resumable(last: Path, cfg: Config) -> None:
    """One-line GhostqError when `cfg` differs from `last`'s config in a way --resume cannot honour."""
    from ghostq.detect.checkpoint import load_checkpoint

    if not last.is_file():
        raise GhostqError(f"{last}: nothing to resume from (train without --resume)")
    saved = load_checkpoint(last)["config"]
    changes = [c for c in config_changes(saved, cfg.model_dump(mode="json"), STAGE_SECTIONS["train"])
               if c.split(" ", 1)[0] not in RESUME_MAY_CHANGE]
    if not changes:
        return
    sections = sorted({c.split(".", 1)[0] for c in changes} & {"data", "model", "loss"})
    if sections:
        raise GhostqError(f"{last}: cannot resume: config sections {sections} differ from the checkpoint's "
                          f"({'; '.join(changes)}); retrain with --force instead")
    raise GhostqError(f"{last}: --resume cannot honour changed {'; '.join(changes)} (the optimizer, schedule and "
                      "RNG continue from the checkpoint); resume with the checkpoint's values, or retrain with --force")


def _train(s: Session, *, resume: bool, force: bool, stop_after: int | None, show_progress: bool) -> TrainResult:
    from ghostq.detect.data.prepare import data_fingerprint
    from ghostq.detect.trainer import Trainer

    cfg, run = s.cfg, s.run
    splits = s.data()
    digest = s.digest("train", data_fingerprint(splits))
    best = run.path / "fp" / "best.pt"
    if not resume and s.is_current("train", digest, force=force):
        from ghostq.detect.checkpoint import load_detector

        return TrainResult(run.path, best, read_json(run.path / "fp" / "metrics.json"), load_detector(best)[0],
                           skipped=True)
    assert s.dist is not None and s.device is not None  # the session joined the devices
    trainer = Trainer(cfg, splits, s.dist, s.device)
    if resume:
        if not (trainer.fp_dir / "last.pt").is_file():
            raise GhostqError(f"{trainer.fp_dir / 'last.pt'}: nothing to resume from (train without --resume)")
        trainer.load_last()
    if not s.is_main:
        summary = trainer.fit(stop_after, show_progress)
    else:
        with s.record("train", digest) as stage:
            summary = trainer.fit(stop_after, show_progress)
            for name in ARTIFACTS:
                stage.add_artifact(trainer.fp_dir / name)
            if summary["epochs_done"] < cfg.train.epochs:
                stage.status = "partial"
            run.write_config(cfg.model_dump(mode="json"))  # not an artifact: `ghostq run` rewrites it whole
    final = trainer.best_model()
    return TrainResult(run.path, best, summary, final.cpu() if s.is_main else final)
