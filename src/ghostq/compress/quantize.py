"""``quantize(model, QuantConfig)``: swap every Conv2d for a brevitas quantized conv with per-layer bits.

Model-agnostic: any nn.Module made of Conv2d (+ BatchNorm, folded first with ``fold_bn``) and activation
modules. Each quantized conv carries its quantizers as child modules (``weight_quant``, ``input_quant``):
weights signed symmetric per output channel, zero point 0, learned scale; the conv's input signed full-range
per tensor. Activation modules stay as they are (elementwise; their outputs are quantized at the next conv's
input, the placement TensorRT fuses, DESIGN §6). Biases stay in floating point (TensorRT adds them in FP32).

Bit widths are data: ``layer_bits`` maps fnmatch patterns or exact module names to bits (2..8, or 32 =
keep full precision), e.g. ``{"backbone.stem.conv": 8, "neck.*": 4}``; later patterns win, exact names win
over patterns, and the first-conv / prediction-conv switches win over both.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import brevitas.nn as qnn
import torch
from torch import nn

from ghostq.compress.quantizers import ACT_QUANTS, WeightPerChannelLearned, act_quant_for, weight_thresholds

FP_BITS = 32  # "bits" of a layer kept in full precision
WEIGHT_BITS = tuple(range(2, 9))  # widths a quantized weight may take (exported as INT8 values on a coarser grid)


@dataclass(frozen=True)
class QuantConfig:
    """What to quantize and with how many bits (validated on creation)."""

    weight_bits: int = 8  # default weight bits of every conv (32 = keep FP unless layer_bits says otherwise)
    act_bits: int = 8  # bits of each quantized conv's input (8: TensorRT cannot run fewer)
    layer_bits: Mapping[str, int] = field(default_factory=dict)  # pattern or exact name -> bits (32 = FP)
    quantize_first_conv: bool = True  # GHOST quantizes the conv that reads the image
    quantize_prediction_convs: bool = False  # GHOST keeps the final prediction convs in FP
    act_calib: str = "percentile"  # activation scale init: minmax | percentile | mse
    act_percentile: float = 99.99  # percentile of |x| for act_calib=percentile
    first_conv: str | None = None  # name of the first conv (default: model.first_conv_name() or the first Conv2d)
    prediction_convs: tuple[str, ...] | None = None  # default: model.prediction_layer_names() (or none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_bits", dict(self.layer_bits))  # a private copy: no aliasing
        for key, bits in [("weight_bits", self.weight_bits), *self.layer_bits.items()]:
            if bits not in (*WEIGHT_BITS, FP_BITS):
                raise ValueError(f"bits for {key!r} must be 2..8 or {FP_BITS} (full precision), got {bits!r}")
        if self.act_bits not in WEIGHT_BITS:
            raise ValueError(f"act_bits must be 2..8, got {self.act_bits!r}")
        if self.act_calib not in ACT_QUANTS:
            raise ValueError(f"act_calib must be one of {sorted(ACT_QUANTS)}, got {self.act_calib!r}")
        if not 50.0 < self.act_percentile <= 100.0:
            raise ValueError(f"act_percentile must be in (50, 100], got {self.act_percentile!r}")


class QConv2d(qnn.QuantConv2d):
    """brevitas QuantConv2d that remembers its bit widths (``weight_bits``, ``act_bits``)."""

    def __init__(self, conv: nn.Conv2d, weight_bits: int, act_bits: int, act_quant: type) -> None:
        super().__init__(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, weight_quant=WeightPerChannelLearned, weight_bit_width=weight_bits,
            input_quant=act_quant, input_bit_width=act_bits, bias_quant=None, return_quant_tensor=False,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        self.weight_bits, self.act_bits = int(weight_bits), int(act_bits)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.train(conv.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}, act_bits={self.act_bits}"


def _swap_conv(conv: nn.Conv2d, weight_bits: int, config: QuantConfig) -> nn.Module:
    return QConv2d(conv, weight_bits, config.act_bits, act_quant_for(config.act_calib, config.act_percentile))


# Module-swap registry: float module type -> builder of its quantized replacement.
SWAPS: dict[type[nn.Module], Callable[[Any, int, QuantConfig], nn.Module]] = {nn.Conv2d: _swap_conv}


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the float layers ``quantize`` can swap (exact registry types), in registration order."""
    return [n for n, m in model.named_modules() if type(m) in SWAPS]


def first_conv_of(model: nn.Module, config: QuantConfig | None = None) -> str | None:
    """The conv that reads the input: config override, ``model.first_conv_name()``, else the first Conv2d."""
    if config is not None and config.first_conv:
        return config.first_conv
    if hasattr(model, "first_conv_name"):
        return model.first_conv_name()
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def prediction_convs_of(model: nn.Module, config: QuantConfig | None = None) -> list[str]:
    """The final prediction convs: config override, else ``model.prediction_layer_names()``, else none."""
    if config is not None and config.prediction_convs is not None:
        return list(config.prediction_convs)
    return list(model.prediction_layer_names()) if hasattr(model, "prediction_layer_names") else []


