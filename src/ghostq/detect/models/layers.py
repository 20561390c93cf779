"""Small building blocks shared by the backbones, the neck and the head.

Every block is made of modules (nn.Conv2d, nn.BatchNorm2d, activation modules, nn.MaxPool2d), never of
functional activations or in-place ops, so that a later pass can fold each BatchNorm into its conv, swap convs
and activations for quantized modules, and put forward hooks on any of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ActLike = str | type[nn.Module] | Callable[[], nn.Module]

_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def get_act(act: ActLike) -> Callable[[], nn.Module]:
    """Resolve an activation given as a name (``"relu"``, ``"silu"``, ...) or an nn.Module class / factory.

    Returns a zero-argument factory: each call makes a new module instance (no module is shared between two
    places of the network, so quantizers and hooks stay per layer).
    """
    if isinstance(act, str):
        try:
            return _ACTS[act.lower()]
        except KeyError:
            raise ValueError(
                f"unknown activation {act!r}; choose one of {sorted(_ACTS)} or pass an nn.Module class"
            ) from None
    if callable(act):
        return act
    raise TypeError(f"act must be a name or an nn.Module class, got {type(act).__name__}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to the nearest multiple of ``divisor`` (never below it): YOLO's channel rounding."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; the unit a BN-folding pass turns into one conv."""

    def __init__(
        self, c_in: int, c_out: int, k: int = 1, s: int = 1, g: int = 1, act: ActLike = "relu"
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = get_act(act)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 ConvBNAct with an optional residual add (YOLOv8's bottleneck)."""

    def __init__(self, c: int, shortcut: bool = True, act: ActLike = "relu") -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c, c, 3, act=act)
        self.cv2 = ConvBNAct(c, c, 3, act=act)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block of YOLOv8: 1x1 conv, split in two halves, n bottlenecks chained on the second half,
    concat of everything, 1x1 conv. The split has fixed sizes (one ONNX Split node, no shape arithmetic).
    """

    def __init__(
        self, c_in: int, c_out: int, n: int = 1, shortcut: bool = False, act: ActLike = "relu"
    ) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = ConvBNAct(c_in, 2 * self.c, 1, act=act)
        self.cv2 = ConvBNAct((2 + n) * self.c, c_out, 1, act=act)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut, act=act) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), dim=1))  # constant split sizes in ONNX
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: one 5x5 max pool applied three times in a chain, outputs concatenated.

    Max pooling commutes with a per-tensor quantizer, so the export can share one scale across the chain.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 5, act: ActLike = "relu") -> None:
        super().__init__()
        c_hidden = c_in // 2
        self.cv1 = ConvBNAct(c_in, c_hidden, 1, act=act)
        self.cv2 = ConvBNAct(c_hidden * 4, c_out, 1, act=act)
        self.pool = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.cv2(torch.cat((x, y1, y2, y3), dim=1))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, written with plain ops (mean, sub, mul, sqrt, div).

    Equivalent to ``F.layer_norm`` on the channels-last permutation, without the two transposes; exports to
    ONNX as ReduceMean / Sub / Mul / Add / Sqrt / Div at any opset (no LayerNormalization op needed).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=1, keepdim=True)
        x = centred / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GRN2d(nn.Module):
    """Global Response Normalization of ConvNeXt V2, channels-first (NCHW).

    ``g = ||x||_2 over (H, W)`` per channel, ``n = g / (mean_c g + eps)``,
    ``out = gamma * (x * n) + beta + x``.
    gamma and beta start at zero, so the block starts as the identity (as in the paper).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.sqrt((x * x).sum(dim=(2, 3), keepdim=True))
        nx = gx / (gx.mean(dim=1, keepdim=True) + self.eps)
        return self.gamma * (x * nx) + self.beta + x


class DropPath(nn.Module):
    """Stochastic depth per sample (training only); the identity in eval mode and in export."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
