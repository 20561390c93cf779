"""Export as a library: checkpoint -> a folder of ONNX files, verify.json, trtexec.sh, engines (``export_files``).

Writes (the export stage, ``ghostq.stages.export``, decides when, into runs/<name>/export/):
- ``model_fp32.onnx``, ``model_fp16.onnx`` (raw head outputs ``scores``, ``boxes``; see ``onnx_export``);
- ``model_int8.onnx`` (TensorRT Q/DQ) and ``model_int8_cpu.onnx`` (UINT8 activations for ONNX Runtime), from
  the compressed checkpoint ``ghost/best.pt`` when there is one (``export.int8.source: auto | ghost``), else
  from a min-max PTQ of the FP32 graph on a few training batches (``ptq``); ``int8_scales.json`` says which;
- with NMS (``export.nms.kind`` or ``--nms``): ``model_<kind>_nms.onnx`` (ONNX NonMaxSuppression) or
  ``model_<kind>_trtnms.onnx`` (EfficientNMS_TRT) beside each of them;
- ``verify.json`` (``verify.verify_files``), ``trtexec.sh``; TensorRT engines (``*.plan`` + build logs,
  ``timing.cache``) when ``export.tensorrt.enabled`` and TensorRT imports.

"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ghostq.core.atomic import atomic_write_bytes, atomic_write_json
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.export_config import ExportConfig

if TYPE_CHECKING:
    from ghostq.detect.data.prepare import DataSplits


@dataclass
class ExportResult:
    """Where the stage left its files, its verify numbers and one-line messages for the user."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    verify: dict[str, Any] | None = None
    messages: list[str] = field(default_factory=list)
    skipped: bool = False


def export_files(cfg: Config, ecfg: ExportConfig, source: Path, ghost: Path, int8_source: str,
                 result: ExportResult, data: Callable[[], DataSplits]) -> None:
    """Write the ONNX files (+ verify.json, trtexec.sh, engines) of checkpoint `source` into ``result.out_dir``;
    `data` gives the splits when PTQ calibration or verification needs them."""
    import onnx

    from ghostq.core.spec import DecodeSpec
    from ghostq.detect.checkpoint import checkpoint_spec, load_detector
    from ghostq.export.cpu_quant import prediction_convs_tag
    from ghostq.export.nms_graph import add_efficient_nms_trt, add_onnx_nms
    from ghostq.export.onnx_export import export_onnx, set_metadata
    from ghostq.export.qdq_export import write_qdq
    from ghostq.export.verify import FileCheck, torch_reference, verify_files

    out = result.out_dir
    model, payload = load_detector(source)
    model_spec = checkpoint_spec(payload)
    classes = list(model_spec.classes)
    size, channels = model_spec.img_size, model_spec.in_channels
    meta = {"ghostq.classes": json.dumps(classes)}
    kw = dict(spec=model_spec, opset=ecfg.opset, metadata=meta, ood=ecfg.ood)
    protos: dict[str, onnx.ModelProto] = {}
    protos["fp32"] = export_onnx(model, out / "model_fp32.onnx", **kw)
    result.files["fp32"] = out / "model_fp32.onnx"
    if ecfg.fp16:
        protos["fp16"] = export_onnx(model, out / "model_fp16.onnx", half=True, **kw)
        result.files["fp16"] = out / "model_fp16.onnx"
    int8_reference = None
    splits = None
    calib: list[np.ndarray] | None = None
    if ecfg.int8.enabled:
        if int8_source == "ghost":
            from ghostq.compress.pipeline import load_quantized
            from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized

            qmodel, _ = load_quantized(ghost)
            base = export_onnx(dequantized_copy(qmodel), None, **kw)
            spec = spec_from_quantized(qmodel)
            int8_reference = ("quantized torch (ghost/best.pt)", torch_reference(qmodel, model_spec))
        else:
            from ghostq.export.qdq_export import ptq_minmax

            splits = data()
            base = protos["fp32"]
            skip = [] if ecfg.int8.quantize_prediction_convs else list(model.prediction_layer_names())
            calib = train_calibration_batches(cfg, ecfg, splits.train)
            spec = ptq_minmax(base, calib, skip=skip)
        specs = {"trt": spec, "cpu": spec}
        if ecfg.int8.cpu and ecfg.int8.cpu_prediction_convs != "fp":
            from ghostq.export.cpu_quant import with_quantized_convs

            if calib is None:
                splits = splits or data()
                calib = train_calibration_batches(cfg, ecfg, splits.train)
            i8 = ecfg.int8
            specs["cpu"] = with_quantized_convs(base, spec, model.prediction_layer_names(), calib,
                                                i8.prediction_calib, i8.prediction_percentile,
                                                output=i8.cpu_prediction_convs == "int8_output")
        for form, name in (("trt", "int8"), ("cpu", "int8_cpu")):
            if form == "cpu" and not ecfg.int8.cpu:
                continue
            q = write_qdq(base, specs[form], form, share_scales=ecfg.int8.share_scales)
            tag = prediction_convs_tag(specs[form], model.prediction_layer_names())
            set_metadata(q, {"ghostq.precision": name, "ghostq.int8_source": int8_source,
                             "ghostq.prediction_convs": tag})
            atomic_write_bytes(out / f"model_{name}.onnx", q.SerializeToString())
            protos[name] = q
            result.files[name] = out / f"model_{name}.onnx"
        atomic_write_json(out / "int8_scales.json", {
            "source": int8_source,
            "convs": {n: {"weight_bits": q.weight_bits, "input_scale": q.input_scale,
                          "weight_scale_range": [float(q.weight_scale.min()), float(q.weight_scale.max())]}
                      for n, q in spec.items()},
            "cpu_prediction_convs": {
                n: {"input_scale": specs["cpu"][n].input_scale,
                    "output_range": list(specs["cpu"][n].output_range or []) or None}
                for n in model.prediction_layer_names() if n in specs["cpu"]},
        })
        result.files["int8_scales"] = out / "int8_scales.json"
    kind = ecfg.nms.kind
    if kind != "none":
        n = ecfg.nms
        for name, proto in list(protos.items()):
            if kind == "onnx":
                p = add_onnx_nms(proto, n.score_threshold, n.iou_threshold, n.max_per_class)
                key = f"{name}_nms"
            elif name == "int8_cpu":
                continue  # the plugin runs in TensorRT only; the CPU form is for ONNX Runtime
            else:
                p = add_efficient_nms_trt(proto, n.score_threshold, n.iou_threshold, n.max_det)
                key = f"{name}_trtnms"
            onnx.checker.check_model(p)
            atomic_write_bytes(out / f"model_{key}.onnx", p.SerializeToString())
            result.files[key] = out / f"model_{key}.onnx"
    _trt(ecfg, result, channels, size)
    if ecfg.verify:
        from ghostq.detect.inference import make_eval_loader

        splits = splits or data()
        loader = make_eval_loader(splits.val, size, channels, batch_size=8, workers=cfg.data.workers)
        n = ecfg.nms  # the torch side of an NMS file uses the file's own thresholds
        nms_opts = DecodeSpec(n.score_threshold, n.iou_threshold, n.max_per_class * len(classes))
        checks = []
        for key, path in result.files.items():
            if path.suffix != ".onnx":
                continue
            ref = int8_reference if key.startswith("int8") and int8_reference else None
            checks.append(FileCheck(path, reference=ref[1] if ref else None,
                                    reference_name=ref[0] if ref else "fp32 torch", lint=key in ("int8", "int8_nms"),
                                    opts=nms_opts if key.endswith("_nms") else None))
        e = cfg.eval
        opts = DecodeSpec(e.score_threshold, e.iou_threshold, e.max_det)
        files = verify_files(checks, torch_reference(model, model_spec), loader, splits.val_coco(), model.strides, opts,
                             max_images=ecfg.verify_images)
        doc = {"postprocess": opts.__dict__, "int8_source": int8_source if ecfg.int8.enabled else None,
               "logit_clip": repr(model_spec.logit_clip) if model_spec.logit_clip else None, "files": files}
        if ecfg.int8.enabled and int8_source == "ptq":
            doc["note"] = ("INT8 from a min-max PTQ of the FP32 graph: its mAP50_torch is the FP32 torch model's "
                           "(no quantized torch model exists for it)")
        atomic_write_json(out / "verify.json", doc)
        result.files["verify"] = out / "verify.json"
        result.verify = doc


