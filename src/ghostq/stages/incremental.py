"""The incremental stage: add classes to a trained detector without its old data (ACIL, `ghostq.detect.acil_head`).

First call, on a plain checkpoint (``fp/best.pt``): the base fit, an analytic head for the model's own classes on
the config's train split. Every later call, on a checkpoint the stage wrote: one phase, new data only (``data``
in ``fmt``, its images that hold a class of ``classes``, only those classes labelled); the old data is not read.
Each call writes a new checkpoint (model with its analytic head, A and W per level, the buffer seed, the classes)
that eval, predict, export and compress take like any other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.records import ImageRecord
from ghostq.core.writable import require_writable_file


@dataclass(frozen=True)
class AnalyticSettings:
    """Settings of the base fit (later phases keep those stored in the checkpoint)."""

    buffer_dim: int = 1024
    gamma: float = 0.1
    seed: int = 0
    keep: float = 0.1
    background_weight: float | None = None  # None: 1 / keep (unbiased)


@dataclass
class IncrementalResult:
    """What a call wrote and fitted."""

    out: Path
    classes: list[str]
    phase: dict[str, Any]
    kept_bytes: int
    seconds: float


def incremental(cfg: Config, model_path: Path, out: Path, *, data: Path | None = None, fmt: str | None = None,
                classes: list[str] | None = None, all_images: bool = False,
                settings: AnalyticSettings | None = None) -> IncrementalResult:
    """Base fit (plain checkpoint, no `classes`) or one phase (a checkpoint with an analytic head, `classes` and
    `data`); writes `out` atomically."""
    from ghostq.detect.acil_checkpoint import ACIL_KEY, load_incremental, start_incremental
    from ghostq.detect.acil_head import RowSampling
    from ghostq.detect.checkpoint import load_checkpoint, load_detector

    require_writable_file(out, "--out checkpoint")
    if out.resolve() == model_path.resolve():
        raise GhostqError(f"{out}: --out must differ from --model (the previous phase is kept)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    start = time.time()
    if ACIL_KEY in load_checkpoint(model_path):
        if not classes or data is None:
            raise GhostqError(f"{model_path}: a phase needs --classes NAME,... and --data ROOT (the new data only)")
        model, _, spec, state = load_incremental(model_path)
        records = phase_records(data, fmt or cfg.data.format, classes, all_images)
        source = str(data)
    else:
        if classes or data is not None:
            raise GhostqError(f"{model_path}: a plain checkpoint: fit its base first (no --classes / --data), then "
                              "add classes to the checkpoint that call writes")
        s = settings or AnalyticSettings()
        model, payload = load_detector(model_path)
        model, spec, state = start_incremental(model, payload, buffer_dim=s.buffer_dim, gamma=s.gamma, seed=s.seed,
                                               sampling=RowSampling(s.keep, s.background_weight, s.seed))
        classes, records = list(spec.classes), base_records(cfg, spec.classes)
        source = f"{cfg.data.root or cfg.data.format} train split"
    phase = run_phase(model, spec, state, records, classes, source, cfg.data.workers)
    from ghostq.detect.acil_checkpoint import save_incremental, spec_for

    save_incremental(out, model, spec_for(spec, state), state)
    return IncrementalResult(out, list(state.classes), phase, state.kept_bytes(), time.time() - start)


def run_phase(model: torch.nn.Module, spec: Any, state: Any, records: list[ImageRecord], classes: list[str],
              source: str, workers: int = 0) -> dict[str, Any]:
    """Stream `records` through the frozen model and absorb them as one phase of `classes`."""
    from ghostq.detect.acil_checkpoint import fit_phase
    from ghostq.detect.acil_head import model_batches
    from ghostq.detect.inference import make_eval_loader

    loader = make_eval_loader(records, spec.img_size, spec.in_channels, workers=workers, cache_images=False)
    with torch.no_grad():
        fit_phase(model, state, model_batches(model, loader), classes, source)
    return state.phases[-1]


def base_records(cfg: Config, classes: tuple[str, ...]) -> list[ImageRecord]:
    """The config's train images that hold a class of the model, only those labelled."""
    from ghostq.detect.data.prepare import prepare_data

    splits = prepare_data(cfg)
    if [c.lower() for c in splits.classes] != [c.lower() for c in classes]:
        raise GhostqError(f"the config's data classes {list(splits.classes)} are not the model's {list(classes)} "
                          "(set data.classes to the model's)")
    return [r for r in splits.train if len(r.labels)]


def phase_records(root: Path, fmt: str, classes: list[str], all_images: bool) -> list[ImageRecord]:
    """The new data: `root` in `fmt`, only `classes` labelled (in that order); images with none of them are
    dropped unless `all_images`."""
    from ghostq.detect.data.formats import load_dataset
    from ghostq.detect.data.prepare import select_classes

    if fmt == "synthetic":
        fmt = "dota"  # the built-in set is written in DOTA format
    ds = select_classes(load_dataset(fmt, root), tuple(classes))
    records = [r for r in ds.records if all_images or len(r.labels)]
    if not records:
        raise GhostqError(f"{root}: no image holds an object of {classes}")
    return [replace(r) for r in records]
