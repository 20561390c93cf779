"""In-graph NMS appended to an exported detector whose outputs are ``scores`` [B, N, C] and ``boxes`` [B, N, 4].

Two forms (DESIGN §6):

- ``add_onnx_nms``: the standard ONNX ``NonMaxSuppression`` (class-wise, xyxy corners), then the gather in the
  graph: outputs ``det_batch`` [M] int64, ``det_boxes`` [M, 4], ``det_scores`` [M], ``det_labels`` [M] int64,
  M data-dependent (at most ``max_per_class`` per class and image); ``det_ood`` [M] too when the graph has an
  ``ood`` output. Ordered as NonMaxSuppression returns
  them (ONNX Runtime: by image, then class, then score). Portable: ONNX Runtime runs it, TensorRT 10 imports
  it as its NMS layer.
- ``add_efficient_nms_trt``: the ``EfficientNMS_TRT`` plugin node (TensorRT only; deprecated from 10.12, still
  in 11). Inputs boxes [B, N, 4] (box_coding 0 = corners x1 y1 x2 y2) and scores [B, N, C] (already
  activated: score_activation 0); background_class -1 (every column is a class). Outputs ``num_detections``
  [B, 1] int32, ``detection_boxes`` [B, K, 4] float32, ``detection_scores`` [B, K] float32,
  ``detection_classes`` [B, K] int32, K = ``max_det`` (rows past num_detections are padding).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ghostq.core.spec import DEPLOY_CONF, DEPLOY_MAX_DET, IOU

TRT_PLUGIN_DOMAIN = "TRT"  # the domain TensorRT's ONNX parser looks plugins up in (op name is what matters)
EFFICIENT_NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
ONNX_NMS_OUTPUTS = ("det_batch", "det_boxes", "det_scores", "det_labels")


def _take_outputs(model: onnx.ModelProto, scores: str, boxes: str, also: tuple[str, ...] = ()) -> None:
    names = [o.name for o in model.graph.output]
    if scores not in names or boxes not in names:
        raise ValueError(f"the graph needs outputs {scores!r} and {boxes!r} for NMS, it has {names}")
    keep = [o for o in model.graph.output if o.name not in (scores, boxes, *also)]
    del model.graph.output[:]
    model.graph.output.extend(keep)


def add_onnx_nms(
    model: onnx.ModelProto,
    score_threshold: float = DEPLOY_CONF,
    iou_threshold: float = IOU,
    max_per_class: int = DEPLOY_MAX_DET,
    scores: str = "scores",
    boxes: str = "boxes",
    **_: object,
) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are the NonMaxSuppression detections (see the module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    has_ood = "ood" in [o.name for o in m.graph.output]
    _take_outputs(m, scores, boxes, ("ood",))
    g = m.graph
    g.initializer.extend([
        numpy_helper.from_array(np.array([max_per_class], np.int64), "nms/max_per_class"),
        numpy_helper.from_array(np.array([iou_threshold], np.float32), "nms/iou_threshold"),
        numpy_helper.from_array(np.array([score_threshold], np.float32), "nms/score_threshold"),
        numpy_helper.from_array(np.array(0, np.int64), "nms/i0"),
        numpy_helper.from_array(np.array(1, np.int64), "nms/i1"),
        numpy_helper.from_array(np.array([0, 2], np.int64), "nms/i02"),
    ])
    g.node.extend([
        helper.make_node("Transpose", [scores], ["nms/scores_t"], perm=[0, 2, 1], name="nms/Transpose"),
        helper.make_node(
            "NonMaxSuppression",
            [boxes, "nms/scores_t", "nms/max_per_class", "nms/iou_threshold", "nms/score_threshold"],
            ["nms/selected"], center_point_box=0, name="nms/NonMaxSuppression",
        ),
        helper.make_node("Gather", ["nms/selected", "nms/i0"], ["det_batch"], axis=1, name="nms/GatherBatch"),
        helper.make_node("Gather", ["nms/selected", "nms/i1"], ["det_labels"], axis=1, name="nms/GatherLabel"),
        helper.make_node("Gather", ["nms/selected", "nms/i02"], ["nms/box_index"], axis=1, name="nms/GatherIdx"),
        helper.make_node("GatherND", [boxes, "nms/box_index"], ["det_boxes"], name="nms/GatherBoxes"),
        helper.make_node("GatherND", ["nms/scores_t", "nms/selected"], ["det_scores"], name="nms/GatherScores"),
    ])
    if has_ood:  # the OOD score of each kept detection's anchor
        g.node.append(helper.make_node("GatherND", ["ood", "nms/box_index"], ["det_ood"], name="nms/GatherOOD"))
    g.output.extend([
        helper.make_tensor_value_info("det_batch", TensorProto.INT64, ["num_dets"]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, ["num_dets", 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, ["num_dets"]),
        helper.make_tensor_value_info("det_labels", TensorProto.INT64, ["num_dets"]),
    ])
    if has_ood:
        g.output.append(helper.make_tensor_value_info("det_ood", TensorProto.FLOAT, ["num_dets"]))
    docs = {"det_batch": "[M] image index in the batch", "det_boxes": "[M, 4] xyxy input pixels",
            "det_scores": "[M] score", "det_labels": "[M] 0-based class id",
            "det_ood": "[M] out-of-distribution score (higher = less like a known class)"}
    for out in g.output:
        out.doc_string = docs.get(out.name, out.doc_string)
    return m


def add_efficient_nms_trt(
    model: onnx.ModelProto,
    score_threshold: float = DEPLOY_CONF,
    iou_threshold: float = IOU,
    max_det: int = DEPLOY_MAX_DET,
    scores: str = "scores",
    boxes: str = "boxes",
    **_: object,
) -> onnx.ModelProto:
    """A copy of ``model`` ending in an EfficientNMS_TRT node (TensorRT only; see the module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _take_outputs(m, scores, boxes, ("ood",))  # the plugin returns no indices to gather an OOD score
    g = m.graph
    g.node.append(
        helper.make_node(
            "EfficientNMS_TRT",
            [boxes, scores],
            list(EFFICIENT_NMS_OUTPUTS),
            name="nms/EfficientNMS_TRT",
            domain=TRT_PLUGIN_DOMAIN,
            plugin_version="1",
            background_class=-1,
            box_coding=0,
            class_agnostic=0,
            iou_threshold=float(iou_threshold),
            max_output_boxes=int(max_det),
            score_activation=0,
            score_threshold=float(score_threshold),
        )
    )
    g.output.extend([
        helper.make_tensor_value_info("num_detections", TensorProto.INT32, ["batch", 1]),
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, ["batch", max_det, 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["batch", max_det]),
        helper.make_tensor_value_info("detection_classes", TensorProto.INT32, ["batch", max_det]),
    ])
    if not any(op.domain == TRT_PLUGIN_DOMAIN for op in m.opset_import):
        m.opset_import.append(helper.make_opsetid(TRT_PLUGIN_DOMAIN, 1))
    return m
