"""The compress stage: the run's FP checkpoint -> GHOST (or a PTQ / QAT baseline) -> runs/<name>/ghost/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.stages.runner import Session, read_json, session


@dataclass
class CompressResult:
    """Where the stage left its artifacts, its metrics (with the cost tables) and the quantized model."""

    out_dir: Path
    metrics: dict[str, Any]
    model: nn.Module | None
    skipped: bool = False


def compress(cfg: Config, ccfg: CompressConfig | None = None, *, force: bool = False, max_steps: int | None = None,
             show_progress: bool = True, within: Session | None = None) -> CompressResult:
    """Run the compress stage of `cfg` (with `ccfg` as its compress section when given); skipped when current."""
    if ccfg is not None:
        cfg = cfg.model_copy(update={"compress": ccfg})
    with session(cfg, "ghostq compress", given=within) as s:
        return _compress(s, cfg, force=force, max_steps=max_steps, show_progress=show_progress)
    raise AssertionError("unreachable")  # the session does not swallow exceptions


def _compress(s: Session, cfg: Config, *, force: bool, max_steps: int | None, show_progress: bool) -> CompressResult:
    from ghostq.compress.pipeline import compress_detector, write_compressed
    from ghostq.detect.checkpoint import checkpoint_spec, load_detector
    from ghostq.export.scale_groups_trace import trace_scale_groups

    source = Path(cfg.compress.source) if cfg.compress.source else s.run.path / "fp" / "best.pt"
    if not source.is_file():
        raise GhostqError(f"{source}: no full-precision checkpoint to compress (run `ghostq train` first)")
    out_dir = s.run.path / "ghost"
    digest = s.digest("compress", cfg=cfg)
    if s.is_current("compress", digest, [source], force=force):
        return CompressResult(out_dir, read_json(out_dir / "metrics.json"), None, skipped=True)
    fp, payload = load_detector(source)
    assert s.dist is not None and s.device is not None  # the session joined the devices
    spec = checkpoint_spec(payload)
    done = compress_detector(cfg, fp, spec, s.data(), s.dist, s.device, trace_scale_groups, source=source,
                             max_steps=max_steps, show_progress=show_progress)
    if not s.is_main:
        return CompressResult(out_dir, done.metrics, done.model)
    with s.record("compress", digest, [source]) as stage:
        for path in write_compressed(out_dir, cfg, spec, done):
            stage.add_artifact(path)
    return CompressResult(out_dir, {**done.metrics, "table": done.tables}, done.model)
