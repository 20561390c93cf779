"""PAN neck (path aggregation, as in YOLOv5/v8) over any number of levels.

Levels are ordered shallow -> deep (increasing stride, each twice the previous). With backbone features
f_0 .. f_{L-1}:

    top-down   t_{L-1} = f_{L-1};   t_i = C2f(cat(up2(t_{i+1}), f_i))            i = L-2 .. 0
    bottom-up  o_0 = t_0;           o_i = C2f(cat(ConvBNAct3x3s2(o_{i-1}), t_i))  i = 1 .. L-1

Upsampling is a nearest-neighbour ``nn.Upsample(scale_factor=2)`` (an ONNX Resize with constant scales).
Output widths: the backbone widths (YOLOv8) or, with ``width``, one width for every level, reached by a 1x1
ConvBNAct lateral conv on each backbone feature first. One level: the neck is the (optional) lateral conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ghostq.detect.models.layers import ActLike, C2f, ConvBNAct


class PAN(nn.Module):
    """Path aggregation neck; ``forward(feats) -> feats`` with widths ``out_channels``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        width: int | None = None,
        depth: int = 1,
        act: ActLike = "relu",
    ) -> None:
        super().__init__()
        in_channels = tuple(in_channels)
        n = len(in_channels)
        if width is None:
            self.lateral = None
            widths = in_channels
        else:
            self.lateral = nn.ModuleList(ConvBNAct(c, width, 1, act=act) for c in in_channels)
            widths = (width,) * n
        self.out_channels: tuple[int, ...] = widths
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        # td_blocks[i] makes t_i (i = 0 .. n-2); down_convs[i] / bu_blocks[i] make o_{i+1}.
        self.td_blocks = nn.ModuleList(
            C2f(widths[i + 1] + widths[i], widths[i], depth, shortcut=False, act=act) for i in range(n - 1)
        )
        self.down_convs = nn.ModuleList(ConvBNAct(widths[i], widths[i], 3, 2, act=act) for i in range(n - 1))
        self.bu_blocks = nn.ModuleList(
            C2f(widths[i] + widths[i + 1], widths[i + 1], depth, shortcut=False, act=act)
            for i in range(n - 1)
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self.lateral is not None:
            feats = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        n = len(feats)
        td: list[torch.Tensor] = [feats[-1]]  # t_{n-1}, then t_{n-2}, ..., t_0
        for i in range(n - 2, -1, -1):
            td.append(self.td_blocks[i](torch.cat((self.upsample(td[-1]), feats[i]), dim=1)))
        td.reverse()
        outs = [td[0]]
        for i in range(n - 1):
            outs.append(self.bu_blocks[i](torch.cat((self.down_convs[i](outs[-1]), td[i + 1]), dim=1)))
        return outs