def resolve_bits(model: nn.Module, config: QuantConfig) -> dict[str, int]:
    """Weight bits of every quantizable layer (32 = stays FP), after patterns, exact names and switches."""
    names = quantizable_layers(model)
    bits = {n: config.weight_bits for n in names}
    patterns = [(p, b) for p, b in config.layer_bits.items() if p not in bits]
    for pattern, b in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ValueError(f"layer_bits pattern {pattern!r} matches no Conv2d of the model")
        bits.update(dict.fromkeys(hits, b))
    bits.update({n: b for n, b in config.layer_bits.items() if n in bits})
    first = first_conv_of(model, config)
    if not config.quantize_first_conv and first in bits:
        bits[first] = FP_BITS
    if not config.quantize_prediction_convs:
        bits.update({n: FP_BITS for n in prediction_convs_of(model, config) if n in bits})
    return bits


def quantize(model: nn.Module, config: QuantConfig) -> nn.Module:
    """Swap the layers of ``model`` in place for quantized ones (BN must be folded first); returns it."""
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        bn_after_conv = _bn_after_conv(model)
        if bn_after_conv:
            raise ValueError(f"fold BatchNorm first (ghostq.compress.fold_bn): {bn_after_conv[0]} follows a conv")
    for name, bits in resolve_bits(model, config).items():
        if bits == FP_BITS:
            continue
        float_module = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SWAPS[type(float_module)](float_module, bits, config))
    return model


quantize_ = quantize  # torchao spelling: in place


def _bn_after_conv(model: nn.Module) -> list[str]:
    from ghostq.compress.fold_bn import conv_bn_pairs

    return [bn for _conv, bn in conv_bn_pairs(model)]


def layer_bits(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(weight bits, input activation bits) of every conv / linear; FP layers are (32, 32)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, QConv2d):
            out[name] = (m.weight_bits, m.act_bits)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            out[name] = (FP_BITS, FP_BITS)
    return out


def _weight_scaling_impl(m: QConv2d) -> nn.Module:
    return m.weight_quant.tensor_quant.scaling_impl


@torch.no_grad()
def init_weight_scales(model: nn.Module, method: str = "mse") -> int:
    """Set every quantized conv's learned weight scale (log2 threshold) from its weights; returns the count."""
    n = 0
    for m in model.modules():
        if isinstance(m, QConv2d):
            impl = _weight_scaling_impl(m)
            t = weight_thresholds(m.weight, m.weight_bits, method)
            impl.value.data = torch.log2(t).reshape(impl.value.shape).to(impl.value)
            impl.init_done = True
            n += 1
    return n


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu",
                          max_batches: int | None = None) -> int:
    """brevitas calibration: run batches (weights unquantized) to set activation scales; returns batches run."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # brevitas.graph warns about optional packages on import
        from brevitas.graph.calibrate import calibration_mode

    was_training = model.training
    model.eval()
    n = 0
    with calibration_mode(model):
        for images in batches:
            if max_batches is not None and n >= max_batches:
                break
            model(images.to(device))
            n += 1
    model.train(was_training)
    if n == 0:
        raise ValueError("activation calibration needs at least one batch")
    return n


def int8_weight(m: QConv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The executed weight as INT8 values (on the 2^b-level grid of its bit width) and its [C_out] scales."""
    qw = m.quant_weight()
    return qw.int().to(torch.int8), qw.scale.detach().reshape(-1)


def act_scale(m: QConv2d) -> torch.Tensor:
    """The per-tensor scale of a quantized conv's input (a 0-d tensor)."""
    return m.input_quant.scale().detach().reshape(())


def rebuild_quantized(model: nn.Module, bits: Mapping[str, int], act_bits: int = 8,
                      act_calib: str = "percentile") -> nn.Module:
    """Fold BN and quantize a freshly built FP architecture with stored per-layer bits (then load a state dict)."""
    from ghostq.compress.fold_bn import fold_bn

    fold_bn(model)
    cfg = QuantConfig(weight_bits=FP_BITS, act_bits=act_bits, layer_bits=dict(bits), quantize_first_conv=True,
                      quantize_prediction_convs=True, act_calib=act_calib)
    return quantize(model, cfg)


@torch.no_grad()
def share_input_quantizers(model: nn.Module, groups: Iterable[Sequence[str]]) -> int:
    """Give the quantized convs of each scale group a single input quantizer (one learned scale).

    The exported INT8 graph has one scale per group of conv inputs (a tensor read by several convs; Concat,
    MaxPool and Resize shared). Tying the quantizers makes QAT learn exactly the scales the exported graph uses,
    so the INT8 file computes what the quantized model computed. ``groups`` (module names of the convs, one list
    per group) come from the export layer (``ghostq.export.scale_groups.trace_scale_groups``) or a checkpoint.
    Returns the number of quantizers replaced by a shared one.
    """
    qconvs = {name: m for name, m in model.named_modules() if isinstance(m, QConv2d)}
    tied = 0
    for group in groups:
        unknown = [name for name in group if name not in qconvs]
        if unknown:
            raise ValueError(f"scale group names convs that are not quantized: {', '.join(unknown)}")
        first = qconvs[group[0]]
        for name in group[1:]:
            if qconvs[name].input_quant is not first.input_quant:
                qconvs[name].input_quant = first.input_quant
                tied += 1
    return tied
