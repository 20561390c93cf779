"""Detection evaluation (DESIGN §2 'Evaluation'): COCO mAP through pycocotools, Pascal VOC AP (see `voc_ap`).

Inputs are a COCO ground-truth dict (or the path of its json file) and a COCO results list
`[{image_id, category_id, bbox: [x, y, w, h], score}, ...]` (or its path). The trainer calls these functions
in-process with dicts and lists; `load_ground_truth` parses a ground truth once so that repeated evaluations
(one per epoch) reuse it. Every problem in the inputs is one `DataFormatError` naming the file and the entry.

Difficult objects: an annotation with `difficult`, `ignore` or `iscrowd` set is difficult. It is never a
positive (not in the recall denominator) and a detection on it is never a false positive:
- VOC: the devkit rule (a detection whose best-IoU GT is difficult is dropped from the curve), see `voc_ap`.
- COCO: pycocotools honours only `iscrowd` as an ignore flag (its `evaluate()` overwrites `ignore` with
  `iscrowd`), so difficult GT reach it as crowd boxes (`iscrowd: 1`, on a copy). Crowd matching differs from
  VOC's: the overlap with a crowd box is intersection / detection area (not IoU), a detection prefers any
  regular GT above the threshold over a crowd box, and a crowd box absorbs any number of detections.
  A real crowd region (`iscrowd: 1`) stays one; in VOC it counts as difficult.
Classes without (non-difficult) GT are reported with AP None (JSON null) and left out of the mean. COCO
numbers are pycocotools' own: area range 'all', at most 100 detections per image and class (its default;
`max_dets` raises it for images that hold more objects, e.g. ~900 oil tanks in one satellite image).
"""

from __future__ import annotations

import io
import math
import numbers
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.detect.data.reading import load_json_file, shown
from ghostq.detect.voc_ap import class_ap

METRICS = ("coco", "voc07", "voc12")
_GT_SOURCE = "<ground truth>"
_DETS_SOURCE = "<detections>"
_DETS_SHAPE = "a list of {image_id, category_id, bbox: [x, y, w, h], score}"


@dataclass(frozen=True)
class GroundTruth:
    """A validated COCO ground truth as arrays: one row per annotation, boxes xywh, difficult flags."""

    source: str  # file path, or "<ground truth>" for an in-memory dict; used in error messages
    image_ids: np.ndarray  # (I,) int64, in file order
    cat_ids: np.ndarray  # (C,) int64, in file order
    cat_names: tuple[str, ...]  # (C,)
    ann_image: np.ndarray  # (N,) int64
    ann_cat: np.ndarray  # (N,) int64
    ann_xywh: np.ndarray  # (N, 4) float64
    ann_difficult: np.ndarray  # (N,) bool: difficult, ignore or crowd


@dataclass(frozen=True)
class _Detections:
    image: np.ndarray  # (D,) int64
    cat: np.ndarray  # (D,) int64
    xywh: np.ndarray  # (D, 4) float64
    score: np.ndarray  # (D,) float64


def evaluate(
    gt: GroundTruth | dict | str | Path, dets: list[dict] | str | Path, metric: str = "coco"
) -> dict:
    """Evaluate detections with `metric` ("coco", "voc07" or "voc12"); see `evaluate_coco`, `evaluate_voc`."""
    name = str(metric).lower()
    if name == "coco":
        return evaluate_coco(gt, dets)
    if name in ("voc07", "voc12"):
        return evaluate_voc(gt, dets, use_07_metric=name == "voc07")
    raise GhostqError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")


