"""ConvNeXt V2 (Woo et al., CVPR 2023) Atto and Femto as multi-scale detection backbones.

Differences from the classification network, each for deployment:
- channels-first throughout: the two pointwise Linear layers of a block are 1x1 Conv2d (same maths, no
  permutes; a quantization pass treats them like every other conv), LayerNorm and GRN are written with plain
  ops over the channel axis (:class:`LayerNorm2d`, :class:`GRN2d`) and export to ONNX at opset 17;
- no classifier: a LayerNorm on each returned feature map (as ConvNeXt's detection / segmentation models do);
- the block activation is a parameter: GELU reproduces the paper, the detector default is ReLU
  (DESIGN §3: ReLU fuses into integer convolutions, GELU does not).

Widths / depths: Atto 40/80/160/320, Femto 48/96/192/384, blocks 2/2/6/2, at strides 4/8/16/32.
Only the stages up to the largest requested stride are built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ghostq.detect.models.layers import ActLike, DropPath, GRN2d, LayerNorm2d, get_act
from ghostq.detect.models.registry import SUPPORTED_STRIDES, Backbone, check_strides, register_backbone


class ConvNeXtV2Block(nn.Module):
    """dwconv 7x7 -> LayerNorm -> 1x1 conv (4x) -> act -> GRN -> 1x1 conv -> drop path, plus the residual."""

    def __init__(self, dim: int, act: ActLike = "gelu", drop_path: float = 0.0) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Conv2d(dim, 4 * dim, 1)
        self.act = get_act(act)()
        self.grn = GRN2d(4 * dim)
        self.pwconv2 = nn.Conv2d(4 * dim, dim, 1)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(self.dwconv(x))))))
        return x + self.drop_path(y)


class ConvNeXtV2(Backbone):
    """ConvNeXt V2 with features at ``out_strides`` (a subset of 4, 8, 16, 32), each LayerNorm-ed."""

    def __init__(
        self,
        dims: Sequence[int],
        depths: Sequence[int] = (2, 2, 6, 2),
        in_channels: int = 3,
        out_strides: Sequence[int] = SUPPORTED_STRIDES,
        act: ActLike = "gelu",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.out_strides = check_strides(out_strides)
        n_stages = SUPPORTED_STRIDES.index(max(self.out_strides)) + 1
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()

        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, 4), LayerNorm2d(dims[0]))
        stages = []
        first_block = 0
        for i in range(n_stages):
            layers: list[nn.Module] = []
            if i > 0:  # downsampling layer of stage i: LayerNorm + 2x2 conv stride 2
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dims[i], 2, 2)]
            layers += [
                ConvNeXtV2Block(dims[i], act, rates[first_block + j]) for j in range(depths[i])
            ]
            first_block += depths[i]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self._stage_strides = SUPPORTED_STRIDES[:n_stages]
        self._channels = {s: dims[i] for i, s in enumerate(self._stage_strides)}
        self.out_norms = nn.ModuleList(LayerNorm2d(self._channels[s]) for s in self.out_strides)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stride, stage in zip(self._stage_strides, self.stages, strict=True):
            x = stage(x)
            if stride in self.out_strides:
                feats.append(self.out_norms[len(feats)](x))
        return feats


@register_backbone
def convnextv2_atto(
    in_channels: int = 3,
    out_strides: Sequence[int] = SUPPORTED_STRIDES,
    act: ActLike = "gelu",
    drop_path_rate: float = 0.0,
) -> ConvNeXtV2:
    """ConvNeXt V2 Atto (3.4M params as a classifier): widths 40/80/160/320, blocks 2/2/6/2."""
    return ConvNeXtV2((40, 80, 160, 320), (2, 2, 6, 2), in_channels, out_strides, act, drop_path_rate)


@register_backbone
def convnextv2_femto(
    in_channels: int = 3,
    out_strides: Sequence[int] = SUPPORTED_STRIDES,
    act: ActLike = "gelu",
    drop_path_rate: float = 0.0,
) -> ConvNeXtV2:
    """ConvNeXt V2 Femto (5.2M params as a classifier): widths 48/96/192/384, blocks 2/2/6/2."""
    return ConvNeXtV2((48, 96, 192, 384), (2, 2, 6, 2), in_channels, out_strides, act, drop_path_rate)
