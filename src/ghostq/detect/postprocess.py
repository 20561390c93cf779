"""From a DetectorOutput to per-image detections: scores, candidate selection, class-wise NMS, top-k.

Scores: sigmoid head -> ``sigmoid(logits)`` over the C classes; softmax head -> ``softmax`` over C + 1 and the
C foreground probabilities. With ``clip`` (the LogitClip the model was trained with): the probabilities of the
clipped logits, mapped onto [0, 1] (``ghostq.detect.losses.robust.clipped_class_scores``, as the exported head
computes them), so that thresholds keep their meaning. Candidates are (point, class) pairs whose score is strictly above
``score_threshold`` (multi-label: one point may give boxes of several classes, as in YOLOv8 / mmdet
evaluation), at most ``pre_nms_topk`` of them per image (highest scores), then class-wise greedy NMS
(``ghostq.detect.nms.batched_nms``) and at most ``max_det`` detections per image, highest score first.
With ``ood="msp"`` or ``"energy"`` each detection also carries an out-of-distribution score computed from its
anchor's raw logits (``ghostq.detect.ood``; higher = more likely an object of no known class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ghostq.core.spec import CONF, IOU, MAX_DET, PRE_NMS_TOPK, DecodeSpec
from ghostq.detect.boxes import clip_boxes
from ghostq.detect.losses.robust import LogitClip, clipped_class_scores
from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.nms import batched_nms


@dataclass
class Detections:
    """Detections of one image, highest score first: boxes [K, 4] xyxy, scores [K], labels [K] (int64,
    0-based class ids), and optionally ood [K] (out-of-distribution score, higher = less like a known class)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    ood: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        ood = self.ood.to(device) if self.ood is not None else None
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), ood)


def class_scores(cls_logits: torch.Tensor, head: str, clip: LogitClip | None = None) -> torch.Tensor:
    """Per-class probabilities [..., C] from logits [..., K]: sigmoid (K = C) or softmax's foreground
    part (K = C + 1, the last logit is background); with ``clip``, of the clipped logits mapped onto [0, 1]."""
    return clipped_class_scores(cls_logits, head, clip)


@torch.no_grad()
def postprocess(
    out: DetectorOutput,
    score_threshold: float = CONF,
    iou_threshold: float = IOU,
    max_det: int = MAX_DET,
    pre_nms_topk: int = PRE_NMS_TOPK,
    head: str | None = None,
    image_size: tuple[int, int] | None = None,
    ood: str | None = None,
    clip: LogitClip | None = None,
) -> list[Detections]:
    """Detections per image of a batch.

    Args:
        out: the detector's output (``cls_logits`` [B, N, K], ``boxes`` [B, N, 4] input pixels).
        score_threshold: keep (point, class) candidates whose score is > this.
        iou_threshold: NMS suppresses a box overlapping a kept box of its class with IoU > this.
        max_det: detections kept per image after NMS.
        pre_nms_topk: candidates per image that enter NMS (the highest-scoring ones).
        head: "sigmoid" or "softmax"; None: ``out.head_type``, which ghostq's head sets. (The logits alone
            cannot tell: a softmax head over C + 1 looks like a sigmoid head over C + 1 classes.)
        image_size: (height, width) of the network input: boxes are clipped to it when given.
        ood: ``"msp"`` or ``"energy"`` to attach an OOD score per detection (``Detections.ood``); None: none.
        clip: the LogitClip the model was trained with (``inference_head.logit_clip_of(spec)``): scores of the clipped
            logits mapped onto [0, 1]; None: the logits as given. (Logits clipped already are fine: the clip is
            idempotent.)
    """
    if head is None:
        head = out.head_type
    ood_all = None
    if ood is not None:
        from ghostq.detect.ood import ood_score

        ood_all = ood_score(out.cls_logits.float(), head, ood)  # [B, N]
    decode = DecodeSpec(score_threshold, iou_threshold, max_det, pre_nms_topk)
    return decode_scores(class_scores(out.cls_logits.float(), head, clip), out.boxes, decode, image_size, ood_all)


@torch.no_grad()
def decode_scores(
    scores: torch.Tensor,
    boxes: torch.Tensor,
    decode: DecodeSpec,
    image_size: tuple[int, int] | None = None,
    ood: torch.Tensor | None = None,
) -> list[Detections]:
    """Detections per image from class scores [B, N, C] and boxes [B, N, 4] (what ``InferenceHead`` returns):
    candidates above ``decode.conf`` (the top ``pre_nms_topk``), class-wise NMS, the best ``max_det``."""
    if decode.max_det < 1 or decode.pre_nms_topk < 1:
        raise ValueError(f"max_det and pre_nms_topk must be >= 1, got {decode.max_det} and {decode.pre_nms_topk}")
    scores_all, boxes_all = scores.float(), boxes.float()
    num_classes = scores_all.shape[-1]
    results = []
    for b, (scores, boxes) in enumerate(zip(scores_all, boxes_all, strict=True)):
        flat = scores.reshape(-1)  # index = point * C + class
        cand = torch.nonzero(flat > decode.conf).squeeze(1)
        if cand.numel() > decode.pre_nms_topk:
            cand = cand[flat[cand].topk(decode.pre_nms_topk).indices]
        cand_scores = flat[cand]
        points, labels = cand // num_classes, cand % num_classes
        cand_boxes = boxes[points]
        if image_size is not None:
            cand_boxes = clip_boxes(cand_boxes, image_size)
        keep = batched_nms(cand_boxes, cand_scores, labels, decode.iou)[: decode.max_det]
        det_ood = ood[b][points[keep]] if ood is not None else None
        results.append(Detections(cand_boxes[keep], cand_scores[keep], labels[keep], det_ood))
    return results


def scale_boxes_to_original(
    boxes: torch.Tensor,
    ratio: float | Sequence[float],
    pad: Sequence[float],
    original_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Undo a letterbox: map xyxy boxes from network-input pixels back to the original image.

    The letterbox maps an original pixel to the input as ``x_in = x_orig * ratio_x + pad_x`` and
    ``y_in = y_orig * ratio_y + pad_y``: ``ratio`` is the resize factor (one float, or (ratio_x, ratio_y)),
    ``pad = (pad_x, pad_y)`` the offset in input pixels of the image's top-left corner (left and top padding).
    Returns ``(x_in - pad_x) / ratio_x`` etc. as a new tensor, clipped to ``original_size = (height, width)``
    when given.
    """
    rx, ry = (ratio, ratio) if isinstance(ratio, int | float) else (float(ratio[0]), float(ratio[1]))
    px, py = float(pad[0]), float(pad[1])
    offset = boxes.new_tensor([px, py, px, py])
    scale = boxes.new_tensor([rx, ry, rx, ry])
    out = (boxes - offset) / scale
    if original_size is not None:
        out = clip_boxes(out, original_size)
    return out
