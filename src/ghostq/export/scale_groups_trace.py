"""Scale groups of a quantized torch model, from an ONNX trace of its float twin (the exporter is export's job).

``ghostq.compress.quantize.share_input_quantizers`` takes the groups this returns; the compress stage passes
them in, and the quantized checkpoint keeps them as data, so loading it needs no trace.
"""

from __future__ import annotations

import io

import onnx
import torch
from torch import nn

from ghostq.compress.quantize import QConv2d
from ghostq.export.ghost_source import dequantized_copy
from ghostq.export.scale_groups import conv_scale_groups


class _Outputs(nn.Module):
    """The detector's raw outputs as a tuple, under the attribute ``model`` (``conv_module_name`` drops it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out.cls_logits, out.boxes


@torch.no_grad()
def trace_scale_groups(model: nn.Module, example: torch.Tensor) -> list[list[str]]:
    """Scale groups of a quantized model's convs: a TorchScript ONNX trace of its float twin (same module names).

    The twin is ``ghost_source.dequantized_copy`` (the one QConv2d -> Conv2d swap), so ``model`` is left as it is.
    """
    qconvs = {name for name, m in model.named_modules() if isinstance(m, QConv2d)}
    plain = dequantized_copy(model).cpu()
    buf = io.BytesIO()
    torch.onnx.export(_Outputs(plain), (example.cpu(),), buf, opset_version=17, dynamo=False)
    return conv_scale_groups(onnx.load_from_string(buf.getvalue()), qconvs)