def evaluate_coco(gt: GroundTruth | dict | str | Path, dets: list[dict] | str | Path, max_dets: int = 100) -> dict:
    """COCO bbox mAP50, mAP50:95 and per-class AP through pycocotools (fractions in [0, 1]); at most
    `max_dets` detections per image and class count (pycocotools' default 100)."""
    truth = load_ground_truth(gt)
    ev = coco_eval(truth, _load_detections(dets, truth), max_dets)
    p = ev.params
    # precision: (iouThrs, recThrs, catIds, areaRng, maxDets); -1 where a class has no GT. This is what
    # COCOeval.summarize() averages for stats[0] (AP@[.5:.95]) and stats[1] (AP@.5).
    prec = ev.eval["precision"][:, :, :, p.areaRngLbl.index("all"), p.maxDets.index(max_dets)]
    t50 = int(np.argmin(np.abs(np.asarray(p.iouThrs) - 0.5)))
    per_class: dict[str, dict[str, float | None]] = {}
    for cat_id, name in zip(truth.cat_ids, truth.cat_names, strict=True):
        k = list(p.catIds).index(int(cat_id))
        per_class[name] = {"AP50": _mean_valid(prec[t50, :, k]), "AP50_95": _mean_valid(prec[:, :, k])}
    return {
        "metric": "coco",
        "mAP50": _mean_valid(prec[t50]) or 0.0,
        "mAP50_95": _mean_valid(prec) or 0.0,
        "per_class": per_class,
        "by_size": _ap_by_size(ev, truth, t50, max_dets),
        "num_images": len(truth.image_ids),
        "num_dets": len(ev.cocoDt.getAnnIds()),
    }


def _ap_by_size(ev: Any, truth: GroundTruth, t50: int, max_dets: int = 100) -> dict[str, dict[str, float | int | None]]:
    """COCO AP for small / medium / large objects (pycocotools' area ranges, inclusive as it applies them)
    and the share of counted (non-difficult) ground-truth objects in each bucket."""
    p = ev.params
    area = truth.ann_xywh[:, 2] * truth.ann_xywh[:, 3]
    counted = ~truth.ann_difficult
    out: dict[str, dict[str, float | int | None]] = {}
    for label in ("small", "medium", "large"):
        a = p.areaRngLbl.index(label)
        lo, hi = p.areaRng[a]
        prec = ev.eval["precision"][:, :, :, a, p.maxDets.index(max_dets)]
        num = int((counted & (area >= lo) & (area <= hi)).sum())
        out[label] = {
            "AP50": _mean_valid(prec[t50]),
            "AP50_95": _mean_valid(prec),
            "num_gt": num,
            "gt_share": num / max(int(counted.sum()), 1),
        }
    return out


