"""Compression as a library: FP detector -> HQ bits -> quantized model -> PTQ / QAT / GQSD (``compress_detector``).

``write_compressed`` writes ``ghost/best.pt`` (state dict + per-layer bits as data; rebuilt by ``load_quantized``),
``ghost/bits.json``, ``ghost/metrics.json`` and ``ghost/bits.png``; the compress stage (``ghostq.stages.compress``)
decides when, under the run folder's lock and manifest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ghostq.core.atomic import atomic_write_json
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError

# Scale groups of a quantized model (export's ONNX trace; compress does not run the exporter): model, example ->
# the conv names of each group.
ScaleGroupTracer = Callable[[nn.Module, torch.Tensor], list[list[str]]]

if TYPE_CHECKING:
    from ghostq.core.spec import ModelSpec
    from ghostq.detect.data.prepare import DataSplits
    from ghostq.detect.distributed import DistInfo


@dataclass
class Compressed:
    """A quantized detector with its metrics, chosen bits (HQ's result) and cost tables (rank 0)."""

    model: nn.Module
    metrics: dict[str, Any]
    hq: dict[str, Any]
    scale_groups: list[list[str]]  # convs sharing one input quantizer (saved: loading needs no trace)
    tables: dict[str, str] = field(default_factory=dict)


def quant_config_for(ccfg: CompressConfig, bits: dict[str, int] | None = None):  # noqa: ANN201
    """The QuantConfig of a compress section (exact per-layer ``bits`` when given: HQ's result)."""
    from ghostq.compress.quantize import FP_BITS, QuantConfig

    calib = ccfg.ptq.calib
    if bits is not None:
        return QuantConfig(weight_bits=FP_BITS, act_bits=ccfg.act_bits, layer_bits=bits, quantize_first_conv=True,
                           quantize_prediction_convs=True, act_calib=calib, act_percentile=ccfg.ptq.percentile)
    return QuantConfig(weight_bits=ccfg.weight_bits, act_bits=ccfg.act_bits, layer_bits=ccfg.layer_bits,
                       quantize_first_conv=ccfg.quantize_first_conv,
                       quantize_prediction_convs=ccfg.quantize_prediction_convs, act_calib=calib,
                       act_percentile=ccfg.ptq.percentile)


def choose_bits(folded: nn.Module, ccfg: CompressConfig, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """HQ on the folded FP model (GHOST), or uniform widths (QAT / PTQ, or hq.mode=uniform)."""
    from ghostq.compress.hybrid_bits import hq_bits

    hq = ccfg.hq if ccfg.method == "ghost" else ccfg.hq.model_copy(update={"mode": "uniform"})
    return hq_bits(folded, quant_config_for(ccfg), input_shape, hq)


def build_student(fp: nn.Module, ccfg: CompressConfig, bits: dict[str, int], input_shape: tuple[int, ...],
                  trace: ScaleGroupTracer) -> tuple[nn.Module, list[list[str]]]:
    """Fold BN into a copy of the FP model, quantize it with the chosen bits, and tie the input quantizers of each
    scale group (`trace`: the export layer's ``trace_scale_groups``); the student and its groups (saved with it)."""
    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.quantize import quantize, share_input_quantizers

    student = quantize(fold_bn(copy.deepcopy(fp).eval()), quant_config_for(ccfg, bits))
    groups = trace(student, torch.zeros(input_shape))
    share_input_quantizers(student, groups)
    return student, groups


def load_quantized(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a quantized detector from ``ghost/best.pt``: architecture from its model spec, bits as data."""
    from ghostq.compress.quantize import rebuild_quantized, share_input_quantizers
    from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint, load_state_checked
    from ghostq.detect.models import build_detector_from_spec

    payload = load_checkpoint(path, map_location)
    if "bits" not in payload:
        raise GhostqError(f"{path}: not a quantized ghostq checkpoint (no 'bits' entry)")
    bits = payload["bits"]
    if not isinstance(bits, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in bits.values()):
        raise GhostqError(f"{path}: 'bits' must map layer names to integer bit widths")
    spec = checkpoint_spec(payload)
    try:
        model = build_detector_from_spec(spec)
    except GhostqError as err:
        raise GhostqError(f"{path}: {err}") from None
    try:  # bits, activation settings and scale groups are data from the file: a bad value is the file's fault
        rebuild_quantized(model, bits, payload.get("act_bits", 8), payload.get("act_calib", "percentile"))
        share_input_quantizers(model, payload.get("scale_groups", []))
    except (ValueError, KeyError, TypeError) as err:
        raise GhostqError(f"{path}: its quantization entries do not fit the model ({' '.join(str(err).split())})") \
            from None
    load_state_checked(path, model, payload["model"], "quantized model")
    return model.eval(), payload


def compress_detector(cfg: Config, fp: nn.Module, spec: ModelSpec, splits: DataSplits, info: DistInfo,
                      device: torch.device, trace: ScaleGroupTracer, *, source: Path, max_steps: int | None = None,
                      show_progress: bool = True) -> Compressed:
    """Quantize the FP detector `fp` (model spec `spec`, which the quantized model shares) as ``cfg.compress``
    says: HQ bits, calibration, then PTQ or QAT / GQSD through the detector's Trainer. Writes nothing (the
    compress stage does, with ``write_compressed``)."""
    from ghostq.compress.cost import model_cost
    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.ptq import calibrate
    from ghostq.compress.qat import fp_step_seconds, train_quantized
    from ghostq.detect.inference import evaluate_detector, make_eval_loader

    ccfg = cfg.compress
    shape = (1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size)
    hq = choose_bits(fold_bn(copy.deepcopy(fp).eval()), ccfg, shape)
    student, groups = build_student(fp, ccfg, hq["bits"], shape, trace)
    calib_loader = make_eval_loader(splits.train, cfg.data.img_size, cfg.data.in_channels,
                                    batch_size=ccfg.batch_size or cfg.train.batch_size,
                                    cache_images=cfg.data.cache_images)
    weight_init = "mse" if ccfg.method == "ptq" and ccfg.ptq.calib == "mse" else ccfg.weight_scale_init
    if ccfg.method == "ptq" and ccfg.ptq.calib == "minmax":
        weight_init = "max"
    calibrate(student, calib_loader, ccfg.ptq.batches, weight_init, device)
    val_loader = make_eval_loader(splits.val, cfg.data.img_size, cfg.data.in_channels,
                                  cache_images=cfg.data.cache_images)
    metrics: dict[str, Any] = {"method": ccfg.method, "source": str(source)}
    if info.is_main:
        fp_m = evaluate_detector(fp.to(device), val_loader, splits.val_coco(), spec, device)
        metrics["fp"] = {"mAP50": fp_m["mAP50"], "mAP50_95": fp_m["mAP50_95"]}
    if ccfg.method == "ptq":
        if info.is_main:
            m = evaluate_detector(student.to(device), val_loader, splits.val_coco(), spec, device)
            metrics.update(mAP50=m["mAP50"], mAP50_95=m["mAP50_95"], train_seconds=0.0)
        model = student
    else:
        result = train_quantized(cfg, ccfg, student, fp, splits, info, device, distill=ccfg.method == "ghost",
                                 max_steps=max_steps, show_progress=show_progress)
        model = result.model
        fp_step = fp_step_seconds(cfg, fp, splits, device, ccfg.batch_size or cfg.train.batch_size)
        metrics.update(result.metrics, history=result.history, step_seconds=round(result.step_seconds, 4),
                       fp_step_seconds=round(fp_step, 4),
                       step_time_ratio=round(result.step_seconds / fp_step, 3) if fp_step else None)
    if not info.is_main:
        return Compressed(model, metrics, hq, groups)
    model = model.cpu()
    q_cost, fp_cost = model_cost(model, shape), model_cost(fp.cpu(), shape)
    metrics["cost"] = {"fp32": fp_cost.totals(), "quantized": q_cost.totals()}
    metrics.update(size_mb=q_cost.size_mb, bops_g=q_cost.bops_g, avg_weight_bits=q_cost.avg_weight_bits)
    return Compressed(model, metrics, hq, groups, {"fp32": fp_cost.table(), "quantized": q_cost.table()})


def write_compressed(out_dir: Path, cfg: Config, spec: ModelSpec, done: Compressed) -> list[Path]:
    """ghost/best.pt (state dict + per-layer bits as data), bits.json, metrics.json, bits.png; the paths."""
    from ghostq.compress.bits_plot import plot_bits
    from ghostq.detect.checkpoint import save_checkpoint

    ccfg, metrics = cfg.compress, done.metrics
    return [
        save_checkpoint(out_dir / "best.pt", {
            "config": cfg.model_dump(mode="json"), "compress": ccfg.model_dump(mode="json"),
            "classes": list(spec.classes), "spec": spec.to_dict(), "model": done.model.state_dict(),
            "bits": done.hq["bits"], "scale_groups": done.scale_groups,
            "act_bits": ccfg.act_bits, "act_calib": ccfg.ptq.calib, "metrics": {
                k: v for k, v in metrics.items() if k != "history"}}),
        atomic_write_json(out_dir / "bits.json", done.hq["json"]),
        atomic_write_json(out_dir / "metrics.json", metrics),
        plot_bits(done.hq["json"], out_dir / "bits.png"),
    ]
