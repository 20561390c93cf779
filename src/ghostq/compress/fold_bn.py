"""Fold every BatchNorm2d into the Conv2d that feeds it, so the exported weights are the executed weights.

A conv and its BN are found structurally: inside one parent module, a Conv2d immediately followed (in
registration order) by a BatchNorm2d over its output channels (``ConvBNAct``'s ``.conv/.bn``, or a
``nn.Sequential(conv, bn, ...)``). The BN becomes ``nn.Identity`` and the conv gets the bias:
    w' = w * gamma / sqrt(var + eps)            (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta
Valid in eval mode (running statistics), which is what GHOST's QAT starts from. The fused conv keeps the raw
conv weight as ``unfolded_weight`` (a plain attribute, not in its state dict) for HQ's ``weights: raw``.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) equal to ``bn(conv(x))`` with BN in eval mode."""
    if conv.out_channels != bn.num_features:
        raise ValueError(f"conv has {conv.out_channels} output channels, BN has {bn.num_features}")
    mean = bn.running_mean.double()
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(mean)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(mean)
    factor = gamma / torch.sqrt(var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    w = conv.weight.double() * factor.view(-1, 1, 1, 1)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    fused.weight.copy_(w.to(conv.weight.dtype))
    fused.bias.copy_(((b - mean) * factor + beta).to(conv.weight.dtype))
    fused.train(conv.training)
    fused.unfolded_weight = getattr(conv, "unfolded_weight", conv.weight).detach().clone()
    return fused


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) of every Conv2d directly followed by a matching BatchNorm2d in its parent."""
    pairs = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
            if (type(a) is nn.Conv2d and isinstance(b, nn.BatchNorm2d)
                    and b.num_features == a.out_channels and b.track_running_stats):
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + name_a, prefix + name_b))
    return pairs


def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every conv -> BN pair of ``model`` in place (BN -> Identity); returns the model."""
    for conv_name, bn_name in conv_bn_pairs(model):
        conv = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        _set_submodule(model, conv_name, fold_conv_bn(conv, bn))
        _set_submodule(model, bn_name, nn.Identity())
    return model


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
