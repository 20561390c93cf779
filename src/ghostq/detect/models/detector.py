"""The detector: backbone -> PAN neck -> decoupled head, and ``build_detector``.

``Detector.forward(x)`` returns a :class:`DetectorOutput` (the same in train and eval mode); losses and
assignment live in ``ghostq.detect.losses`` and post-processing in ``ghostq.detect.postprocess``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ghostq.detect.models.head import HEAD_TYPES, DecoupledHead
from ghostq.detect.models.layers import ActLike, get_act
from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.models.pan import PAN
from ghostq.detect.models.registry import Backbone, check_strides, create_backbone


class Detector(nn.Module):
    """One-stage anchor-free detector.

    Attributes: ``num_classes`` (C), ``head_type`` ("sigmoid": K = C logits; "softmax": K = C + 1, last one
    background), ``num_outputs`` (K), ``strides`` (detection strides, increasing), ``in_channels``.
    Input: [B, in_channels, H, W] with H and W multiples of the largest stride.
    """

    def __init__(self, backbone: Backbone, neck: PAN, head: DecoupledHead, in_channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.in_channels = in_channels

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def head_type(self) -> str:
        return self.head.head_type

    @property
    def num_outputs(self) -> int:
        return self.head.num_outputs

    @property
    def strides(self) -> tuple[int, ...]:
        return self.head.strides

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Neck outputs, one per detection stride (the maps the head reads)."""
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self._check_input(x)
        return self.neck(self.backbone(x))

    def forward_head(self, feats: Sequence[torch.Tensor]) -> DetectorOutput:
        """Head outputs, decoded boxes, anchor points and strides of the given neck features."""
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        return self.forward_head(self.forward_features(x))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input [B, {self.in_channels}, H, W], got {list(x.shape)}")
        step = max(self.strides)
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"input height and width must be multiples of {step} (the largest stride), "
                             f"got {x.shape[2]}x{x.shape[3]}")

    def first_conv_name(self) -> str:
        """Module name of the conv that reads the input image (quantized or kept in FP by configuration)."""
        for name, module in self.backbone.named_modules():
            if isinstance(module, nn.Conv2d):
                return f"backbone.{name}"
        raise RuntimeError("backbone has no Conv2d")  # pragma: no cover - every built-in backbone has one

    def prediction_layer_names(self) -> list[str]:
        """Module names of the final prediction convs (classification then box, per level), the layers GHOST
        keeps in full precision by default."""
        n = len(self.strides)
        cls = [f"head.cls_preds.{i}{getattr(p, 'prediction_suffix', '')}" for i, p in enumerate(self.head.cls_preds)]
        return cls + [f"head.box_preds.{i}" for i in range(n)]

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, head_type={self.head_type!r}, strides={self.strides}, "
                f"in_channels={self.in_channels}")


def build_detector(
    backbone: str,
    num_classes: int,
    in_channels: int = 3,
    strides: Sequence[int] = (8, 16, 32),
    head: str = "sigmoid",
    act: ActLike = "relu",
    neck_width: int | None = None,
    neck_depth: int = 1,
    prior_prob: float = 0.01,
    backbone_kwargs: dict[str, Any] | None = None,
) -> Detector:
    """Build a detector from a registered backbone (``list_backbones()``).

    Args:
        backbone: registered backbone name, e.g. ``"csp_n"``, ``"convnextv2_atto"``.
        num_classes: number of object classes C (>= 1).
        in_channels: input channels, 3 (RGB) or 4 (RGB + IR).
        strides: detection strides, consecutive among 4/8/16/32 (default (8, 16, 32); GHOST: (4, 8, 16)).
        head: "sigmoid" (K = C logits) or "softmax" (K = C + 1, the last one background).
        act: activation of the whole network (backbone blocks, neck, head): a name or an nn.Module class.
            ReLU by default (fuses into INT8 convs); "gelu" with a ConvNeXt backbone gives the paper's blocks.
        neck_width: one channel width for every neck level (1x1 lateral convs reach it); None keeps the
            backbone widths (YOLOv8).
        neck_depth: bottlenecks per C2f block of the neck.
        prior_prob: initial foreground probability of every class.
        backbone_kwargs: extra arguments for the backbone builder (e.g. ``drop_path_rate`` for ConvNeXt).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if head not in HEAD_TYPES:
        raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}")
    if neck_width is not None and neck_width < 1:
        raise ValueError(f"neck_width must be >= 1 or None, got {neck_width}")
    strides = check_strides(strides)
    if any(b != 2 * a for a, b in zip(strides, strides[1:], strict=False)):
        raise ValueError(f"strides must be consecutive (each twice the previous) for the neck, got {strides}")
    get_act(act)  # fail early on an unknown activation name
    body = create_backbone(backbone, in_channels=in_channels, out_strides=strides, act=act,
                           **(backbone_kwargs or {}))
    neck = PAN(body.out_channels, width=neck_width, depth=neck_depth, act=act)
    det_head = DecoupledHead(neck.out_channels, strides, num_classes, head, act=act, prior_prob=prior_prob)
    return Detector(body, neck, det_head, in_channels)