def coco_eval(truth: GroundTruth, found: _Detections, max_dets: int = 100) -> Any:
    """pycocotools' COCOeval after evaluate() and accumulate() (per-image matches in `evalImgs`); its largest
    per-image detection limit is `max_dets` (default 100, pycocotools' own: maxDets [1, 10, 100])."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _require_positives(truth)
    images = [{"id": int(i)} for i in truth.image_ids]
    categories = [{"id": int(c), "name": n} for c, n in zip(truth.cat_ids, truth.cat_names, strict=True)]
    gt_anns = _coco_annotations(
        truth.ann_image, truth.ann_cat, truth.ann_xywh, iscrowd=truth.ann_difficult.astype(np.int64)
    )
    dt_anns = _coco_annotations(
        found.image, found.cat, found.xywh, score=found.score, iscrowd=np.zeros(len(found.score), np.int64)
    )
    with redirect_stdout(io.StringIO()):  # pycocotools prints progress; its numbers are all we keep
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        coco_dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        coco_gt.createIndex()
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if max_dets != 100:
            ev.params.maxDets = sorted({1, 10, int(max_dets)})
        ev.evaluate()
        ev.accumulate()
    return ev


def evaluate_voc(
    gt: GroundTruth | dict | str | Path, dets: list[dict] | str | Path, use_07_metric: bool
) -> dict:
    """Pascal VOC AP at IoU 0.5 per class and its mean: VOC07 11-point or VOC12 all-point area."""
    truth = load_ground_truth(gt)
    found = _load_detections(dets, truth)
    _require_positives(truth)
    gt_xyxy = _xyxy(truth.ann_xywh)
    det_xyxy = _xyxy(found.xywh)
    per_class: dict[str, dict[str, Any]] = {}
    for cat_id, name in zip(truth.cat_ids, truth.cat_names, strict=True):
        g = truth.ann_cat == cat_id
        d = found.cat == cat_id
        ap = class_ap(
            found.image[d],
            det_xyxy[d],
            found.score[d],
            truth.ann_image[g],
            gt_xyxy[g],
            truth.ann_difficult[g],
            use_07_metric,
        )
        per_class[name] = {
            "AP50": ap,
            "num_gt": int((~truth.ann_difficult[g]).sum()),
            "num_dets": int(d.sum()),
        }
    aps = [v["AP50"] for v in per_class.values() if v["AP50"] is not None]
    return {
        "metric": "voc07" if use_07_metric else "voc12",
        "mAP50": float(np.mean(aps)),
        "per_class": per_class,
        "num_images": len(truth.image_ids),
        "num_dets": len(found.score),
    }


def load_ground_truth(gt: GroundTruth | dict | str | Path) -> GroundTruth:
    """Validate a COCO ground truth (dict or json path) into arrays; a GroundTruth passes through."""
    if isinstance(gt, GroundTruth):
        return gt
    source, data = _resolve(gt, _GT_SOURCE)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataFormatError(
            source,
            "not a COCO ground truth: expected an object with lists 'images', 'annotations' and 'categories'",
        )
    image_ids = _unique_ids(data["images"], "images", source)
    cat_ids = _unique_ids(data["categories"], "categories", source)
    names: list[str] = []
    seen: set[str] = set()
    for k, cat in enumerate(data["categories"]):
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise DataFormatError(source, f"categories[{k}]: 'name' must be a non-empty string")
        if name in seen:
            raise DataFormatError(source, f"categories[{k}]: duplicate category name {shown(name)}")
        seen.add(name)
        names.append(name)
    anns = data["annotations"]
    image, cat, xywh, _ = _parse_entries(
        anns, source, "annotations[{}]", image_ids, cat_ids, with_score=False
    )
    difficult = np.array(
        [any(_flag(a.get(key)) for key in ("difficult", "ignore", "iscrowd")) for a in anns], dtype=bool
    )
    return GroundTruth(source, image_ids, cat_ids, tuple(names), image, cat, xywh, difficult)


def _load_detections(dets: list[dict] | str | Path, truth: GroundTruth) -> _Detections:
    source, data = _resolve(dets, _DETS_SOURCE)
    if not isinstance(data, list):
        raise DataFormatError(source, f"detections must be {_DETS_SHAPE}, got a JSON {type(data).__name__}")
    image, cat, xywh, score = _parse_entries(
        data, source, "entry {}", truth.image_ids, truth.cat_ids, with_score=True
    )
    return _Detections(image, cat, xywh, score)


def _resolve(obj: Any, in_memory: str) -> tuple[str, Any]:
    """(source name, parsed object): read and parse a json path; anything else is the object itself.

    The file must be a regular file within the size limit; bad JSON, over-long integers and nesting too
    deep to parse are one DataFormatError naming the file (see `ghostq.detect.data.reading`).
    """
    if not isinstance(obj, (str, Path)):
        return in_memory, obj
    path = Path(obj)
    return str(path), load_json_file(path)


def _parse_entries(
    entries: list, source: str, where: str, image_ids: np.ndarray, cat_ids: np.ndarray, with_score: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (image, cat, xywh, score) of COCO boxes, checked; errors name `where.format(index)`."""
    n = len(entries)
    image = np.zeros(n, dtype=np.int64)
    cat = np.zeros(n, dtype=np.int64)
    xywh = np.zeros((n, 4), dtype=np.float64)
    score = np.zeros(n, dtype=np.float64)
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataFormatError(source, f"{where.format(k)}: expected an object, got {type(e).__name__}")
        for key in ("image_id", "category_id"):
            if not _is_int(e.get(key)):
                raise DataFormatError(
                    source, f"{where.format(k)}: '{key}' must be an integer, got {shown(e.get(key))}"
                )
        box = e.get("bbox")
        if (
            not isinstance(box, (list, tuple, np.ndarray))
            or len(box) != 4
            or not all(_is_real(v) for v in box)
        ):
            raise DataFormatError(
                source, f"{where.format(k)}: 'bbox' must be 4 numbers [x, y, w, h], got {shown(box)}"
            )
        if with_score and not _is_real(e.get("score")):
            raise DataFormatError(
                source, f"{where.format(k)}: 'score' must be a number, got {shown(e.get('score'))}"
            )
        try:
            image[k], cat[k] = int(e["image_id"]), int(e["category_id"])
        except OverflowError:
            raise DataFormatError(source, f"{where.format(k)}: id out of the 64-bit range") from None
        try:  # an integer of a few hundred digits is valid JSON but no float
            xywh[k] = [float(v) for v in box]
            score[k] = float(e["score"]) if with_score else 0.0
        except OverflowError:
            raise DataFormatError(source, f"{where.format(k)}: a number beyond the float range") from None
    checks = [
        (
            ~np.isin(image, image_ids),
            lambda k: f"unknown image_id {image[k]} (not an image of the ground truth)",
        ),
        (
            ~np.isin(cat, cat_ids),
            lambda k: f"unknown category_id {cat[k]} (not a category of the ground truth)",
        ),
        (~np.isfinite(xywh).all(axis=1), lambda k: f"bbox {xywh[k].tolist()} is not finite"),
        ((xywh[:, 2:] < 0).any(axis=1), lambda k: f"negative width or height in bbox {xywh[k].tolist()}"),
        (np.isnan(score), lambda k: "score is NaN"),
        (~np.isfinite(score), lambda k: f"score {score[k]} is not finite"),
    ]
    for bad, message in checks:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataFormatError(source, f"{where.format(k)}: {message(k)}")
    return image, cat, xywh, score


