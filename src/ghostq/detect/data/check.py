"""`ghostq data check`: every problem of a dataset in one pass, each naming its file and line.

The loaders run with a collecting `Issues`, so the parsing code is the loaders' own: a line that does not
parse, an unknown class, an annotation whose image is missing, an image whose header cannot be read and an
empty dataset come from there. This module adds what needs the records: a full decode of every image (and
IR image), boxes outside the image or degenerate, and duplicate boxes.

Severities: `error` for what makes the data wrong or unusable (a box that is degenerate or extends more
than `tolerance` px beyond the image is an error too, DESIGN §8); `warning` for what is suspicious but
usable (duplicates, zero-area polygons, a size in the annotation that differs from the image, no IR image).

It scales to crowded files: duplicates are found by hashing identical boxes and a sort-and-sweep for IoU
(near-linear), and at most MAX_PER_FILE problems of each severity are listed per file, the rest counted in
one summary entry (`Problem.count`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ghostq.core.records import ImageRecord
from ghostq.detect.data.formats import Entry, Issues, Problem, load_annotated

__all__ = ["Problem", "check_dataset", "summarize"]

DEFAULT_TOLERANCE = 2.0  # px a box may extend beyond the image before it is reported
DEFAULT_DUPLICATE_IOU = 0.95  # same class and IoU above this (or identical) -> duplicate
MAX_PER_FILE = 100  # problems of one severity listed per file; the rest are counted in one entry
DUPLICATE_PAIR_BUDGET = 20_000_000  # box comparisons per class and image before the duplicate search stops


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
    issues = Issues(collect=True, per_file=MAX_PER_FILE)
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
    return issues.finish()


def summarize(problems: list[Problem]) -> dict[str, int]:
    """Counts by severity (a summary entry counts for the problems it stands for)."""
    errors = sum(p.count for p in problems if p.severity == "error")
    return {"errors": errors, "warnings": sum(p.count for p in problems) - errors}


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


def _polygon_areas(polys: np.ndarray) -> np.ndarray:
    """Shoelace area of each (N, 8) polygon x1 y1 .. x4 y4."""
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    with np.errstate(over="ignore", invalid="ignore"):  # float32-range corners may overflow: not degenerate
        cross = xs * np.roll(ys, -1, axis=1) - ys * np.roll(xs, -1, axis=1)
        return 0.5 * np.abs(cross.sum(axis=1))


def _check_boxes(
    rec: ImageRecord, entry: Entry, issues: Issues, tolerance: float, classes: tuple[str, ...]
) -> None:
    """Degenerate boxes and polygons, boxes outside the image; only the flagged boxes are visited in Python."""
    w, h = rec.width, rec.height
    b = rec.boxes.astype(np.float64)
    degenerate = (b[:, 2] - b[:, 0] <= 0) | (b[:, 3] - b[:, 1] <= 0)
    flat = np.zeros(len(b), dtype=bool)
    if rec.polygons is not None:
        flat = ~degenerate & (_polygon_areas(rec.polygons.astype(np.float64)) <= 0)
    outside = (b[:, 0] < -tolerance) | (b[:, 1] < -tolerance) | (b[:, 2] > w + tolerance) | (b[:, 3] > h + tolerance)
    for k in np.flatnonzero(degenerate | flat | outside).tolist():
        box = rec.boxes[k]
        path, line, prefix = _where(entry, k)
        x1, y1, x2, y2 = (float(v) for v in box)
        name = classes[int(rec.labels[k])]
        if degenerate[k]:
            issues.error(
                path,
                f"{prefix}degenerate {name} box {_fmt_box(box)}: width {x2 - x1:g}, height {y2 - y1:g}",
                line,
            )
        elif flat[k]:
            issues.warning(path, f"{prefix}degenerate {name} polygon (zero area)", line)
        if outside[k]:
            inside = x2 > 0 and y2 > 0 and x1 < w and y1 < h
            how = "extends" if inside else "lies entirely"
            issues.error(
                path,
                f"{prefix}{name} box {_fmt_box(box)} {how} outside the {w}x{h} image ({entry.file_name})",
                line,
            )


def _iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of a[k] with b[k] for each k; 0 where the union is empty."""
    with np.errstate(over="ignore", invalid="ignore"):  # float32-range boxes: inf / nan compare as no match
        return _iou_pairs_raw(a, b)


