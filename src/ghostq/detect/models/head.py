"""Anchor-free decoupled head: per level a classification branch and a box branch, and the box decoding.

Per level l (stride s_l): cls = Conv1x1(ConvBNAct3x3(ConvBNAct3x3(f_l))) -> K logits per point;
box = Conv1x1(ConvBNAct3x3(ConvBNAct3x3(f_l))) -> 4 raw ltrb values per point.

Decoding: ``d = softplus(raw) * s_l`` (left, top, right, bottom distances in input pixels) and
``box = (px - d_l, py - d_t, px + d_r, py + d_b)`` around the anchor point
``p = ((j + 0.5) s_l, (i + 0.5) s_l)``.

Why softplus rather than exp (FCOS/YOLOX) or DFL (YOLOv8): it is positive and smooth; its gradient (a
sigmoid) never vanishes, unlike ReLU's at 0; it is linear for large inputs, so a box of k strides needs a raw
value of about k (exp needs log k, and overflows FP16 when the raw value runs away), which keeps the raw
range modest and uniform; it is one ONNX op (Softplus) that TensorRT runs natively; and it needs no reg_max
bins (DFL's 4 x 16 outputs and a softmax per side).

Initialisation (so training starts stable): the final convs have weights N(0, 0.01); the classification
bias gives every class the prior probability p = 0.01 (sigmoid: b = -log((1 - p) / p); softmax: foreground
logits 0 and background logit log((1 - p) C / p), so that P(background) = 1 - p and each class gets p / C);
the box bias is softplus^-1(1), so every point first predicts a box reaching one stride in each direction
(as exp(0) = 1 does for FCOS/YOLOX).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ghostq.detect.models.layers import ActLike, ConvBNAct
from ghostq.detect.models.output import DetectorOutput

HEAD_TYPES = ("sigmoid", "softmax")
_CACHE_SIZE = 8  # input sizes whose anchor points are kept (multi-scale training cycles through a few)


def make_anchor_points(
    sizes: Sequence[tuple[int, int]] | Sequence[tuple[torch.Tensor, torch.Tensor]],
    strides: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points [N, 2] (x, y of cell centres, input pixels) and their strides [N], levels concatenated
    in order, each level row-major (y outer, x inner), matching the flattening of an [H, W] map."""
    points, point_strides = [], []
    for (h, w), s in zip(sizes, strides, strict=True):
        xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) * s
        ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((xx, yy), dim=-1).reshape(-1, 2))
        point_strides.append(torch.full_like(xx.reshape(-1), float(s)))
    return torch.cat(points), torch.cat(point_strides)


def _branch(c_in: int, c_hidden: int, act: ActLike) -> nn.Sequential:
    return nn.Sequential(ConvBNAct(c_in, c_hidden, 3, act=act), ConvBNAct(c_hidden, c_hidden, 3, act=act))


class DecoupledHead(nn.Module):
    """Decoupled anchor-free head over the neck's levels; ``forward(feats) -> DetectorOutput``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        head_type: str = "sigmoid",
        act: ActLike = "relu",
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        if head_type not in HEAD_TYPES:
            raise ValueError(f"head must be one of {HEAD_TYPES}, got {head_type!r}")
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} feature levels for {len(strides)} strides")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must lie in (0, 1), got {prior_prob}")
        self.num_classes = num_classes
        self.head_type = head_type
        self.strides = tuple(int(s) for s in strides)
        self.num_outputs = num_classes + (1 if head_type == "softmax" else 0)
        # Branch widths as in YOLOv8's head: set by the shallowest level's width and the class count, the
        # same at every level (its box width with reg_max = 16 is at least 64).
        c_cls = max(in_channels[0], min(num_classes, 100))
        c_box = max(16, in_channels[0] // 4, 64)
        self.cls_convs = nn.ModuleList(_branch(c, c_cls, act) for c in in_channels)
        self.box_convs = nn.ModuleList(_branch(c, c_box, act) for c in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c_cls, self.num_outputs, 1) for _ in in_channels)
        self.box_preds = nn.ModuleList(nn.Conv2d(c_box, 4, 1) for _ in in_channels)
        self.box_act = nn.Softplus()
        self._points_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.init_prediction_layers(prior_prob)

    @torch.no_grad()
    def init_prediction_layers(self, prior_prob: float = 0.01) -> None:
        """Reset the final convs: small weights, class prior ``prior_prob``, boxes one stride wide."""
        if self.head_type == "sigmoid":
            cls_bias = torch.full((self.num_outputs,), -math.log((1.0 - prior_prob) / prior_prob))
        else:  # softmax over C + 1: each class prior_prob / C, background 1 - prior_prob
            cls_bias = torch.zeros(self.num_outputs)
            cls_bias[-1] = math.log((1.0 - prior_prob) * self.num_classes / prior_prob)
        box_bias = math.log(math.expm1(1.0))  # softplus(b) = 1
        for conv in self.cls_preds:
            nn.init.normal_(conv.weight, std=0.01)
            conv.bias.copy_(cls_bias)
        for conv in self.box_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, box_bias)

    def anchor_points(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Points [N, 2] and strides [N] for these feature maps; cached per feature size, device and dtype.

        Plain tensors, not buffers: nothing lands in the state dict. In an ONNX export (tracing) they become
        constants of the traced input size: the graph takes any batch size, at that one height and width
        (a different size fails in the runtime with a shape error, never silently).
        """
        dtype = feats[0].dtype if feats[0].dtype in (torch.float32, torch.float64) else torch.float32
        device = feats[0].device
        if torch.compiler.is_compiling():  # torch.compile / torch.export: no cache mutation, shapes symbolic
            return make_anchor_points([f.shape[-2:] for f in feats], self.strides, dtype, device)
        if torch.jit.is_tracing():
            with warnings.catch_warnings():  # the sizes are meant to be constants of the exported graph
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                sizes = tuple((int(f.shape[-2]), int(f.shape[-1])) for f in feats)
        else:
            sizes = tuple((int(f.shape[-2]), int(f.shape[-1])) for f in feats)
        key = (sizes, dtype, device, torch.is_inference_mode_enabled())
        hit = self._points_cache.get(key)
        if hit is None:
            with torch.no_grad():
                hit = make_anchor_points(sizes, self.strides, dtype, device)
            if len(self._points_cache) >= _CACHE_SIZE:
                self._points_cache.pop(next(iter(self._points_cache)))
            self._points_cache[key] = hit
        return hit

    def forward(self, feats: Sequence[torch.Tensor]) -> DetectorOutput:
        cls_maps, box_maps = [], []
        for i, f in enumerate(feats):
            cls_maps.append(self.cls_preds[i](self.cls_convs[i](f)).flatten(2))  # [B, K, HW]
            box_maps.append(self.box_preds[i](self.box_convs[i](f)).flatten(2))  # [B, 4, HW]
        cls_logits = torch.cat(cls_maps, dim=2).transpose(1, 2)  # [B, N, K]
        raw = torch.cat(box_maps, dim=2).transpose(1, 2)  # [B, N, 4]
        if raw.dtype in (torch.float16, torch.bfloat16):  # decode in float32 under autocast
            raw = raw.float()
        points, strides = self.anchor_points(feats)
        dist = self.box_act(raw) * strides[:, None]
        boxes = torch.cat((points - dist[..., :2], points + dist[..., 2:]), dim=-1)
        return DetectorOutput(cls_logits=cls_logits, boxes=boxes, points=points, strides=strides,
                              head_type=self.head_type)
