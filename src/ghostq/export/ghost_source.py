"""Quantization data from a compressed (GHOST / QAT / PTQ) model for the Q/DQ writer.

A compressed model (``ghostq.compress``) has its BatchNorms folded and every quantized conv swapped for a
brevitas ``QConv2d`` with per-channel weight scales, integer weights on its bit width's grid and a per-tensor
input scale. ``dequantized_copy`` turns it into a plain float model whose conv weights are exactly
``weight_int * weight_scale`` (so the FP32 ONNX of it carries the executed weights), and ``spec_from_quantized``
reads the integer weights and scales as plain data (``qdq_export.ConvQuant``): the Q/DQ graph written from
both computes what the quantized torch model computes.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ghostq.export.qdq_export import ConvQuant


def _quantized_convs(model: nn.Module) -> dict[str, nn.Module]:
    from ghostq.compress.quantize import QConv2d

    return {n: m for n, m in model.named_modules() if isinstance(m, QConv2d) and m.weight_bits < 32}


@torch.no_grad()
def spec_from_quantized(model: nn.Module) -> dict[str, ConvQuant]:
    """conv name -> ConvQuant (integer weights, per-channel scales, input scale, bit width)."""
    from ghostq.compress.quantize import act_scale, int8_weight

    spec = {}
    for name, m in _quantized_convs(model).items():
        wi, ws = int8_weight(m)
        spec[name] = ConvQuant(
            weight_scale=ws.float().cpu().numpy(),
            input_scale=float(act_scale(m)),
            weight_int=wi.cpu().numpy().astype(np.int8),
            weight_bits=int(m.weight_bits),
        )
    return spec


@torch.no_grad()
def dequantized_copy(model: nn.Module) -> nn.Module:
    """A float copy: every QConv2d (and FP-kept quantizable conv) becomes an nn.Conv2d with the executed weight."""
    from ghostq.compress.quantize import QConv2d, int8_weight

    out = copy.deepcopy(model).float().eval()
    for name, m in list(out.named_modules()):
        if not isinstance(m, QConv2d):
            continue
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                         dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
        if m.weight_bits < 32:
            wi, ws = int8_weight(m)
            conv.weight.copy_(wi.float() * ws.float().reshape(-1, 1, 1, 1))
        else:
            conv.weight.copy_(m.weight)
        if m.bias is not None:
            conv.bias.copy_(m.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name) if parent_name else out, child, conv)
    return out.eval()