def _iou_pairs_raw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _near_pairs(boxes: np.ndarray, threshold: float, budget: int) -> tuple[list[tuple[int, int, float]], bool]:
    """Pairs (i, j, IoU) of distinct boxes with IoU > threshold, by sort-and-sweep on x1; near-linear.

    IoU > t needs |x1_i - x1_j| < (1 - t) * width of the box further left, so each box is compared only with
    the boxes that start within that window. Returns the pairs and whether `budget` comparisons ran out.
    """
    n = len(boxes)
    if n < 2 or not 0.0 <= threshold < 1.0:
        return [], False
    order = np.argsort(boxes[:, 0], kind="stable")
    s = boxes[order]
    width = np.clip(s[:, 2] - s[:, 0], 0, None)
    ends = np.searchsorted(s[:, 0], s[:, 0] + (1.0 - threshold) * width, side="left")
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    total = int(counts.sum())
    exhausted = total > budget
    if exhausted:  # keep the rows whose windows fit in the budget (leftmost first)
        counts = np.where(np.cumsum(counts) <= budget, counts, 0)
    pairs: list[tuple[int, int, float]] = []
    rows = np.flatnonzero(counts)
    chunk = 1 << 20  # comparisons per vectorised step: bounded memory on dense images
    cum = np.cumsum(counts[rows])
    start = 0
    while start < len(rows):
        stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0) + chunk, side="right"))
        stop = max(stop, start + 1)
        r, c = rows[start:stop], counts[rows[start:stop]]
        i = np.repeat(r, c)
        offsets = np.arange(len(i)) - np.repeat(np.cumsum(c) - c, c)
        j = i + 1 + offsets
        iou = _iou_pairs(s[i], s[j])
        hit = np.flatnonzero(iou > threshold)
        pairs.extend(zip(order[i[hit]].tolist(), order[j[hit]].tolist(), iou[hit].tolist(), strict=True))
        start = stop
    return pairs, exhausted


def _check_duplicates(
    rec: ImageRecord,
    entry: Entry,
    issues: Issues,
    threshold: float,
    classes: tuple[str, ...],
    budget: int = DUPLICATE_PAIR_BUDGET,
) -> None:
    """Same class and IoU > threshold (or identical coordinates): each later box is named once.

    Identical boxes are found by hashing, the others by `_near_pairs`: near-linear in the number of boxes.
    """
    for label in np.unique(rec.labels):
        idx = np.flatnonzero(rec.labels == label)
        boxes = rec.boxes[idx].astype(np.float64)
        first: dict[tuple[float, ...], int] = {}
        found: list[tuple[int, int, str]] = []  # (earlier, later, how)
        for k, key in enumerate(map(tuple, boxes.tolist())):
            f = first.setdefault(key, k)
            if f != k:
                found.append((f, k, "identical to"))
        unique = np.array(sorted(first.values()), dtype=np.int64)
        near, exhausted = _near_pairs(boxes[unique], threshold, budget)
        for a, b, iou in near:
            a, b = sorted((int(unique[a]), int(unique[b])))
            found.append((a, b, f"IoU {iou:.2f} with"))
        reported: set[int] = set()
        for b, a, how in sorted((b, a, how) for a, b, how in found):  # file order; the earliest partner
            if b in reported:
                continue
            reported.add(b)
            path, line, prefix = _where(entry, int(idx[b]))
            _, first_line, first_prefix = _where(entry, int(idx[a]))
            other = f"the one on line {first_line}" if first_line is not None else first_prefix.rstrip(": ")
            issues.warning(path, f"{prefix}duplicate {classes[int(label)]} box: {how} {other}", line)
        if exhausted:
            issues.warning(
                entry.ann_path or entry.image_path,
                f"{len(idx):,} {classes[int(label)]} boxes overlap so densely that the duplicate search stopped "
                f"after {budget:,} comparisons; later duplicates may be unlisted",
            )
