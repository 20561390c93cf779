"""The `compress` config section (pydantic, no torch): method, bit widths (HQ), distillation, baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # floats must be finite


class HQConfig(_Section):
    mode: Literal["uniform", "rule", "budget"] = Field(
        "rule", description="uniform: weight_bits everywhere; rule: GHOST's k-means threshold; budget: a cost target"
    )
    threshold: float = Field(0.1, gt=0, description="rule: first n with 1e6 * k-means MSE below this (paper: 0.1)")
    budget: Literal["avg_bits", "size_mb", "bops_g"] = Field("size_mb", description="budget mode: what is limited")
    target: float | None = Field(
        None, gt=0, description="budget value (avg bits, MB or GBOPs); None: the cost at target_uniform_bits"
    )
    target_uniform_bits: int = Field(4, ge=2, le=8, description="budget = cost of uniform weights at these bits")
    min_bits: int = Field(2, ge=2, le=8, description="lowest width HQ may choose (paper: 2)")
    weights: Literal["raw", "folded"] = Field(
        "raw", description="what k-means clusters: raw conv weights (GHOST's code) or BN-folded (the executed ones)")


class DistillConfig(_Section):
    w_det: float = Field(2.0, ge=0, description="weight of the detection loss (GHOST code: 2)")
    w_kd: float = Field(400.0, ge=0, description="weight of the OST attention loss (GHOST code: 400)")
    scm: Literal["gumbel", "gumbel_learned", "gt", "off"] = Field(
        "gt", description="switch: gumbel (GHOST: fixed random projections, hard Gumbel gate), gumbel_learned "
        "(trained projections held at an open rate), gt (teacher only where its loss is lower), off (always)")
    layers: list[str] | None = Field(
        None, description="paired layers (fnmatch, outermost match); None: backbone stages and neck blocks")
    proj_dim: int = Field(128, ge=1, description="gumbel switch: projection width of the channel descriptors")
    tau: float = Field(1.0, gt=0, description="gumbel switch: temperature of the Gumbel-sigmoid")
    open_target: float = Field(0.5, gt=0, lt=1, description="gumbel_learned: open share the gate is held at")
    open_weight: float = Field(4.0, gt=0, description="gumbel_learned: weight of (open share - open_target)^2")


class PTQConfig(_Section):
    calib: str = Field(
        "percentile", description="activation calibration: a name of ghostq.compress.quantizers.act_quantizer_names()"
    )
    percentile: float = Field(99.99, gt=50, le=100, description="|x| percentile for calib=percentile")
    batches: int = Field(8, ge=1, description="calibration batches")

    @field_validator("calib")
    @classmethod
    def _registered_calib(cls, v: str, info: ValidationInfo) -> str:
        from ghostq.core.config import registered  # core.config imports this module

        return registered(v, info, "compress.ptq.calib", "activation calibration")


class CompressConfig(_Section):
    method: Literal["ghost", "qat", "ptq"] = Field("ghost", description="GHOST (HQ + GQSD), plain QAT, or PTQ")
    source: Path | None = Field(None, description="FP checkpoint; None: <run dir>/fp/best.pt")
    weight_bits: int = Field(8, ge=2, le=8, description="uniform weight bits (hq.mode=uniform, qat, ptq)")
    act_bits: Literal[8] = Field(8, description="activation bits (8: what TensorRT runs)")
    layer_bits: dict[str, int] = Field(default_factory=dict, description="pattern -> bits overrides (32 = FP)")
    quantize_first_conv: bool = Field(True, description="quantize the conv reading the image (GHOST: yes)")
    quantize_prediction_convs: bool = Field(False, description="quantize the final prediction convs (GHOST: no)")
    weight_scale_init: str = Field(
        "mse", description="initial per-channel weight scale: a name of quantizers.weight_scale_init_names()"
    )
    hq: HQConfig = Field(default_factory=HQConfig, description="hybrid bit widths")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="GQSD / OST / SCM")
    ptq: PTQConfig = Field(default_factory=PTQConfig, description="calibration (PTQ, and QAT's starting point)")
    epochs: int = Field(10, ge=1, description="QAT epochs")
    lr: float = Field(2e-4, gt=0, description="QAT peak learning rate")
    batch_size: int | None = Field(None, ge=1, description="QAT batch size; None: train.batch_size")
    warmup_epochs: float = Field(0.5, ge=0, description="QAT linear warmup in epochs")
    ema: bool = Field(True, description="evaluate and keep an EMA of the QAT weights")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last)")

    @field_validator("weight_scale_init")
    @classmethod
    def _registered_weight_init(cls, v: str, info: ValidationInfo) -> str:
        from ghostq.core.config import registered  # core.config imports this module

        return registered(v, info, "compress.weight_scale_init", "weight scale init")

    @field_validator("layer_bits")
    @classmethod
    def _bits(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: b for k, b in v.items() if b not in (2, 3, 4, 5, 6, 7, 8, 32)}
        if bad:
            raise ValueError(f"bits must be 2..8 or 32 (full precision), got {bad}")
        return v
