"""`ghostq export`: checkpoint -> runs/<name>/export/ (ONNX files, verify.json, trtexec.sh, engines).

Writes, through the run folder's ``export`` stage (skipped when its config and inputs are unchanged):
- ``model_fp32.onnx``, ``model_fp16.onnx`` (raw head outputs ``scores``, ``boxes``; see ``onnx_export``);
- ``model_int8.onnx`` (TensorRT Q/DQ) and ``model_int8_cpu.onnx`` (UINT8 activations for ONNX Runtime), from
  the compressed checkpoint ``ghost/best.pt`` when there is one (``export.int8.source: auto | ghost``), else
  from a min-max PTQ of the FP32 graph on a few training batches (``ptq``); ``int8_scales.json`` says which;
- with NMS (``export.nms.kind`` or ``--nms``): ``model_<kind>_nms.onnx`` (ONNX NonMaxSuppression) or
  ``model_<kind>_trtnms.onnx`` (EfficientNMS_TRT) beside each of them;
- ``verify.json`` (``verify.verify_files``), ``trtexec.sh``; TensorRT engines (``*.plan`` + build logs,
  ``timing.cache``) when ``export.tensorrt.enabled`` and TensorRT imports.

The stage is one unit: its files are built in a hidden folder beside ``export/`` that replaces it whole once
every file is written and verified, with the run folder locked throughout. A killed export leaves the previous
``export/`` as it was (and its manifest entry not ``done``, so the next run redoes it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_bytes, atomic_write_json
from ghostq.core.config import Config, config_hash
from ghostq.core.errors import GhostqError
from ghostq.core.export_config import ExportConfig

SECTIONS = ["run", "data", "model", "loss", "eval"]


@dataclass
class ExportResult:
    """Where the stage left its files, its verify numbers and one-line messages for the user."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    verify: dict[str, Any] | None = None
    messages: list[str] = field(default_factory=list)
    skipped: bool = False


def export_config_of(cfg: Config, ecfg: ExportConfig | None = None) -> ExportConfig:
    """The export section: given, or ``cfg.export`` once the top-level Config carries it, else defaults."""
    return ecfg or getattr(cfg, "export", None) or ExportConfig()


def run_export(
    cfg: Config, ecfg: ExportConfig | None = None, *, nms: str | None = None, force: bool = False
) -> ExportResult:
    """Run the export stage of ``cfg``; ``nms`` ("onnx" / "trt") overrides ``export.nms.kind``."""
    from ghostq.core.runs import RunDir

    with RunDir(cfg.run_dir).lock("ghostq export"):
        return _run_export(cfg, export_config_of(cfg, ecfg), nms, force)