def _unique_ids(items: list, key: str, source: str) -> np.ndarray:
    ids = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not _is_int(item.get("id")):
            raise DataFormatError(source, f"{key}[{k}]: expected an object with an integer 'id'")
        ident = int(item["id"])
        if not -(2**63) <= ident < 2**63:
            raise DataFormatError(source, f"{key}[{k}]: id {shown(ident)} is out of the 64-bit range")
        ids.append(ident)
    arr = np.asarray(ids, dtype=np.int64)
    uniq, first = np.unique(arr, return_index=True)
    if len(uniq) != len(arr):
        k = int(np.setdiff1d(np.arange(len(arr)), first)[0])
        raise DataFormatError(source, f"{key}[{k}]: duplicate id {arr[k]}")
    return arr


def _require_positives(truth: GroundTruth) -> None:
    if not len(truth.image_ids):
        raise DataFormatError(truth.source, "the ground truth has no images: nothing to evaluate")
    if truth.ann_difficult.all():  # also true when there are no annotations
        raise DataFormatError(
            truth.source, "the ground truth has no boxes (difficult ones aside): AP is undefined"
        )


def _coco_annotations(
    image: np.ndarray, cat: np.ndarray, xywh: np.ndarray, **columns: np.ndarray
) -> list[dict]:
    """COCO annotation dicts (ids 1..N, area = w * h) from arrays; each keyword array adds one key."""
    extra = {key: col.tolist() for key, col in columns.items()}
    anns = []
    for k, (i, c, box) in enumerate(zip(image.tolist(), cat.tolist(), xywh.tolist(), strict=True)):
        ann = {"id": k + 1, "image_id": i, "category_id": c, "bbox": box, "area": box[2] * box[3]}
        ann.update({key: values[k] for key, values in extra.items()})
        anns.append(ann)
    return anns


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean over entries > -1 (pycocotools' 'absent' marker); None when there are none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, numbers.Integral) or (isinstance(v, float) and v.is_integer())


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _flag(v: Any) -> bool:
    """A difficult/ignore/iscrowd value: true for 1, True, "1"; false for 0, None, absent."""
    if isinstance(v, str):
        return v.strip() not in ("", "0", "false", "False")
    return bool(v) and not (isinstance(v, float) and math.isnan(v))
