"""Elementwise IoU, GIoU and CIoU of xyxy boxes (private to the losses; the public ones: ghostq.detect.boxes).

Every function takes two broadcastable tensors ``[..., 4]`` (x1, y1, x2, y2) and returns ``[...]``.
They are safe on degenerate input: widths and heights are clamped at 0 (an inverted box has zero area) and
every denominator carries ``eps``, so zero-area boxes give finite values and finite gradients, never NaN.
IoU is scale-free; ``eps`` is an absolute area, so callers that want it to mean the same thing at every
scale divide both boxes by a common length first (the detection loss divides by the anchor stride).
"""

from __future__ import annotations

import math

import torch

EPS = 1e-7


def _wh(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0), (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def _iou_union(a: torch.Tensor, b: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    wa, ha = _wh(a)
    wb, hb = _wh(b)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = iw * ih
    union = wa * ha + wb * hb - inter
    return inter / (union + eps), union


def _enclosing_wh(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cw = (torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])).clamp_min(0)
    ch = (torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])).clamp_min(0)
    return cw, ch


def iou(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Intersection over union, in [0, 1]."""
    return _iou_union(a, b, eps)[0]


def giou(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Generalized IoU (Rezatofighi et al., CVPR 2019): IoU - (|C| - |A u B|) / |C|, C the enclosing box.

    In [-1, 1]; unlike IoU it still has a gradient when the boxes do not overlap.
    """
    value, union = _iou_union(a, b, eps)
    cw, ch = _enclosing_wh(a, b)
    area_c = cw * ch
    return value - (area_c - union) / (area_c + eps)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Complete IoU (Zheng et al., AAAI 2020): IoU - rho^2 / c^2 - alpha * v.

    rho = distance of the centres, c = diagonal of the enclosing box,
    v = 4 / pi^2 * (atan(w_b / h_b) - atan(w_a / h_a))^2 and alpha = v / (1 - IoU + v), which is treated as a
    constant in the backward pass (as in the paper's reference code).
    """
    value, _ = _iou_union(a, b, eps)
    cw, ch = _enclosing_wh(a, b)
    c2 = cw.square() + ch.square() + eps
    rho2 = (
        (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]).square()
        + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]).square()
    ) / 4
    wa, ha = _wh(a)
    wb, hb = _wh(b)
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))).square()
    with torch.no_grad():
        alpha = v / (v - value + (1 + eps))
    return value - rho2 / c2 - alpha * v
