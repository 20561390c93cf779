"""`ghostq data check`: every problem of a dataset in one pass, each naming its file and line.

The loaders run with a collecting `Issues`, so the parsing code is the loaders' own: a line that does not
parse, an unknown class, an annotation whose image is missing, an image whose header cannot be read and an
empty dataset come from there. This module adds what needs the records: a full decode of every image (and
IR image), boxes outside the image or degenerate, and duplicate boxes.

Severities: `error` for what makes the data wrong or unusable (a box that is degenerate or extends more
than `tolerance` px beyond the image is an error too, DESIGN §8); `warning` for what is suspicious but
usable (duplicates, zero-area polygons, a size in the annotation that differs from the image, no IR image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ghostq.detect.data.formats import Entry, Issues, Problem, load_annotated
from ghostq.detect.data.records import ImageRecord

__all__ = ["Problem", "check_dataset", "summarize"]

DEFAULT_TOLERANCE = 2.0  # px a box may extend beyond the image before it is reported
DEFAULT_DUPLICATE_IOU = 0.95  # same class and IoU above this (or identical) -> duplicate


def check_dataset(
    fmt: str,
    root: str | Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    duplicate_iou: float = DEFAULT_DUPLICATE_IOU,
    decode_images: bool = True,
    **options: Any,
) -> list[Problem]:
    """Every problem found in the dataset (errors and warnings), in file order.

    `options` go to the format's loader (e.g. `resolution=1024` for VEDAI, `require_images=False` to check
    COCO/DIOR annotations without their images). `decode_images=False` skips the full decode (fast).
    """
    issues = Issues(collect=True)
    ds, entries = load_annotated(fmt, root, issues, skip_missing=True, **options)
    for rec, entry in zip(ds.records, entries, strict=True):
        if decode_images and rec.path.is_file():
            _check_image(rec.path, issues)
        if rec.ir_path is not None and not rec.ir_path.is_file():
            issues.error(rec.ir_path, f"infrared image of {rec.file_name} is missing")
        elif rec.ir_path is not None and decode_images:
            _check_image(rec.ir_path, issues)
        elif rec.ir_path is None and fmt == "vedai" and rec.path.is_file():
            stem = rec.path.name.removesuffix("_co.png")
            issues.warning(rec.path, f"no infrared image beside it (expected {stem}_ir.png)")
        _check_boxes(rec, entry, issues, tolerance, ds.classes)
        _check_duplicates(rec, entry, issues, duplicate_iou, ds.classes)
    return issues.problems


def summarize(problems: list[Problem]) -> dict[str, int]:
    """Counts by severity."""
    errors = sum(p.severity == "error" for p in problems)
    return {"errors": errors, "warnings": len(problems) - errors}


def _check_image(path: Path, issues: Issues) -> None:
    """Decode the whole image: verify() checks the structure (PNG CRCs), load() decodes every pixel."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad data
        issues.error(path, f"corrupt image: cannot decode it ({type(err).__name__}: {err})")


def _where(entry: Entry, k: int) -> tuple[Path | str, int | None, str]:
    obj = entry.objects[k]
    prefix = f"{obj.ref}: " if obj.ref else ""
    return entry.ann_path or entry.image_path, obj.line, prefix


def _fmt_box(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box.tolist()) + ")"


def _polygon_area(poly: np.ndarray) -> float:
    xs, ys = poly[0::2], poly[1::2]
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _check_boxes(
    rec: ImageRecord, entry: Entry, issues: Issues, tolerance: float, classes: tuple[str, ...]
) -> None:
    w, h = rec.width, rec.height
    for k, box in enumerate(rec.boxes):
        path, line, prefix = _where(entry, k)
        x1, y1, x2, y2 = (float(v) for v in box)
        name = classes[int(rec.labels[k])]
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            issues.error(
                path,
                f"{prefix}degenerate {name} box {_fmt_box(box)}: width {x2 - x1:g}, height {y2 - y1:g}",
                line,
            )
        elif rec.polygons is not None and _polygon_area(rec.polygons[k].astype(np.float64)) <= 0:
            issues.warning(path, f"{prefix}degenerate {name} polygon (zero area)", line)
        if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
            inside = x2 > 0 and y2 > 0 and x1 < w and y1 < h
            how = "extends" if inside else "lies entirely"
            issues.error(
                path,
                f"{prefix}{name} box {_fmt_box(box)} {how} outside the {w}x{h} image ({entry.file_name})",
                line,
            )


def _iou(rows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of each row box with each box, (len(rows), len(boxes)); 0 where the union is empty."""

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)

    iw = np.minimum(rows[:, None, 2], boxes[None, :, 2]) - np.maximum(rows[:, None, 0], boxes[None, :, 0])
    ih = np.minimum(rows[:, None, 3], boxes[None, :, 3]) - np.maximum(rows[:, None, 1], boxes[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area(rows)[:, None] + area(boxes)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _check_duplicates(
    rec: ImageRecord,
    entry: Entry,
    issues: Issues,
    threshold: float,
    classes: tuple[str, ...],
    chunk: int = 512,
) -> None:
    """Same class and IoU > threshold (or identical coordinates): each later box is named once."""
    for label in np.unique(rec.labels):
        idx = np.flatnonzero(rec.labels == label)
        boxes = rec.boxes[idx].astype(np.float64)
        reported: set[int] = set()
        for start in range(0, len(idx), chunk):  # row chunks keep memory O(chunk * n) on crowded images
            rows = boxes[start : start + chunk]
            iou = _iou(rows, boxes)
            same = np.all(rows[:, None, :] == boxes[None, :, :], axis=2)
            later = np.arange(len(boxes))[None, :] > np.arange(start, start + len(rows))[:, None]
            for r, j in zip(*np.nonzero(((iou > threshold) | same) & later), strict=True):
                if j in reported:
                    continue
                reported.add(int(j))
                path, line, prefix = _where(entry, int(idx[j]))
                _, first_line, first_prefix = _where(entry, int(idx[start + r]))
                other = (
                    f"the one on line {first_line}" if first_line is not None else first_prefix.rstrip(": ")
                )
                what = "identical to" if same[r, j] else f"IoU {iou[r, j]:.2f} with"
                issues.warning(path, f"{prefix}duplicate {classes[int(label)]} box: {what} {other}", line)
