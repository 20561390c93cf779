"""Box operations in plain torch (no torchvision): format conversions, areas, clipping, IoU family.

Formats: ``xyxy`` = (x1, y1, x2, y2) corners; ``xywh`` = (x1, y1, w, h) (COCO json);
``cxcywh`` = (cx, cy, w, h).
Boxes are [..., 4] tensors; every function broadcasts over leading dimensions and keeps dtype and device.

Two IoU families:
- pairwise (``box_iou``, ``generalized_box_iou``): [N, 4] x [M, 4] -> [N, M], exact ``inter / union`` with
  no epsilon (what NMS and evaluation need: IoU exactly at a threshold stays at it); 0 for two empty boxes.
- elementwise aligned (``bbox_iou(a, b, kind)``): [..., 4] x [..., 4] -> [...], for losses: ``eps`` in the
  denominators keeps gradients finite on degenerate boxes; kinds "iou", "giou", "ciou".
"""

from __future__ import annotations

import math

import torch

IOU_KINDS = ("iou", "giou", "ciou")


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (x1, y1, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, w, h) -> (x1, y1, x2, y2)."""
    x1, y1, w, h = boxes.unbind(-1)
    return torch.stack((x1, y1, x1 + w, y1 + h), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of xyxy boxes [..., 4] -> [...]; inverted boxes (x2 < x1 or y2 < y1) count as 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int] | tuple[float, float]) -> torch.Tensor:
    """Clip xyxy boxes to an image of ``size = (height, width)``: x into [0, width], y into [0, height].
    Returns a new tensor."""
    h, w = size
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def _pairwise_inter_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # Exact num / den wherever den > 0 (no epsilon shifts a value at a threshold); 0 where den == 0.
    return num / den.clamp(min=torch.finfo(den.dtype).tiny)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: [N, 4], [M, 4] -> [N, M] (no epsilon; 0 for two empty boxes)."""
    inter, union = _pairwise_inter_union(a, b)
    return _safe_div(inter, union)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019): IoU - (C - U) / C, C the enclosing box area.
    [N, 4], [M, 4] -> [N, M], in [-1, 1]."""
    inter, union = _pairwise_inter_union(a, b)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclose = wh[..., 0] * wh[..., 1]
    return _safe_div(inter, union) - _safe_div(enclose - union, enclose)


def bbox_iou(a: torch.Tensor, b: torch.Tensor, kind: str = "iou", eps: float = 1e-7) -> torch.Tensor:
    """Elementwise (aligned) IoU, GIoU or CIoU of xyxy boxes [..., 4] and [..., 4] (broadcast) -> [...].

    - "iou":  inter / (union + eps)
    - "giou": iou - (C - union) / (C + eps), C the area of the smallest enclosing box
    - "ciou": iou - rho^2 / (c^2 + eps) - alpha * v (Zheng et al. 2020), rho the distance of the centres,
      c the diagonal of the enclosing box, v = 4 / pi^2 * (atan(w_b / h_b) - atan(w_a / h_a))^2 and
      alpha = v / (1 - iou + v + eps), alpha treated as a constant in backward (as in the paper's code).
    The losses use 1 - bbox_iou(pred, target, kind).
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"kind must be one of {IOU_KINDS}, got {kind!r}")
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    aw, ah = ax2 - ax1, ay2 - ay1
    bw, bh = bx2 - bx1, by2 - by1
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = iw * ih
    union = aw.clamp(min=0) * ah.clamp(min=0) + bw.clamp(min=0) * bh.clamp(min=0) - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)  # enclosing box
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    if kind == "giou":
        enclose = cw * ch
        return iou - (enclose - union) / (enclose + eps)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / (bh + eps)) - torch.atan(aw / (ah + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return iou - rho2 / c2 - alpha * v
