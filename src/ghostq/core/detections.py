"""Detections of one image (numpy) and their decoding from a graph's outputs: one class for every inference path.

Two output forms (the export contract, :mod:`ghostq.export`):
- raw: ``scores`` [B, N, C] (class probabilities: sigmoid, or softmax's foreground part; LogitClip applied in
  the graph) and ``boxes`` [B, N, 4] xyxy in input pixels. Candidates are (point, class) pairs with score strictly
  above the threshold (multi-label), at most ``pre_nms_topk`` of them (highest first), boxes clipped to the
  input, class-wise exact greedy NMS (:func:`ghostq.core.nms.batched_nms`), at most ``max_det`` kept.
- EfficientNMS_TRT (TensorRT): ``num_detections`` [B, 1], ``detection_boxes`` [B, K, 4], ``detection_scores``
  [B, K], ``detection_classes`` [B, K]; the first ``num_detections`` rows of each image are read;
- ONNX NonMaxSuppression with the gather in the graph: ``det_batch`` [M] (image index), ``det_boxes`` [M, 4],
  ``det_scores`` [M], ``det_labels`` [M], every kept detection of the batch (M data-dependent).
With NMS in the graph the graph's own thresholds applied; here the score threshold and ``max_det`` are applied
on top, highest score first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ghostq.core.nms import batched_nms
from ghostq.core.spec import CONF, IOU, MAX_DET, PRE_NMS_TOPK, DecodeSpec

__all__ = [
    "FLAT_NMS_OUTPUTS",
    "NMS_OUTPUTS",
    "RAW_OUTPUTS",
    "DecodeSettings",
    "Detections",
    "decode",
    "decode_outputs",
    "from_flat_nms",
    "from_graph_nms",
]

RAW_OUTPUTS = ("scores", "boxes")
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")  # EfficientNMS_TRT
FLAT_NMS_OUTPUTS = ("det_batch", "det_boxes", "det_scores", "det_labels")  # ONNX NonMaxSuppression + gather


@dataclass
class Detections:
    """Detections of one image, highest score first: boxes [K, 4] float32 xyxy, scores [K] float32,
    labels [K] int64 (0-based class ids)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def rows(self) -> Iterator[tuple[list[float], float, int]]:
        """(xyxy, score, class id) per detection."""
        return zip(self.boxes.tolist(), self.scores.tolist(), self.labels.astype(int).tolist(), strict=True)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class DecodeSettings:
    """Thresholds of decoding; defaults from :mod:`ghostq.core.spec` (mAP evaluation wants a low score threshold)."""

    score_threshold: float = CONF  # keep (point, class) candidates whose score is > this
    iou_threshold: float = IOU  # class-wise NMS: suppress IoU > this
    max_det: int = MAX_DET  # detections kept per image
    pre_nms_topk: int = PRE_NMS_TOPK  # candidates per image that enter NMS (highest scores)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must lie in [0, 1], got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {self.iou_threshold}")
        if self.max_det < 1 or self.pre_nms_topk < 1:
            raise ValueError(f"max_det and pre_nms_topk must be >= 1, got {self.max_det}, {self.pre_nms_topk}")

    @classmethod
    def from_spec(cls, spec: DecodeSpec) -> DecodeSettings:
        """The decode settings a model spec carries."""
        return cls(spec.conf, spec.iou, spec.max_det, spec.pre_nms_topk)


def decode(
    scores: np.ndarray,
    boxes: np.ndarray,
    settings: DecodeSettings = DecodeSettings(),
    image_size: tuple[int, int] | None = None,
) -> list[Detections]:
    """Raw outputs ``scores`` [B, N, C], ``boxes`` [B, N, 4] -> detections per image (see module docstring).
    ``image_size`` = (height, width) of the network input: candidate boxes are clipped to it when given."""
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    if scores.ndim != 3 or boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"need scores [B, N, C] and boxes [B, N, 4], got {list(scores.shape)}, {list(boxes.shape)}")
    num_classes = scores.shape[-1]
    out = []
    for img_scores, img_boxes in zip(scores, boxes, strict=True):
        flat = img_scores.reshape(-1)  # index = point * C + class
        cand = np.flatnonzero(flat > np.float32(settings.score_threshold))
        if cand.size > settings.pre_nms_topk:
            cand = cand[np.argsort(-flat[cand], kind="stable")[: settings.pre_nms_topk]]
        cand_scores = flat[cand]
        points, labels = cand // num_classes, (cand % num_classes).astype(np.int64)
        cand_boxes = img_boxes[points]
        if image_size is not None:
            h, w = image_size
            cand_boxes = cand_boxes.copy()
            cand_boxes[:, 0::2] = cand_boxes[:, 0::2].clip(0, w)
            cand_boxes[:, 1::2] = cand_boxes[:, 1::2].clip(0, h)
        keep = batched_nms(cand_boxes, cand_scores, labels, settings.iou_threshold)[: settings.max_det]
        out.append(Detections(cand_boxes[keep], cand_scores[keep], labels[keep]))
    return out


def from_graph_nms(
    num_detections: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    settings: DecodeSettings = DecodeSettings(),
) -> list[Detections]:
    """In-graph NMS outputs -> detections per image (the valid rows, score > threshold, highest first)."""
    num = np.asarray(num_detections).reshape(len(boxes), -1)[:, 0].astype(np.int64)
    out = []
    for b in range(len(boxes)):
        k = int(np.clip(num[b], 0, boxes.shape[1]))
        b_boxes = np.asarray(boxes[b, :k], np.float32)
        out.append(_top(b_boxes, np.asarray(scores[b, :k], np.float32), np.asarray(classes[b, :k], np.int64), settings))
    return out


def _top(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, settings: DecodeSettings) -> Detections:
    keep = np.flatnonzero(scores > np.float32(settings.score_threshold))
    keep = keep[np.argsort(-scores[keep], kind="stable")][: settings.max_det]
    return Detections(boxes[keep].reshape(-1, 4), scores[keep], labels[keep])


def from_flat_nms(
    det_batch: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    settings: DecodeSettings = DecodeSettings(),
) -> list[Detections]:
    """ONNX NonMaxSuppression outputs (one row per kept detection of the whole batch) -> per image."""
    det_batch = np.asarray(det_batch).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    return [_top(boxes[m], scores[m], labels[m], settings) for m in (det_batch == b for b in range(batch_size))]


def decode_outputs(
    outputs: Mapping[str, np.ndarray],
    settings: DecodeSettings,
    image_size: tuple[int, int] | None,
    batch_size: int | None = None,
) -> list[Detections]:
    """Detections from a graph's named outputs, whichever of the three forms it has."""
    if all(name in outputs for name in NMS_OUTPUTS):
        return from_graph_nms(*(outputs[name] for name in NMS_OUTPUTS), settings=settings)
    if all(name in outputs for name in FLAT_NMS_OUTPUTS):
        if batch_size is None:
            raise ValueError("NonMaxSuppression outputs need the batch size")
        return from_flat_nms(*(outputs[name] for name in FLAT_NMS_OUTPUTS), batch_size, settings)
    if all(name in outputs for name in RAW_OUTPUTS):
        return decode(outputs["scores"], outputs["boxes"], settings, image_size)
    raise ValueError(
        f"graph outputs {sorted(outputs)} are none of {list(RAW_OUTPUTS)}, {list(NMS_OUTPUTS)} or "
        f"{list(FLAT_NMS_OUTPUTS)} (the ghostq export contract)"
    )
