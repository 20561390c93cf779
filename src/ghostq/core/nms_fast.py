"""Class-wise greedy NMS equal to :func:`ghostq.core.nms.batched_nms`, vectorised: for deploy decoding and tile
merging, where a dense scene gives thousands of boxes and the reference's one Python step per kept box dominates.

Boxes are taken in global score order in chunks; each chunk is tested against the boxes kept so far and within
itself with one IoU matrix (same class only), and the greedy order inside a chunk is resolved by a fixed-point
iteration over the few boxes whose fate depends on another box of the chunk: a box is kept iff no kept box before
it of its class overlaps it with IoU > threshold; this recursion has one solution, and iterating it from "all
kept" reaches it (exactly; a sequential walk takes over past 32 rounds). A chunk meets the kept boxes through
a sweep on x (only pairs whose x ranges overlap are scored): a dense 2560 px scene keeps ~10^4 boxes, and a full
chunk x kept matrix made the tile merge slower than the model. The IoU arithmetic is :mod:`ghostq.core.nms` 's,
in the boxes' dtype, so results are equal, ties included (tested).
"""

from __future__ import annotations

import numpy as np

__all__ = ["batched_nms_fast", "iou_above"]

CHUNK = 1024  # boxes taken together in score order (then split by class)
MAX_ROUNDS = 32  # fixed-point rounds before the sequential walk takes over


def _areas(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def iou_above(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """[len(a), len(b)] bool: IoU > threshold, with ``ghostq.core.nms`` 's float arithmetic (boxes' dtype), in
    two reused buffers."""
    dtype = b.dtype
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    tmp = np.maximum(a[:, None, 0], b[None, :, 0])
    np.subtract(iw, tmp, out=iw)
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    np.maximum(a[:, None, 1], b[None, :, 1], out=tmp)
    np.subtract(ih, tmp, out=ih)
    np.maximum(ih, 0, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    union = np.add(_areas(a)[:, None], _areas(b)[None, :], out=ih)
    np.subtract(union, inter, out=union)
    np.maximum(union, np.finfo(dtype).tiny, out=union)
    return np.divide(inter, union, out=inter) > dtype.type(threshold)


def _pair_iou_above(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """IoU(a[k], b[k]) > threshold per row pair, with `iou_above` 's arithmetic (so the same answers)."""
    dtype = b.dtype
    iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0)
    ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0)
    inter = iw * ih
    union = np.maximum(_areas(a) + _areas(b) - inter, np.finfo(dtype).tiny)
    return inter / union > dtype.type(threshold)


def _suppressed(kept: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """bool[len(b)]: some kept box overlaps b[j] with IoU > threshold. Only pairs whose x ranges overlap can
    (IoU > 0 needs x1_i < x2_j and x2_i > x1_j, i.e. x1_i in (x1_j - max kept width, x2_j)): found by a
    sorted sweep, scored pair by pair; the dense matrix when most pairs are candidates anyway."""
    x1 = kept[:, 0].astype(np.float64)  # float32 differences are exact in float64: no candidate is lost
    width = float(np.max(kept[:, 2].astype(np.float64) - x1, initial=0.0))
    order = np.argsort(x1, kind="stable")
    xs = x1[order]
    lo = np.searchsorted(xs, b[:, 0].astype(np.float64) - width, "left")
    hi = np.maximum(np.searchsorted(xs, b[:, 2].astype(np.float64), "left"), lo)
    counts = hi - lo
    total = int(counts.sum())
    if total * 4 > len(kept) * len(b):
        return iou_above(kept, b, threshold).any(axis=0)
    j = np.repeat(np.arange(len(b)), counts)
    i = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)]
    out = np.zeros(len(b), bool)
    out[j[_pair_iou_above(kept[i], b[j], threshold)]] = True
    return out


def _resolve(overlap: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Greedy NMS inside one chunk: ``overlap[i, j]`` (i before j) says i suppresses j when kept; ``alive`` the
    boxes no earlier chunk suppressed. Returns which boxes are kept."""
    s = np.triu(overlap, 1) & alive[:, None] & alive[None, :]
    contested = s.any(axis=0)  # boxes that an earlier box of the chunk may suppress
    keep = alive & ~contested
    if not contested.any():
        return keep
    free_kept = keep & s.any(axis=1)
    undecided = contested & ~s[free_kept].any(axis=0)  # not already suppressed by a box certainly kept
    idx = np.flatnonzero(undecided)
    if idx.size == 0:
        return keep
    sub = s[np.ix_(idx, idx)]
    k = np.ones(idx.size, bool)
    for _ in range(MAX_ROUNDS):
        nxt = ~(sub & k[:, None]).any(axis=0)
        if np.array_equal(nxt, k):
            break
        k = nxt
    else:  # a long chain of overlaps: walk it (idx is in score order)
        k = np.ones(idx.size, bool)
        for i in range(idx.size):
            if k[i]:
                k[i + 1 :] &= ~sub[i, i + 1 :]
    keep[idx[k]] = True
    return keep


def batched_nms_fast(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, max_det: int | None = None
) -> np.ndarray:
    """Class-wise greedy NMS equal to :func:`ghostq.core.nms.batched_nms` (indices in decreasing score order, ties
    in input order), its first ``max_det`` kept boxes only when given."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    scores, labels = np.asarray(scores), np.asarray(labels)
    n = len(scores)
    limit = n if max_det is None else max_det
    order = np.argsort(-scores, kind="stable")
    kept_by_label: dict[int, np.ndarray] = {}  # label -> kept boxes so far, in score order
    chosen: list[np.ndarray] = []
    count = 0
    for start in range(0, n, CHUNK):
        idx = order[start : start + CHUNK]
        lab = labels[idx]
        by_label = np.argsort(lab, kind="stable")  # chunk positions grouped by label, score order inside
        bounds = np.flatnonzero(np.r_[True, lab[by_label][1:] != lab[by_label][:-1], True])
        keep = np.zeros(len(idx), bool)
        for a, z in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            pos = by_label[a:z]
            b, key = boxes[idx[pos]], int(lab[pos[0]])
            before = kept_by_label.get(key)
            alive = np.ones(len(pos), bool) if before is None else ~_suppressed(before, b, iou_threshold)
            k = _resolve(iou_above(b, b, iou_threshold), alive) if len(pos) > 1 else alive
            keep[pos] = k
            if k.any():
                kept_by_label[key] = b[k] if before is None else np.concatenate([before, b[k]])
        sel = idx[keep][: limit - count]
        chosen.append(sel)
        count += len(sel)
        if count >= limit:
            break
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, np.int64)
