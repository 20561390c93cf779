"""Evaluate a checkpoint alone (no config): ``ghostq eval --model PATH.pt --data ROOT --format FMT`` or
``--gt ann.json --images DIR``.

The caller loads the model (``ghostq.detect.checkpoint.load_detector``, or ``ghostq.compress.pipeline.
load_quantized`` for a compressed one); its input size and channels, its inference head (LogitClip included)
and its decode settings all come from the checkpoint's model spec; the data's classes are matched to the
model's by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset
from ghostq.core.spec import DecodeSpec, ModelSpec


def load_eval_dataset(
    spec: ModelSpec,
    *,
    root: str | Path | None = None,
    fmt: str | None = None,
    gt: str | Path | None = None,
    images: str | Path | None = None,
) -> Dataset:
    """The labelled images to score a model on (a dataset folder in `fmt`, or a COCO json + image folder), its
    classes put in the model's order; a class of the model the data lacks is a one-line error."""
    from ghostq.detect.data.formats import load_dataset
    from ghostq.detect.data.prepare import select_classes

    if gt is not None:
        if root is not None or fmt not in (None, "coco"):
            raise GhostqError("give either --gt ann.json (with --images DIR) or --data ROOT --format FMT")
        ds = load_dataset("coco", gt, **({"image_dir": images} if images is not None else {}))
    elif root is not None and fmt is not None:
        ds = load_dataset(fmt, root)
    else:
        raise GhostqError("evaluating a checkpoint alone needs --data ROOT --format FMT, or --gt ann.json --images DIR")
    known = {c.lower() for c in ds.classes}
    missing = [c for c in spec.classes if c.lower() not in known]
    if missing:
        raise GhostqError(f"{ds.root}: the data has no class {missing[0]!r} of the model "
                          f"(model: {', '.join(spec.classes)}; data: {', '.join(ds.classes)})")
    ds = select_classes(ds, spec.classes)
    if not ds.records:
        raise GhostqError(f"{ds.root}: the dataset holds no images")
    return ds


def evaluate_model(
    model: torch.nn.Module,
    spec: ModelSpec,
    ds: Dataset,
    metric: str = "coco",
    decode: DecodeSpec | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Detections of `model` (full-precision or compressed, with its checkpoint's spec) on every image of `ds`,
    scored with `metric`; `decode` defaults to the spec's."""
    from ghostq.detect.data.coco_json import dataset_to_coco
    from ghostq.detect.evaluate import evaluate
    from ghostq.detect.inference import make_eval_loader, predict_loader

    loader = make_eval_loader(ds.records, spec.img_size, spec.in_channels, workers=workers)
    dets = predict_loader(model, loader, spec, torch.device("cpu"), decode)
    return evaluate(dataset_to_coco(ds), dets, metric=metric)
