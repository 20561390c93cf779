"""brevitas quantizer definitions (injectors) used by ghostq's quantized layers.

Weights: signed, symmetric (narrow range, [-(2^(n-1)-1), 2^(n-1)-1]), zero point 0, one scale per output
channel, learned (LSQ-style) in the log2 domain so it stays strictly positive. brevitas' PARAMETER_FROM_STATS
initialises the parameter from the per-channel abs max on the first forward (ghostq may overwrite it with an
MSE-optimal value, see ``init_weight_scales``).

Activations: signed, full range ([-2^(n-1), 2^(n-1)-1]), zero point 0, one scale per tensor (what TensorRT
runs, DESIGN §6), learned (log2 domain; linear for MSE) after a calibration from runtime statistics
(min-max, percentile or MSE).

Both kinds are registries (``register_act_quantizer``, ``register_weight_scale_init``): the config's
``compress.ptq.calib`` and ``compress.weight_scale_init`` accept exactly the names registered here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

import torch
from brevitas.core.stats import StatsOp
from brevitas.inject.enum import RestrictValueType, ScalingImplType
from brevitas.quant.scaled_int import (
    Int8ActPerTensorFloat,
    Int8ActPerTensorFloatMSE,
    Int8WeightPerChannelFloat,
)

T = TypeVar("T", bound=type)
WeightInitFn = Callable[[torch.Tensor, int], torch.Tensor]  # (weights [C_out, K], bits) -> [C_out] thresholds

_ACT_QUANTS: dict[str, type] = {}
_WEIGHT_INITS: dict[str, WeightInitFn] = {}
ACT_QUANTS: Mapping[str, type] = MappingProxyType(_ACT_QUANTS)  # calibration name -> activation injector
WEIGHT_SCALE_INITS: Mapping[str, WeightInitFn] = MappingProxyType(_WEIGHT_INITS)  # name -> threshold rule


def register_act_quantizer(name: str) -> Callable[[T], T]:
    """Decorator: register a brevitas activation injector as the calibration method ``name``."""

    def add(injector: T) -> T:
        _ACT_QUANTS[name] = injector
        return injector

    return add


def register_weight_scale_init(name: str) -> Callable[[WeightInitFn], WeightInitFn]:
    """Decorator: register a rule giving each output channel's initial clip threshold from the weights."""

    def add(fn: WeightInitFn) -> WeightInitFn:
        _WEIGHT_INITS[name] = fn
        return fn

    return add


def act_quantizer_names() -> tuple[str, ...]:
    """Activation calibration methods (`compress.ptq.calib`), sorted."""
    return tuple(sorted(_ACT_QUANTS))


def weight_scale_init_names() -> tuple[str, ...]:
    """Initial weight-scale rules (`compress.weight_scale_init`), sorted."""
    return tuple(sorted(_WEIGHT_INITS))


class WeightPerChannelLearned(Int8WeightPerChannelFloat):
    """Signed narrow-range per-output-channel weights, zero point 0, learned log2 scale (init: abs max)."""

    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    restrict_scaling_type = RestrictValueType.LOG_FP


@register_act_quantizer("percentile")
class ActPerTensorPercentile(Int8ActPerTensorFloat):
    """Signed full-range per-tensor activations, learned log2 scale initialised from a high percentile."""

    restrict_scaling_type = RestrictValueType.LOG_FP
    high_percentile_q = 99.99
    collect_stats_steps = 30


@register_act_quantizer("minmax")
class ActPerTensorMinMax(ActPerTensorPercentile):
    """As ActPerTensorPercentile, initialised from the abs max (min-max calibration)."""

    scaling_stats_op = StatsOp.MAX


@register_act_quantizer("mse")
class ActPerTensorMSE(Int8ActPerTensorFloatMSE):
    """Signed full-range per-tensor activations, learned scale initialised at the least quantization MSE.

    The scale is learned in the linear domain (kept positive by brevitas' scaling_min_val): brevitas' MSE
    search returns NaN when combined with the log2 parametrisation (measured with brevitas 0.13.4).
    """

    restrict_scaling_type = RestrictValueType.FP
    collect_stats_steps = 30


@register_weight_scale_init("max")
def max_thresholds(flat: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-channel abs max: nothing clipped."""
    return flat.abs().amax(dim=1).clamp_min(1e-8)


@register_weight_scale_init("mse")
def mse_thresholds(flat: torch.Tensor, bits: int, grid: int = 40) -> torch.Tensor:
    """Per channel, the threshold in [0.2, 1] x abs max (grid points) of least quantization MSE."""
    qmax = 2 ** (bits - 1) - 1
    amax = max_thresholds(flat, bits)
    best, best_err = amax.clone(), torch.full_like(amax, math.inf)
    for frac in torch.linspace(0.2, 1.0, grid):
        t = amax * frac
        s = (t / qmax)[:, None]
        err = ((torch.clamp(torch.round(flat / s), -qmax, qmax) * s - flat) ** 2).sum(dim=1)
        better = err < best_err
        best[better], best_err[better] = t[better], err[better]
    return best


@torch.no_grad()
def weight_thresholds(w: torch.Tensor, bits: int, method: str = "mse") -> torch.Tensor:
    """Per-output-channel clip threshold (scale * (2^(b-1) - 1)) of ``w`` by a registered rule."""
    try:
        rule = _WEIGHT_INITS[method]
    except KeyError:
        raise ValueError(f"unknown weight scale init {method!r}; choose one of {weight_scale_init_names()}") from None
    return rule(w.detach().reshape(w.shape[0], -1).float(), bits)


def act_quant_for(calib: str, percentile: float = 99.99) -> type:
    """The activation injector of a calibration method (a percentile other than the default: a subclass)."""
    try:
        base = _ACT_QUANTS[calib]
    except KeyError:
        raise ValueError(f"unknown activation calibration {calib!r}; choose one of {act_quantizer_names()}") from None
    if calib == "percentile" and percentile != base.high_percentile_q:
        return type("ActPerTensorPercentileCustom", (base,), {"high_percentile_q": float(percentile)})
    return base
