"""Tiny ONNX models for tests/deploy, built with the onnx helper API, following the export contract.

``blob_model``: one anchor, one class: the box of the pixels whose channel mean is > 0.9 (as the torch stand-in
of tests/detect/test_predict.py), score sigmoid(4) = 0.982 when there are any, ~0 otherwise.
``nms_model``: in-graph-NMS outputs (num_detections, detection_boxes, detection_scores, detection_classes),
constant rows broadcast over the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _save(graph: onnx.GraphProto, path: Path, meta: dict[str, str] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ghostq-tests")
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def blob_meta(size: int, channels: int = 3, classes: tuple[str, ...] = ("car",)) -> dict[str, str]:
    return {
        "ghostq.classes": json.dumps(list(classes)),
        "ghostq.img_size": str(size),
        "ghostq.in_channels": str(channels),
        "ghostq.head": "sigmoid",
        "ghostq.nms": "none",
    }


def make_blob_model(
    path: Path,
    size: int | str = 64,
    channels: int = 3,
    batch: int | str = "B",
    meta: dict[str, str] | None = None,
    in_type: int = TensorProto.FLOAT,
    scores_shape: tuple[int, ...] = (-1, 1, 1),
    scores_name: str = "scores",
) -> Path:
    """images [batch, channels, size, size] -> scores [batch, 1, 1], boxes [batch, 1, 4] (input pixels).
    A symbolic ``size`` (a dim name) draws on a 64-px grid; ``in_type`` / ``scores_shape`` / ``scores_name``
    plant contract violations for the robustness tests."""
    grid = size if isinstance(size, int) else 64
    xs = np.arange(grid, dtype=np.float32).reshape(1, 1, grid)
    ys = np.arange(grid, dtype=np.float32).reshape(1, grid, 1)
    nodes = [
        _const("xs", xs), _const("ys", ys), _const("xs1", xs + 1), _const("ys1", ys + 1),
        _const("thr", np.float32(0.9)), _const("one", np.float32(1.0)), _const("big", np.float32(1e6)),
        _const("gain", np.float32(24.0)), _const("bias", np.float32(20.0)),
        _const("ax1", np.array([1], np.int64)), _const("shape_b", np.array([-1, 1, 4], np.int64)),
        _const("shape_s", np.array(scores_shape, np.int64)),
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["gray"], axes=[1], keepdims=0),
        helper.make_node("Greater", ["gray", "thr"], ["gt"]),
        helper.make_node("Cast", ["gt"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask"], ["inv0"]),
        helper.make_node("Mul", ["inv0", "big"], ["inv"]),
        helper.make_node("Add", ["xs", "inv"], ["xs_in"]),
        helper.make_node("Add", ["ys", "inv"], ["ys_in"]),
        helper.make_node("Mul", ["xs1", "mask"], ["xs_out"]),
        helper.make_node("Mul", ["ys1", "mask"], ["ys_out"]),
        helper.make_node("ReduceMin", ["xs_in"], ["x1"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMin", ["ys_in"], ["y1"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMax", ["xs_out"], ["x2"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMax", ["ys_out"], ["y2"], axes=[1, 2], keepdims=0),
        *[helper.make_node("Unsqueeze", [n, "ax1"], [n + "u"]) for n in ("x1", "y1", "x2", "y2")],
        helper.make_node("Concat", ["x1u", "y1u", "x2u", "y2u"], ["b4"], axis=1),
        helper.make_node("Reshape", ["b4", "shape_b"], ["boxes"]),
        helper.make_node("ReduceMax", ["mask"], ["any"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["any", "gain"], ["z0"]),
        helper.make_node("Sub", ["z0", "bias"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["s"]),
        helper.make_node("Reshape", ["s", "shape_s"], [scores_name]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "blob",
        [helper.make_tensor_value_info("images", in_type, [batch, channels, size, size])],
        [
            helper.make_tensor_value_info(scores_name, TensorProto.FLOAT, [batch, *scores_shape[1:]]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, 1, 4]),
        ],
    )
    return _save(graph, path, meta if meta is not None else blob_meta(grid, channels))


NMS_BOXES = np.array([[10, 10, 20, 20], [30, 30, 50, 40], [0, 0, 5, 5], [0, 0, 0, 0]], np.float32)
NMS_SCORES = np.array([0.9, 0.5, 0.01, 0.0], np.float32)
NMS_CLASSES = np.array([1, 0, 0, 0], np.int32)
NMS_NUM = 3  # the last row is padding


def make_nms_model(path: Path, size: int = 32) -> Path:
    """images [B, 3, size, size] -> the EfficientNMS_TRT outputs, the same rows for every image."""
    k = len(NMS_BOXES)
    nodes = [
        _const("nb", NMS_BOXES[None]), _const("ns", NMS_SCORES[None]), _const("nc", NMS_CLASSES[None]),
        _const("nn", np.array([[NMS_NUM]], np.int32)),
        _const("zero", np.array([0], np.int64)), _const("onei", np.array([1], np.int64)),
        _const("k4", np.array([k, 4], np.int64)), _const("k", np.array([k], np.int64)),
        helper.make_node("Shape", ["images"], ["shp"]),
        helper.make_node("Slice", ["shp", "zero", "onei"], ["b"]),
        helper.make_node("Concat", ["b", "k4"], ["sb"], axis=0),
        helper.make_node("Concat", ["b", "k"], ["sk"], axis=0),
        helper.make_node("Concat", ["b", "onei"], ["s1"], axis=0),
        helper.make_node("Expand", ["nb", "sb"], ["detection_boxes"]),
        helper.make_node("Expand", ["ns", "sk"], ["detection_scores"]),
        helper.make_node("Expand", ["nc", "sk"], ["detection_classes"]),
        helper.make_node("Expand", ["nn", "s1"], ["num_detections"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "nms",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, size, size])],
        [
            helper.make_tensor_value_info("num_detections", TensorProto.INT32, ["B", 1]),
            helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, ["B", k, 4]),
            helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["B", k]),
            helper.make_tensor_value_info("detection_classes", TensorProto.INT32, ["B", k]),
        ],
    )
    meta = {**blob_meta(size, 3, ("car", "truck")), "ghostq.nms": "trt"}
    return _save(graph, path, meta)


def scene(width: int, height: int, box: tuple[int, int, int, int], channels: int = 3) -> np.ndarray:
    """Dark image with one bright rectangle."""
    image = np.full((height, width, channels), 40, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image
