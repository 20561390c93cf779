"""brevitas quantizer definitions (injectors) used by ghostq's quantized layers.

Weights: signed, symmetric (narrow range, [-(2^(n-1)-1), 2^(n-1)-1]), zero point 0, one scale per output
channel, learned (LSQ-style) in the log2 domain so it stays strictly positive. brevitas' PARAMETER_FROM_STATS
initialises the parameter from the per-channel abs max on the first forward (ghostq may overwrite it with an
MSE-optimal value, see ``init_weight_scales``).

Activations: signed, full range ([-2^(n-1), 2^(n-1)-1]), zero point 0, one scale per tensor (what TensorRT
runs, DESIGN §6), learned (log2 domain; linear for MSE) after a calibration from runtime statistics
(min-max, percentile or MSE).
"""

from __future__ import annotations

from typing import Literal

from brevitas.core.stats import StatsOp
from brevitas.inject.enum import RestrictValueType, ScalingImplType
from brevitas.quant.scaled_int import (
    Int8ActPerTensorFloat,
    Int8ActPerTensorFloatMSE,
    Int8WeightPerChannelFloat,
)

ActCalib = Literal["minmax", "percentile", "mse"]


class WeightPerChannelLearned(Int8WeightPerChannelFloat):
    """Signed narrow-range per-output-channel weights, zero point 0, learned log2 scale (init: abs max)."""

    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    restrict_scaling_type = RestrictValueType.LOG_FP


class ActPerTensorPercentile(Int8ActPerTensorFloat):
    """Signed full-range per-tensor activations, learned log2 scale initialised from a high percentile."""

    restrict_scaling_type = RestrictValueType.LOG_FP
    high_percentile_q = 99.99
    collect_stats_steps = 30


class ActPerTensorMinMax(ActPerTensorPercentile):
    """As ActPerTensorPercentile, initialised from the abs max (min-max calibration)."""

    scaling_stats_op = StatsOp.MAX


class ActPerTensorMSE(Int8ActPerTensorFloatMSE):
    """Signed full-range per-tensor activations, learned scale initialised at the least quantization MSE.

    The scale is learned in the linear domain (kept positive by brevitas' scaling_min_val): brevitas' MSE
    search returns NaN when combined with the log2 parametrisation (measured with brevitas 0.13.4).
    """

    restrict_scaling_type = RestrictValueType.FP
    collect_stats_steps = 30


ACT_QUANTS: dict[str, type] = {
    "minmax": ActPerTensorMinMax,
    "percentile": ActPerTensorPercentile,
    "mse": ActPerTensorMSE,
}


def act_quant_for(calib: str, percentile: float = 99.99) -> type:
    """The activation injector of a calibration method (a percentile other than the default: a subclass)."""
    try:
        base = ACT_QUANTS[calib]
    except KeyError:
        raise ValueError(f"unknown activation calibration {calib!r}; choose one of {sorted(ACT_QUANTS)}") from None
    if calib == "percentile" and percentile != base.high_percentile_q:
        return type("ActPerTensorPercentileCustom", (base,), {"high_percentile_q": float(percentile)})
    return base
