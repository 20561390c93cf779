"""Pascal VOC average precision at IoU 0.5 (VOC07 11-point and VOC12 all-point), vectorized numpy.

Matching follows the VOC devkit and DOTA_devkit's `voc_eval` (what DOTA, DIOR, NWPU VHR-10 and the GHOST paper
report): the detections of one class are sorted by score, highest first; each takes the ground-truth box it
overlaps most (argmax IoU over all GT of its class in its image, difficult ones included).
- best IoU >= 0.5 and that GT is difficult: the detection is neither TP nor FP (dropped from the curve);
- best IoU >= 0.5 and that GT is not yet matched: TP, the GT becomes matched;
- best IoU >= 0.5 and that GT is already matched (a duplicate): FP; there is no fallback to the next-best GT;
- otherwise: FP.
Difficult GT are not counted in the number of positives (npos).

Conventions (stated because evaluators differ):
- IoU uses continuous coordinates, no "+1 pixel": area = (x2 - x1) * (y2 - y1), as pycocotools, mmdet (v2+)
  and torchvision do. The VOC devkit and DOTA_devkit's horizontal-box evaluator (`dota_evaluation_task2.py`)
  add 1 to every width and height (integer pixel indices); on integer boxes that raises every IoU slightly.
- The threshold is inclusive (IoU >= 0.5) as in the MATLAB VOC devkit; the Python ports (py-faster-rcnn,
  DOTA_devkit) test `> 0.5`. Only an IoU of exactly 0.5 is affected.
- Ties in score keep input order (stable sort); the devkit's `np.argsort(-score)` leaves ties unspecified.
- VOC07 samples precision at recall thresholds `np.arange(0, 1.1, 0.1)` exactly as the devkit does (so the
  thresholds carry its floating-point rounding, e.g. 0.30000000000000004).
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, continuous coordinates (no +1); empty union gives 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    """AP from a recall/precision curve: VOC07 11-point mean or VOC12 area under the monotone envelope."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        thresholds = np.arange(0.0, 1.1, 0.1)  # the devkit's exact thresholds (with their rounding)
        reached = rec[None, :] >= thresholds[:, None]  # (11, n)
        best = np.where(reached, prec[None, :], 0.0).max(axis=1, initial=0.0)
        return float(best.sum() / 11.0)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: max over all higher recalls
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def match_image(
    det_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP flags (bool, in the given order) of one image's detections of one class, sorted by score.

    A detection that is neither (its best-IoU GT is difficult) has both flags False.
    """
    n = len(det_boxes)
    if len(gt_boxes) == 0:
        return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    iou = box_iou(det_boxes, gt_boxes)
    best = iou.argmax(axis=1)  # first maximum on ties, as np.argmax in the devkit
    hit = iou[np.arange(n), best] >= iou_threshold
    on_difficult = hit & gt_difficult[best]
    candidate = hit & ~on_difficult
    # The first candidate (highest score) on each GT takes it; later ones on the same GT are duplicates.
    tp = np.zeros(n, dtype=bool)
    cand_idx = np.flatnonzero(candidate)
    _, first = np.unique(best[cand_idx], return_index=True)
    tp[cand_idx[first]] = True
    fp = ~tp & ~on_difficult
    return tp, fp


def class_ap(
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    use_07_metric: bool,
) -> float | None:
    """VOC AP of one class (xyxy boxes, image ids per box); None when the class has no non-difficult GT."""
    gt_difficult = np.asarray(gt_difficult, dtype=bool)
    npos = int((~gt_difficult).sum())
    if npos == 0:
        return None
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable")
    det_image = np.asarray(det_image)[order]
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[order]
    tp = np.zeros(len(order), dtype=bool)
    fp = np.zeros(len(order), dtype=bool)
    gt_image = np.asarray(gt_image)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    # Matching is independent between images: one vectorized IoU block per image, in score order inside it.
    gt_groups = dict(_groups(gt_image))
    empty = np.zeros(0, dtype=np.int64)
    for image_id, d in _groups(det_image):
        g = gt_groups.get(image_id, empty)
        tp[d], fp[d] = match_image(det_boxes[d], gt_boxes[g], gt_difficult[g])
    counted = tp | fp  # detections on difficult GT leave the curve
    tp_cum = np.cumsum(tp[counted])
    fp_cum = np.cumsum(fp[counted])
    rec = tp_cum / npos
    prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric)


def _groups(keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(key, ascending positions) for each distinct key; a stable sort keeps positions in their order."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return []
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return list(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))
