"""FP32 and FP16 ONNX of a detector: TorchScript-based exporter (dynamo=False), opset 17, dynamic batch.

The output contract (also written into the file: graph output doc strings and ``metadata_props``):

Every file carries the model spec (``ghostq.core.spec.ModelSpec.to_metadata()``, key ``ghostq.spec``): classes,
input, head, strides, LogitClip and decode settings, so a runtime needs nothing else; the older ``ghostq.*`` keys
(head, num_classes, classes, strides, input_size, logit_clip, precision, ood, nms) stay beside it.

Input ``images`` [B, C_in, H, W] float32, RGB(+IR) scaled to [0, 1], letterboxed to the exported H x W
(anchor points are constants of that size: any batch, one input size).

Without NMS (``nms=None``):
- ``scores`` [B, N, C] float32: class probabilities after the head's LogitClip (when trained with it) and its
  activation (sigmoid; softmax over C + 1 with the background column dropped);
- ``boxes`` [B, N, 4] float32: xyxy in input pixels, N = sum over strides of (H / s) * (W / s);
- ``ood`` [B, N] float32 (only with ``ood="msp"|"energy"``): out-of-distribution score per anchor, from the raw
  logits (higher = less like a known class).

With ``nms="onnx"`` (ONNX NonMaxSuppression + in-graph gather; any ONNX runtime, TensorRT 10 NMS layer):
- ``det_batch`` [M] int64 (image index), ``det_boxes`` [M, 4] float32 xyxy input pixels, ``det_scores`` [M],
  ``det_labels`` [M] int64 (0-based class), and ``det_ood`` [M] with ``ood``: every kept detection of the batch,
  M data-dependent.

With ``nms="trt"`` (EfficientNMS_TRT plugin; TensorRT only):
- ``num_detections`` [B, 1] int32, ``detection_boxes`` [B, K, 4], ``detection_scores`` [B, K],
  ``detection_classes`` [B, K] int32 (K = max_det, padded past num_detections); no OOD score (the plugin
  returns no anchor indices to gather it with).

Boxes are in the letterboxed input's pixels: undo the letterbox (``ghostq.detect.postprocess.
scale_boxes_to_original``) to get original-image pixels.
"""

from __future__ import annotations

import copy
import io
import json
import math
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ghostq.core.atomic import atomic_write_bytes
from ghostq.core.spec import LogitClipSpec, ModelSpec
from ghostq.detect.losses.robust import LogitClip
from ghostq.detect.models.inference_head import InferenceHead, logit_clip_of

OUTPUT_DOCS = {
    "scores": "[B, N, C] class probabilities after LogitClip and sigmoid/softmax (background dropped)",
    "logits": "[B, N, K] head logits after LogitClip (K = C, or C + 1 with background last)",
    "boxes": "[B, N, 4] xyxy in input pixels",
    "ood": "[B, N] out-of-distribution score per anchor from the raw logits (higher = less like a known class)",
}


