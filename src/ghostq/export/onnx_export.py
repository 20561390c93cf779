"""FP32 and FP16 ONNX of a detector: TorchScript-based exporter (dynamo=False), opset 17, dynamic batch.

The output contract (also written into the file: graph output doc strings and ``metadata_props``):

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
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ghostq.core.atomic import atomic_write_bytes
from ghostq.detect.losses.robust import LogitClip
from ghostq.export.fused_head import FusedHeadExport

OUTPUT_DOCS = {
    "scores": "[B, N, C] class probabilities after LogitClip and sigmoid/softmax (background dropped)",
    "logits": "[B, N, K] head logits after LogitClip (K = C, or C + 1 with background last)",
    "boxes": "[B, N, 4] xyxy in input pixels",
    "ood": "[B, N] out-of-distribution score per anchor from the raw logits (higher = less like a known class)",
}


def export_onnx(
    model: nn.Module,
    path: str | Path | None,
    img_size: int | tuple[int, int],
    in_channels: int = 3,
    clip: LogitClip | None = None,
    half: bool = False,
    opset: int = 17,
    activation: bool = True,
    nms: str | None = None,
    nms_options: dict | None = None,
    metadata: dict[str, str] | None = None,
    ood: str | None = None,
) -> onnx.ModelProto:
    """Export ``model`` (a ghostq Detector) with its fused head; write it to ``path`` (atomically) when given.

    Args:
        model: the detector (left untouched: a copy is exported, in eval mode).
        path: output file, or None to only return the model.
        img_size: input side (or (height, width)) the graph is traced at.
        in_channels: input channels (3 RGB, 4 RGB + IR).
        clip: the LogitClip to fuse (``logit_clip_from_config``), None when trained without.
        half: FP16 network with FP32 inputs and outputs.
        opset: ONNX opset (>= 17).
        activation: outputs ``scores`` (True) or the clipped ``logits`` (False; parity tests).
        nms: None, "onnx" (NonMaxSuppression) or "trt" (EfficientNMS_TRT); see the module docstring.
        nms_options: score_threshold, iou_threshold, max_per_class (onnx) / max_det (trt).
        metadata: extra ``metadata_props`` entries (e.g. class names).
        ood: None, "msp" or "energy": add the ``ood`` output (see the module docstring).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (per-channel Q/DQ needs 13, LayerNormalization 17), got {opset}")
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    net = copy.deepcopy(model).float().eval()
    if half:
        net = net.half()
    wrapper = FusedHeadExport(net, clip=clip, activation=activation, half=half, ood=ood).eval()
    first = "scores" if activation else "logits"
    names = [first, "boxes"] + (["ood"] if ood else [])
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about constant anchor points are intended
        torch.onnx.export(
            wrapper, (torch.zeros(1, in_channels, h, w),), buf, opset_version=opset, dynamo=False,
            input_names=["images"], output_names=names,
            dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.graph.input[0].doc_string = f"[B, {in_channels}, {h}, {w}] float32 in [0, 1], letterboxed"
    for out in proto.graph.output:
        out.doc_string = OUTPUT_DOCS.get(out.name, "")
    meta = {
        "ghostq.head": getattr(model, "head_type", "sigmoid"),
        "ghostq.num_classes": str(getattr(model, "num_classes", "")),
        "ghostq.strides": json.dumps(list(getattr(model, "strides", ()))),
        "ghostq.input_size": json.dumps([h, w]),
        "ghostq.logit_clip": repr(clip) if clip is not None else "none",
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
