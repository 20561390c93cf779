"""Fast decoding of raw graph outputs: the same detections as :func:`ghostq.core.detections.decode`, vectorised.

What the reference costs and what this does instead (measured in ``benchmarks/latency.py``, e2e rows):
- the top-``pre_nms_topk`` candidates: a partial selection (``argpartition``) instead of a full sort, ties at the
  cut taken in input order as the stable sort takes them;
- NMS: :func:`ghostq.core.nms_fast.batched_nms_fast` (chunked, one IoU matrix per chunk instead of one Python
  step per kept box); decoding stops as soon as ``max_det`` boxes are kept: later boxes would be cut anyway.
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
from ghostq.core.nms_fast import batched_nms_fast


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