def export_onnx(
    model: nn.Module,
    path: str | Path | None,
    img_size: int | tuple[int, int] | None = None,
    in_channels: int | None = None,
    clip: LogitClip | None = None,
    half: bool = False,
    opset: int = 17,
    activation: bool = True,
    nms: str | None = None,
    nms_options: dict | None = None,
    metadata: dict[str, str] | None = None,
    ood: str | None = None,
    spec: ModelSpec | None = None,
) -> onnx.ModelProto:
    """Export ``model`` (a ghostq Detector) through its spec's inference head; write it to ``path`` (atomically).

    Args:
        model: the detector (left untouched: a copy is exported, in eval mode).
        path: output file, or None to only return the model.
        img_size: input side (or (height, width)) the graph is traced at; default the spec's ``img_size``.
        in_channels: only without ``spec``: input channels of a bare model (default: the model's).
        clip: only without ``spec``: the LogitClip of a bare model (a spec carries its own).
        half: FP16 network with FP32 inputs and outputs.
        opset: ONNX opset (>= 17).
        activation: outputs ``scores`` (True) or the clipped ``logits`` (False; parity tests).
        nms: None, "onnx" (NonMaxSuppression) or "trt" (EfficientNMS_TRT); see the module docstring.
        nms_options: score_threshold, iou_threshold, max_per_class (onnx) / max_det (trt).
        metadata: extra ``metadata_props`` entries.
        ood: None, "msp" or "energy": add the ``ood`` output (see the module docstring).
        spec: the model spec (``ghostq.core.spec``), written into the file under ``ghostq.spec``; None: a spec
            of the bare model (classes named ``class0``, ...).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (per-channel Q/DQ needs 13, LayerNormalization 17), got {opset}")
    if spec is None:
        spec = bare_model_spec(model, img_size, in_channels, clip)
    elif clip is not None or in_channels not in (None, spec.in_channels):
        raise ValueError("give either spec or the bare model's clip / in_channels, not both")
    size = img_size if img_size is not None else spec.img_size
    h, w = (size, size) if isinstance(size, int) else size
    net = copy.deepcopy(model).float().eval()
    if half:
        net = net.half()
    wrapper = InferenceHead(net, spec, activation=activation, half=half, ood=ood).eval()
    first = "scores" if activation else "logits"
    names = [first, "boxes"] + (["ood"] if ood else [])
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about constant anchor points are intended
        torch.onnx.export(
            wrapper, (torch.zeros(1, spec.in_channels, h, w),), buf, opset_version=opset, dynamo=False,
            input_names=["images"], output_names=names,
            dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.graph.input[0].doc_string = f"[B, {spec.in_channels}, {h}, {w}] float32 in [0, 1], letterboxed"
    for out in proto.graph.output:
        out.doc_string = OUTPUT_DOCS.get(out.name, "")
    clip_now = logit_clip_of(spec)
    meta = {
        **spec.to_metadata(),
        "ghostq.head": spec.head,
        "ghostq.num_classes": str(spec.num_classes),
        "ghostq.classes": json.dumps(list(spec.classes)),
        "ghostq.strides": json.dumps(list(spec.strides)),
        "ghostq.input_size": json.dumps([h, w]),
        "ghostq.logit_clip": repr(clip_now) if clip_now is not None else "none",
        "ghostq.precision": "fp16" if half else "fp32",
        "ghostq.ood": ood or "none",
        **(metadata or {}),
    }
    if nms is not None:
        from ghostq.export.nms_graph import add_efficient_nms_trt, add_onnx_nms

        if not activation:
            raise ValueError("in-graph NMS needs the scores (activation=True)")
        if nms == "onnx":
            proto = add_onnx_nms(proto, **(nms_options or {}))
        elif nms == "trt":
            proto = add_efficient_nms_trt(proto, **(nms_options or {}))
        else:
            raise ValueError(f"nms must be None, 'onnx' or 'trt', got {nms!r}")
        meta["ghostq.nms"] = json.dumps({"kind": nms, **(nms_options or {})})
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)  # the plugin node lives in its own domain ("TRT"), which it skips
    if path is not None:
        atomic_write_bytes(path, proto.SerializeToString())
    return proto


def bare_model_spec(
    model: nn.Module, img_size: int | tuple[int, int] | None, in_channels: int | None, clip: LogitClip | None
) -> ModelSpec:
    """A spec for a detector that came without one (graph-level tests and tools): generic class names."""
    if img_size is None:
        raise ValueError("export_onnx needs img_size or a spec")
    side = img_size if isinstance(img_size, int) else max(img_size)
    stride = max(model.strides)
    return ModelSpec(
        classes=tuple(f"class{i}" for i in range(model.num_classes)),
        img_size=math.ceil(side / stride) * stride,
        in_channels=in_channels or model.in_channels,
        strides=tuple(model.strides),
        head=model.head_type,
        logit_clip=None if clip is None else LogitClipSpec(clip.bound, clip.p, clip.mode),
    )


def set_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set (or replace) ``metadata_props`` entries."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in entries.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            proto.metadata_props.add(key=key, value=str(value))


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    """``metadata_props`` as a dict."""
    return {p.key: p.value for p in proto.metadata_props}
