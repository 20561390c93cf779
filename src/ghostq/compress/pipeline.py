"""`ghostq compress`: FP checkpoint -> HQ bits -> quantized model -> PTQ / QAT / GQSD -> runs/<name>/ghost/.

Writes ``ghost/best.pt`` (state dict + per-layer bits as data; rebuilt by ``load_quantized``),
``ghost/bits.json``, ``ghost/metrics.json`` and ``ghost/bits.png`` through the run folder's ``compress`` stage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ghostq.core.atomic import atomic_write_json
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import Config, config_hash
from ghostq.core.errors import GhostqError

SECTIONS = ["run", "data", "model", "train", "loss", "eval"]


@dataclass
class CompressResult:
    """Where the stage left its artifacts, its metrics and the quantized model."""

    out_dir: Path
    metrics: dict[str, Any]
    model: nn.Module | None
    skipped: bool = False


def compress_config_of(cfg: Config, ccfg: CompressConfig | None = None) -> CompressConfig:
    """The compress section: the one given, else the config's own."""
    return ccfg or cfg.compress


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


def build_student(fp: nn.Module, ccfg: CompressConfig, bits: dict[str, int], input_shape: tuple[int, ...]) -> nn.Module:
    """Fold BN into a copy of the FP model, quantize it with the chosen bits, tie shared input quantizers."""
    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.quantize import quantize, share_input_quantizers

    student = quantize(fold_bn(copy.deepcopy(fp).eval()), quant_config_for(ccfg, bits))
    share_input_quantizers(student, torch.zeros(input_shape))
    return student


def load_quantized(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a quantized detector from ``ghost/best.pt`` (architecture from config, bits as data)."""
    from ghostq.compress.quantize import rebuild_quantized, share_input_quantizers
    from ghostq.detect.checkpoint import load_checkpoint, load_state_checked
    from ghostq.detect.train import build_model_from_config

    payload = load_checkpoint(path, map_location)
    if "bits" not in payload:
        raise GhostqError(f"{path}: not a quantized ghostq checkpoint (no 'bits' entry)")
    bits = payload["bits"]
    if not isinstance(bits, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in bits.values()):
        raise GhostqError(f"{path}: 'bits' must map layer names to integer bit widths")
    data = {k: v for k, v in payload["config"].items() if k in Config.model_fields}
    cfg = Config.model_validate(data)
    model = build_model_from_config(cfg, len(payload["classes"]))
    rebuild_quantized(model, payload["bits"], payload.get("act_bits", 8), payload.get("act_calib", "percentile"))
    share_input_quantizers(model, torch.zeros(1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size))
    load_state_checked(path, model, payload["model"], "quantized model")
    return model.eval(), payload


def compress(cfg: Config, ccfg: CompressConfig | None = None, *, force: bool = False,
             max_steps: int | None = None, show_progress: bool = True) -> CompressResult:
    """Run the compress stage of ``cfg`` (skipped when current unless forced), holding the run folder's lock."""
    import os
    from contextlib import nullcontext

    from ghostq.core.runs import RunDir

    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes, so only it locks
    with RunDir(cfg.run_dir).lock("ghostq compress") if main else nullcontext():
        return _compress(cfg, ccfg, force=force, max_steps=max_steps, show_progress=show_progress)


def _compress(cfg: Config, ccfg: CompressConfig | None = None, *, force: bool = False,
              max_steps: int | None = None, show_progress: bool = True) -> CompressResult:
    from ghostq.compress.bits_plot import plot_bits
    from ghostq.compress.cost import model_cost
    from ghostq.compress.ptq import calibrate
    from ghostq.compress.qat import fp_step_seconds, train_quantized
    from ghostq.core.runs import RunDir
    from ghostq.detect.checkpoint import load_detector, save_checkpoint
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.distributed import init_distributed
    from ghostq.detect.inference import evaluate_detector, make_eval_loader
    from ghostq.detect.train import pick_device

    ccfg = compress_config_of(cfg, ccfg)
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    info = init_distributed(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    run = RunDir(cfg.run_dir)
    source = Path(ccfg.source) if ccfg.source else run.path / "fp" / "best.pt"
    if not source.is_file():
        raise GhostqError(f"{source}: no full-precision checkpoint to compress (run `ghostq train` first)")
    out_dir = run.path / "ghost"
    digest = config_hash(cfg, SECTIONS) + ":" + config_hash(ccfg)
    if not force and run.is_current("compress", digest, [source]):
        import json

        return CompressResult(out_dir, json.loads((out_dir / "metrics.json").read_text()), None, skipped=True)
    fp, payload = load_detector(source)
    if info.enabled and not info.is_main:
        torch.distributed.barrier()  # rank 0 generates / reads the data first
    splits = prepare_data(cfg)
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    shape = (1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size)
    from ghostq.compress.fold_bn import fold_bn

    hq = choose_bits(fold_bn(copy.deepcopy(fp).eval()), ccfg, shape)
    student = build_student(fp, ccfg, hq["bits"], shape)
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
        fp_m = evaluate_detector(fp.to(device), val_loader, splits.val_coco(), cfg.eval, device)
        metrics["fp"] = {"mAP50": fp_m["mAP50"], "mAP50_95": fp_m["mAP50_95"]}
    if ccfg.method == "ptq":
        if info.is_main:
            m = evaluate_detector(student.to(device), val_loader, splits.val_coco(), cfg.eval, device)
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
        return CompressResult(out_dir, metrics, model)
    model = model.cpu()
    q_cost, fp_cost = model_cost(model, shape), model_cost(fp.cpu(), shape)
    metrics["cost"] = {"fp32": fp_cost.totals(), "quantized": q_cost.totals()}
    metrics.update(size_mb=q_cost.size_mb, bops_g=q_cost.bops_g, avg_weight_bits=q_cost.avg_weight_bits)
    with run.stage("compress", digest, [source]) as stage:
        stage.add_artifact(save_checkpoint(out_dir / "best.pt", {
            "config": cfg.model_dump(mode="json"), "compress": ccfg.model_dump(mode="json"),
            "classes": list(payload["classes"]), "model": model.state_dict(), "bits": hq["bits"],
            "act_bits": ccfg.act_bits, "act_calib": ccfg.ptq.calib, "metrics": {
                k: v for k, v in metrics.items() if k != "history"}}))
        stage.add_artifact(atomic_write_json(out_dir / "bits.json", hq["json"]))
        stage.add_artifact(atomic_write_json(out_dir / "metrics.json", metrics))
        stage.add_artifact(plot_bits(hq["json"], out_dir / "bits.png"))
    metrics["table"] = {"fp32": fp_cost.table(), "quantized": q_cost.table()}
    return CompressResult(out_dir, metrics, model)
