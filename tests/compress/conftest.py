"""Small models shared by the compression tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostq.detect.models.layers import ConvBNAct


class ToyNet(nn.Module):
    """Three convs (8 / 4 / FP in the cost test): stem ConvBNAct, body ConvBNAct, 1x1 prediction conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 8, 3, 2)
        self.body = ConvBNAct(8, 8, 3, 1)
        self.pred = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(self.body(self.stem(x)))

    def first_conv_name(self) -> str:
        return "stem.conv"

    def prediction_layer_names(self) -> list[str]:
        return ["pred"]


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters (so folding is really tested)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture
def randomize():
    """The BN randomizer, for tests that build their own models."""
    return randomize_bn


@pytest.fixture
def toy() -> ToyNet:
    return randomize_bn(ToyNet()).eval()
