"""Exact greedy non-maximum suppression, class-wise, in numpy (no torch): the reference definition.

:mod:`ghostq.core.nms_fast` computes the same result vectorised (deploy decoding and tile merging use it).

The same definition as :mod:`ghostq.detect.nms` (its results are equal): sort by score, highest first, ties
in input order (stable); walk the list; a box is kept unless a box kept before it, of the same label, overlaps
it with IoU > ``iou_threshold`` (strictly greater). IoU uses the arithmetic of ``ghostq.detect.boxes.box_iou``
in the boxes' own dtype (float32 boxes: float32 IoU compared with the threshold as float32), so ties at the
threshold resolve as in the torch version.

Algorithm: per class, a walk over the score-sorted boxes; each kept box suppresses, with one vectorized IoU
row, the later boxes of its class. Cost O(K^2) per class in the worst case, one Python step per kept box.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batched_nms", "nms"]


def _iou_above(box: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """IoU(box, others) > threshold for one box [4] against [M, 4], as ``box_iou`` computes it."""
    dtype = others.dtype
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = max(box[2] - box[0], dtype.type(0)) * max(box[3] - box[1], dtype.type(0))
    area_b = np.maximum(others[:, 2] - others[:, 0], 0) * np.maximum(others[:, 3] - others[:, 1], 0)
    union = np.maximum(area_a + area_b - inter, np.finfo(dtype).tiny)
    return (inter / union) > dtype.type(threshold)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-wise greedy NMS. ``boxes`` [N, 4] xyxy, ``scores`` [N], ``labels`` [N] (int).

    Returns the int64 indices of the kept boxes, in decreasing score order (ties: input order).
    Boxes of different labels never suppress each other.
    """
    boxes = np.asarray(boxes)
    scores, labels = np.asarray(scores), np.asarray(labels)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4], got {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1] or labels.shape != boxes.shape[:1]:
        raise ValueError(f"scores {list(scores.shape)} and labels {list(labels.shape)} must be [{boxes.shape[0]}]")
    if not np.issubdtype(boxes.dtype, np.floating):
        boxes = boxes.astype(np.float32)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")  # descending, ties in input order
    # group by class, each class staying in score order
    order = order[np.argsort(labels[order], kind="stable")]
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], n]
    kept: list[int] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        idx = order[s:e]
        b = boxes[idx]
        alive = np.ones(len(idx), bool)
        for i in range(len(idx)):
            if not alive[i]:
                continue
            kept.append(int(idx[i]))
            if i + 1 < len(idx):
                alive[i + 1 :] &= ~_iou_above(b[i], b[i + 1 :], iou_threshold)
    keep = np.asarray(kept, np.int64)
    rank = np.empty(n, np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(n)
    return keep[np.argsort(rank[keep], kind="stable")]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-agnostic greedy NMS; same contract as :func:`batched_nms` with one label for all boxes."""
    return batched_nms(boxes, scores, np.zeros(len(scores), np.int64), iou_threshold)