def train_calibration_batches(cfg: Config, ecfg: ExportConfig, records: list) -> list[np.ndarray]:
    """Letterboxed, unaugmented training images for the PTQ ranges (the first batches in a seeded order)."""
    from ghostq.detect.inference import make_eval_loader

    n = ecfg.int8.calib_batches * ecfg.int8.calib_batch_size
    rng = np.random.default_rng(cfg.run.seed)
    picked = [records[i] for i in sorted(rng.permutation(len(records))[:n])]
    if not picked:
        raise GhostqError("PTQ calibration needs training images; the train split is empty")
    loader = make_eval_loader(picked, cfg.data.img_size, cfg.data.in_channels,
                              batch_size=ecfg.int8.calib_batch_size, workers=cfg.data.workers, cache_images=False)
    return [images.float().numpy() for images, _t, _m in loader]


def _trt(ecfg: ExportConfig, result: ExportResult, channels: int, size: int) -> None:
    """trtexec.sh always; engines when asked for and TensorRT imports (else the one-line hint)."""
    from ghostq.export.tensorrt_build import TensorRTUnavailable, build_engine, import_tensorrt
    from ghostq.export.trtexec import target_tensorrt_major, trtexec_command, write_trtexec_script

    t = ecfg.tensorrt
    major = target_tensorrt_major(ecfg.tensorrt_major)
    kinds = [k for k in ("fp32", "fp16", "int8") if k in result.files]
    if ecfg.nms.kind == "trt":
        kinds += [f"{k}_trtnms" for k in ("fp32", "fp16", "int8") if f"{k}_trtnms" in result.files]
    commands = []
    for k in kinds:
        precision = k.split("_")[0]
        commands.append(trtexec_command(
            result.files[k].name, f"model_{k}.plan", (channels, size, size), precision, t.typing,
            t.min_batch, t.opt_batch, t.max_batch, t.workspace_mb, "timing.cache", trtexec=ecfg.jetson_trtexec,
            tensorrt_major=major))
    result.files["trtexec"] = write_trtexec_script(result.out_dir / "trtexec.sh", commands, tensorrt_major=major)
    if not t.enabled:
        return
    try:
        import_tensorrt()
    except TensorRTUnavailable as err:
        result.messages.append(str(err))
        return
    cache = t.timing_cache or result.out_dir / "timing.cache"
    for k in kinds:
        built = build_engine(result.files[k], result.out_dir / f"model_{k}.plan", k.split("_")[0], t.typing,
                             t.workspace_mb, cache, t.min_batch, t.opt_batch, t.max_batch)
        result.files[f"{k}_plan"] = built.engine
        result.messages.append(f"built {built.engine.name} with TensorRT {built.tensorrt_version} "
                               f"({built.typing}ly typed, flags {built.flags or 'none'}, {built.seconds:.1f} s)")
