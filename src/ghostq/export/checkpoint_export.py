"""Export a checkpoint alone (no config, no run folder): ``ghostq export --model PATH.pt --out DIR``.

Everything the files need comes from the checkpoint's model spec (classes, input, head, LogitClip, decode), the
export settings are ``ExportConfig``'s (defaults unless given). A full-precision checkpoint gives
``model_fp32.onnx`` (+ ``model_fp16.onnx``) and, with calibration images (``calib``: a folder), the INT8 files
from a min-max PTQ; without them INT8 is declined with a one-line message naming the option. A compressed
checkpoint (``ghost/best.pt``) gives its INT8 files from its own integer weights and scales; its CPU form
quantizes the prediction convs too (``export.int8.cpu_prediction_convs``) when calibration images are given,
and keeps them as the checkpoint has them otherwise (one line says so). NMS variants follow
``ExportConfig.nms``. No verify.json: that needs labelled data (the export stage writes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ghostq.core.atomic import atomic_write_bytes
from ghostq.core.export_config import ExportConfig
from ghostq.core.spec import ModelSpec

CALIB_OPTION = "--calib IMAGES_DIR"


@dataclass
class CheckpointExport:
    """The files written (kind -> path) and one-line messages for the user."""

    files: dict[str, Path] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def export_checkpoint(
    source: str | Path, out_dir: str | Path, ecfg: ExportConfig | None = None, calib: str | Path | None = None
) -> CheckpointExport:
    """Write the ONNX files of checkpoint `source` into `out_dir` (see the module docstring)."""
    import onnx

    from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint
    from ghostq.export.cpu_quant import prediction_convs_tag
    from ghostq.export.nms_graph import add_efficient_nms_trt, add_onnx_nms
    from ghostq.export.onnx_export import export_onnx, set_metadata
    from ghostq.export.qdq_export import write_qdq

    ecfg = ecfg or ExportConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = CheckpointExport()
    payload = load_checkpoint(source)
    spec = checkpoint_spec(payload)
    kw = dict(spec=spec, opset=ecfg.opset, ood=ecfg.ood)
    protos: dict[str, onnx.ModelProto] = {}
    quant = None
    batches: list[np.ndarray] | None = None
    if "bits" in payload:
        from ghostq.compress.pipeline import load_quantized
        from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized

        model, _ = load_quantized(source)
        base = export_onnx(dequantized_copy(model), None, **kw)
        quant, int8_source = spec_from_quantized(model), "ghost"
    else:
        from ghostq.detect.checkpoint import load_detector

        model, _ = load_detector(source)
        protos["fp32"] = base = export_onnx(model, None, **kw)
        if ecfg.fp16:
            protos["fp16"] = export_onnx(model, None, half=True, **kw)
        int8_source = "ptq"
        if ecfg.int8.enabled and calib is None:
            result.messages.append(f"INT8 not written: a full-precision checkpoint needs calibration images "
                                   f"({CALIB_OPTION})")
        elif ecfg.int8.enabled:
            from ghostq.export.qdq_export import ptq_minmax

            skip = [] if ecfg.int8.quantize_prediction_convs else list(model.prediction_layer_names())
            batches = calibration_batches(Path(calib), spec, ecfg)
            quant = ptq_minmax(base, batches, skip=skip)
    if quant is not None and ecfg.int8.enabled:
        specs = {"trt": quant, "cpu": quant}
        if ecfg.int8.cpu and ecfg.int8.cpu_prediction_convs != "fp" and calib is None:
            result.messages.append(f"model_int8_cpu.onnx keeps the prediction convs as the checkpoint has them: "
                                   f"calibrating them needs images ({CALIB_OPTION})")
        elif ecfg.int8.cpu and ecfg.int8.cpu_prediction_convs != "fp":
            from ghostq.export.cpu_quant import with_quantized_convs

            i8 = ecfg.int8
            batches = batches or calibration_batches(Path(calib), spec, ecfg)
            specs["cpu"] = with_quantized_convs(base, quant, model.prediction_layer_names(), batches,
                                                i8.prediction_calib, i8.prediction_percentile,
                                                output=i8.cpu_prediction_convs == "int8_output")
        for form, name in (("trt", "int8"), ("cpu", "int8_cpu")):
            if form == "trt" or ecfg.int8.cpu:
                q = write_qdq(base, specs[form], form, share_scales=ecfg.int8.share_scales)
                tag = prediction_convs_tag(specs[form], model.prediction_layer_names())
                set_metadata(q, {"ghostq.precision": name, "ghostq.int8_source": int8_source,
                                 "ghostq.prediction_convs": tag})
                protos[name] = q
    if ecfg.nms.kind != "none":
        n = ecfg.nms
        for name, proto in list(protos.items()):
            if ecfg.nms.kind == "onnx":
                protos[f"{name}_nms"] = add_onnx_nms(proto, n.score_threshold, n.iou_threshold, n.max_per_class)
            elif name != "int8_cpu":  # the plugin runs in TensorRT only; the CPU form is for ONNX Runtime
                protos[f"{name}_trtnms"] = add_efficient_nms_trt(proto, n.score_threshold, n.iou_threshold, n.max_det)
    for name, proto in protos.items():
        onnx.checker.check_model(proto)
        result.files[name] = atomic_write_bytes(out / f"model_{name}.onnx", proto.SerializeToString())
    return result


def calibration_batches(folder: Path, spec: ModelSpec, ecfg: ExportConfig) -> list[np.ndarray]:
    """Letterboxed images of `folder` as [B, C, S, S] float32 in [0, 1] (the first calib_batches x batch_size)."""
    from ghostq.core.letterbox import Sample, letterbox
    from ghostq.core.tiling import list_images, load_input_image

    size, n = ecfg.int8.calib_batch_size, ecfg.int8.calib_batches * ecfg.int8.calib_batch_size
    images = [
        letterbox(Sample(load_input_image(p, spec.in_channels)), spec.img_size)[0].image
        for p in list_images([folder])[:n]
    ]
    arrays = [np.stack(images[i : i + size]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
              for i in range(0, len(images), size)]
    return arrays