def _run_export(cfg: Config, ecfg: ExportConfig, nms: str | None, force: bool) -> ExportResult:
    from ghostq.core.runs import RunDir

    if nms is not None:
        ecfg = ecfg.model_copy(update={"nms": ecfg.nms.model_copy(update={"kind": nms})})
    run = RunDir(cfg.run_dir)
    out = run / "export"
    source = ecfg.source or run / "fp" / "best.pt"
    if not Path(source).is_file():
        raise GhostqError(f"{source}: checkpoint not found (train first: ghostq train CONFIG)")
    ghost = run / "ghost" / "best.pt"
    int8_source = ecfg.int8.source
    if int8_source == "ghost" and not ghost.is_file():
        raise GhostqError(f"{ghost}: compressed checkpoint not found (export.int8.source=ghost; run ghostq compress)")
    if int8_source == "auto":
        int8_source = "ghost" if ghost.is_file() else "ptq"
    compressed = run.manifest()["stages"].get("compress")
    if ecfg.int8.enabled and int8_source == "ghost" and compressed and compressed.get("status") != "done":
        why = compressed.get("stale_because") or compressed.get("error") or ""
        raise GhostqError(f"{ghost}: the compress stage that wrote it is {compressed.get('status')}"
                          f"{f' ({why})' if why else ''}; run ghostq compress first, or set export.int8.source=ptq")
    inputs = [Path(source)] + ([ghost] if ecfg.int8.enabled and int8_source == "ghost" else [])
    ecfg_json = json.dumps(ecfg.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256((config_hash(cfg, SECTIONS) + ecfg_json).encode()).hexdigest()
    result = ExportResult(out)
    if not force and run.is_current("export", digest, inputs):
        result.skipped = True
        verify_path = out / "verify.json"
        if verify_path.is_file():
            result.verify = json.loads(verify_path.read_text(encoding="utf-8"))
        return result
    with run.stage("export", digest, inputs) as record:
        with run.staged_folder("export") as staging:
            old_cache = out / "timing.cache"
            if old_cache.is_file():  # engines build faster from the previous timing cache
                shutil.copy2(old_cache, staging / "timing.cache")
            result.out_dir = staging
            _export(cfg, ecfg, Path(source), ghost, int8_source, result)
        result.out_dir = out
        result.files = {k: out / p.relative_to(staging) if p.is_relative_to(staging) else p
                        for k, p in result.files.items()}
        for p in result.files.values():
            record.add_artifact(p)
    return result


def _export(cfg: Config, ecfg: ExportConfig, source: Path, ghost: Path, int8_source: str,
            result: ExportResult) -> None:
    import onnx

    from ghostq.detect.checkpoint import load_detector
    from ghostq.detect.losses.robust import logit_clip_from_config
    from ghostq.export.nms_graph import add_efficient_nms_trt, add_onnx_nms
    from ghostq.export.onnx_export import export_onnx, set_metadata
    from ghostq.export.qdq_export import write_qdq
    from ghostq.export.verify import FileCheck, PostprocessOptions, torch_reference, verify_files

    out = result.out_dir
    model, payload = load_detector(source)
    classes = list(payload["classes"])
    clip = logit_clip_from_config(Config.model_validate(payload["config"]), model.head_type)
    size, channels = cfg.data.img_size, cfg.data.in_channels
    meta = {"ghostq.classes": json.dumps(classes)}
    kw = dict(img_size=size, in_channels=channels, clip=clip, opset=ecfg.opset, metadata=meta, ood=ecfg.ood)
    protos: dict[str, onnx.ModelProto] = {}
    protos["fp32"] = export_onnx(model, out / "model_fp32.onnx", **kw)
    result.files["fp32"] = out / "model_fp32.onnx"
    if ecfg.fp16:
        protos["fp16"] = export_onnx(model, out / "model_fp16.onnx", half=True, **kw)
        result.files["fp16"] = out / "model_fp16.onnx"
    int8_reference = None
    splits = None
    if ecfg.int8.enabled:
        from ghostq.detect.data.prepare import prepare_data

        if int8_source == "ghost":
            from ghostq.compress.pipeline import load_quantized
            from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized

            qmodel, _ = load_quantized(ghost)
            base = export_onnx(dequantized_copy(qmodel), None, **kw)
            spec = spec_from_quantized(qmodel)
            int8_reference = ("quantized torch (ghost/best.pt)", torch_reference(qmodel, clip))
        else:
            from ghostq.export.qdq_export import ptq_minmax

            splits = prepare_data(cfg)
            base = protos["fp32"]
            skip = [] if ecfg.int8.quantize_prediction_convs else list(model.prediction_layer_names())
            spec = ptq_minmax(base, _calib_batches(cfg, ecfg, splits.train), skip=skip)
        for form, name in (("trt", "int8"), ("cpu", "int8_cpu")):
            if form == "cpu" and not ecfg.int8.cpu:
                continue
            q = write_qdq(base, spec, form, share_scales=ecfg.int8.share_scales)
            set_metadata(q, {"ghostq.precision": name, "ghostq.int8_source": int8_source})
            atomic_write_bytes(out / f"model_{name}.onnx", q.SerializeToString())
            protos[name] = q
            result.files[name] = out / f"model_{name}.onnx"
        atomic_write_json(out / "int8_scales.json", {
            "source": int8_source,
            "convs": {n: {"weight_bits": q.weight_bits, "input_scale": q.input_scale,
                          "weight_scale_range": [float(q.weight_scale.min()), float(q.weight_scale.max())]}
                      for n, q in spec.items()},
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
        from ghostq.detect.data.prepare import prepare_data
        from ghostq.detect.inference import make_eval_loader

        splits = splits or prepare_data(cfg)
        loader = make_eval_loader(splits.val, size, channels, batch_size=8, workers=cfg.data.workers)
        n = ecfg.nms  # the torch side of an NMS file uses the file's own thresholds
        nms_opts = PostprocessOptions(n.score_threshold, n.iou_threshold, n.max_per_class * len(classes))
        checks = []
        for key, path in result.files.items():
            if path.suffix != ".onnx":
                continue
            ref = int8_reference if key.startswith("int8") and int8_reference else None
            checks.append(FileCheck(path, reference=ref[1] if ref else None,
                                    reference_name=ref[0] if ref else "fp32 torch", lint=key in ("int8", "int8_nms"),
                                    opts=nms_opts if key.endswith("_nms") else None))
        e = cfg.eval
        opts = PostprocessOptions(e.score_threshold, e.iou_threshold, e.max_det)
        files = verify_files(checks, torch_reference(model, clip), loader, splits.val_coco(), model.strides, opts,
                             max_images=ecfg.verify_images)
        doc = {"postprocess": opts.__dict__, "int8_source": int8_source if ecfg.int8.enabled else None,
               "logit_clip": repr(clip) if clip is not None else None, "files": files}
        if ecfg.int8.enabled and int8_source == "ptq":
            doc["note"] = ("INT8 from a min-max PTQ of the FP32 graph: its mAP50_torch is the FP32 torch model's "
                           "(no quantized torch model exists for it)")
        atomic_write_json(out / "verify.json", doc)
        result.files["verify"] = out / "verify.json"
        result.verify = doc


def _calib_batches(cfg: Config, ecfg: ExportConfig, records: list) -> list[np.ndarray]:
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
