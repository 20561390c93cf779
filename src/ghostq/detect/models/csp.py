"""CSP backbone in the YOLOv8 layout (C2f stages, SPPF at the deepest stage), n and s widths.

Base widths 64/128/256/512/1024 and repeats 3/6/6/3 are scaled by ``width`` and ``depth``, as in YOLOv5/v8:
n = (depth 0.33, width 0.25), s = (depth 0.33, width 0.50). Layout, strides in brackets:

    stem   ConvBNAct 3x3 s2                          [2]
    stage0 ConvBNAct 3x3 s2 + C2f(shortcut) x n0     [4]
    stage1 ConvBNAct 3x3 s2 + C2f(shortcut) x n1     [8]
    stage2 ConvBNAct 3x3 s2 + C2f(shortcut) x n2     [16]
    stage3 ConvBNAct 3x3 s2 + C2f(shortcut) x n3     [32]
    SPPF after the deepest stage that is built.

Only the stages up to the largest requested stride are built (GHOST's strides 4/8/16 drop stage3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ghostq.detect.models.layers import SPPF, ActLike, C2f, ConvBNAct, make_divisible
from ghostq.detect.models.registry import SUPPORTED_STRIDES, Backbone, check_strides, register_backbone

_BASE_WIDTHS = (64, 128, 256, 512, 1024)  # stem, stage0..stage3
_BASE_DEPTHS = (3, 6, 6, 3)  # C2f repeats of stage0..stage3


class CSPBackbone(Backbone):
    """YOLOv8-style CSP backbone; features at ``out_strides`` (a subset of 4, 8, 16, 32)."""

    def __init__(
        self,
        width: float,
        depth: float,
        in_channels: int = 3,
        out_strides: Sequence[int] = SUPPORTED_STRIDES,
        act: ActLike = "relu",
    ) -> None:
        super().__init__()
        self.out_strides = check_strides(out_strides)
        widths = [make_divisible(c * width) for c in _BASE_WIDTHS]
        repeats = [max(round(d * depth), 1) for d in _BASE_DEPTHS]
        n_stages = SUPPORTED_STRIDES.index(max(self.out_strides)) + 1

        self.stem = ConvBNAct(in_channels, widths[0], 3, 2, act=act)
        stages = []
        for i in range(n_stages):
            c_in, c_out = widths[i], widths[i + 1]
            layers: list[nn.Module] = [
                ConvBNAct(c_in, c_out, 3, 2, act=act),
                C2f(c_out, c_out, repeats[i], shortcut=True, act=act),
            ]
            if i == n_stages - 1:
                layers.append(SPPF(c_out, c_out, 5, act=act))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self._stage_strides = SUPPORTED_STRIDES[:n_stages]
        self._channels = {s: widths[i + 1] for i, s in enumerate(self._stage_strides)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stride, stage in zip(self._stage_strides, self.stages, strict=True):
            x = stage(x)
            if stride in self.out_strides:
                feats.append(x)
        return feats


@register_backbone
def csp_n(
    in_channels: int = 3, out_strides: Sequence[int] = SUPPORTED_STRIDES, act: ActLike = "relu"
) -> CSPBackbone:
    """CSP backbone, YOLOv8-n size (depth 0.33, width 0.25): widths 32/64/128/256 at strides 4/8/16/32."""
    return CSPBackbone(0.25, 0.33, in_channels, out_strides, act)


@register_backbone
def csp_s(
    in_channels: int = 3, out_strides: Sequence[int] = SUPPORTED_STRIDES, act: ActLike = "relu"
) -> CSPBackbone:
    """CSP backbone, YOLOv8-s size (depth 0.33, width 0.50): widths 64/128/256/512 at strides 4/8/16/32."""
    return CSPBackbone(0.50, 0.33, in_channels, out_strides, act)
