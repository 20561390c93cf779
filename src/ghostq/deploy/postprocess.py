"""Fast decoding of raw graph outputs: the same detections as :func:`ghostq.core.detections.decode`, vectorised.

What the reference costs and what this does instead (measured in ``benchmarks/latency.py``, e2e rows):
- the top-``pre_nms_topk`` candidates: a partial selection (``argpartition``) instead of a full sort, ties at the
  cut taken in input order as the stable sort takes them;
- NMS: the reference walks each class's boxes with one Python step per kept box (hundreds at the evaluation
  threshold 0.001). Here boxes are taken in global score order in chunks; each chunk is tested against the boxes
  kept so far and within itself with one IoU matrix (same class only), and the greedy order inside a chunk is
  resolved by a fixed-point iteration over the few boxes whose fate depends on another box of the chunk: a box is
  kept iff no kept box before it of its class overlaps it with IoU > threshold; this recursion has one solution,
  and iterating it from "all kept" reaches it (exactly; a sequential walk takes over past 32 rounds).
  Decoding stops as soon as ``max_det`` boxes are kept: later boxes rank below them and would be cut anyway.
The IoU arithmetic is :func:`ghostq.core.nms` 's, in float32, so results are equal, ties included (tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ghostq.core.detections import (
    FLAT_NMS_OUTPUTS,
    NMS_OUTPUTS,
    RAW_OUTPUTS,
    DecodeSettings,
    Detections,
    decode_outputs,
)

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
            alive = np.ones(len(pos), bool) if before is None else ~iou_above(before, b, iou_threshold).any(axis=0)
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


def top_candidates(flat: np.ndarray, threshold: float, k: int) -> np.ndarray:
    """Indices (ascending) of the scores > threshold, at most the k highest; ties at the cut in index order."""
    cand = np.flatnonzero(flat > np.float32(threshold))
    if cand.size <= k:
        return cand
    values = flat[cand]
    kth = np.partition(values, cand.size - k)[cand.size - k]  # the k-th highest value
    above = values > kth
    ties = np.flatnonzero(values == kth)[: k - int(above.sum())]
    above[ties] = True
    return cand[above]


def decode_fast(
    scores: np.ndarray, boxes: np.ndarray, settings: DecodeSettings, image_size: tuple[int, int] | None
) -> list[Detections]:
    """Raw outputs -> detections per image, equal to :func:`ghostq.core.detections.decode`."""
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    if scores.ndim != 3 or boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"need scores [B, N, C] and boxes [B, N, 4], got {list(scores.shape)}, {list(boxes.shape)}")
    num_classes = scores.shape[-1]
    out = []
    for img_scores, img_boxes in zip(scores, boxes, strict=True):
        flat = img_scores.reshape(-1)
        cand = top_candidates(flat, settings.score_threshold, settings.pre_nms_topk)
        cand_scores = flat[cand]
        labels = (cand % num_classes).astype(np.int64)
        cand_boxes = img_boxes[cand // num_classes]  # a copy (fancy indexing): clipped in place
        if image_size is not None:
            h, w = image_size
            np.clip(cand_boxes[:, 0::2], 0, w, out=cand_boxes[:, 0::2])
            np.clip(cand_boxes[:, 1::2], 0, h, out=cand_boxes[:, 1::2])
        keep = batched_nms_fast(cand_boxes, cand_scores, labels, settings.iou_threshold, settings.max_det)
        out.append(Detections(cand_boxes[keep], cand_scores[keep], labels[keep]))
    return out


def decode_outputs_fast(
    outputs: Mapping[str, np.ndarray],
    settings: DecodeSettings,
    image_size: tuple[int, int] | None,
    batch_size: int | None = None,
) -> list[Detections]:
    """:func:`ghostq.core.detections.decode_outputs` with raw outputs decoded by :func:`decode_fast`."""
    nms_in_graph = any(all(n in outputs for n in form) for form in (NMS_OUTPUTS, FLAT_NMS_OUTPUTS))
    if not nms_in_graph and all(name in outputs for name in RAW_OUTPUTS):
        return decode_fast(outputs["scores"], outputs["boxes"], settings, image_size)
    return decode_outputs(outputs, settings, image_size, batch_size)
