"""In-graph NMS: ONNX NonMaxSuppression + gather (run in ONNX Runtime) and the EfficientNMS_TRT node (structure)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import SIZE, images, tiny_detector
from onnx import TensorProto, helper

from ghostq.core.spec import DecodeSpec
from ghostq.detect.postprocess import decode_scores
from ghostq.export.nms_graph import EFFICIENT_NMS_OUTPUTS, add_efficient_nms_trt, add_onnx_nms
from ghostq.export.onnx_export import export_onnx
from ghostq.export.verify import ort_session


def _passthrough(num_classes: int = 3) -> onnx.ModelProto:
    """A graph whose outputs `scores` [B, N, C] and `boxes` [B, N, 4] are its inputs."""
    g = helper.make_graph(
        [helper.make_node("Identity", ["in_scores"], ["scores"], name="id_s"),
         helper.make_node("Identity", ["in_boxes"], ["boxes"], name="id_b")],
        "passthrough",
        [helper.make_tensor_value_info("in_scores", TensorProto.FLOAT, ["batch", "n", num_classes]),
         helper.make_tensor_value_info("in_boxes", TensorProto.FLOAT, ["batch", "n", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "n", num_classes]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "n", 4])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _random_dets(rng: np.random.Generator, b: int, n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    xy = rng.uniform(0, 50, (b, n, 2))
    wh = rng.uniform(4, 20, (b, n, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)  # many overlaps: NMS has work to do
    return rng.random((b, n, c), dtype=np.float32), boxes


def test_onnx_nms_matches_classwise_nms() -> None:
    model = add_onnx_nms(_passthrough(), score_threshold=0.3, iou_threshold=0.5, max_per_class=1000)
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["det_batch", "det_boxes", "det_scores", "det_labels"]
    scores, boxes = _random_dets(np.random.default_rng(0), 2, 200, 3)
    sess = ort_session(model)
    out = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {"in_scores": scores, "in_boxes": boxes}), strict=True))
    ref = decode_scores(torch.from_numpy(scores), torch.from_numpy(boxes), DecodeSpec(0.3, 0.5, max_det=10_000))
    for b in range(2):
        sel = out["det_batch"] == b
        got = sorted(zip(out["det_labels"][sel].tolist(), np.round(out["det_scores"][sel], 6).tolist(), strict=True))
        want = sorted(zip(ref[b].labels.tolist(), np.round(ref[b].scores.numpy(), 6).tolist(), strict=True))
        assert len(want) > 20 and got == want
        # boxes gathered in the graph are the input boxes of the kept (image, point) pairs
        for box in out["det_boxes"][sel]:
            assert np.isclose(boxes[b], box, atol=0).all(axis=1).any()


def test_onnx_nms_on_a_detector_keeps_the_cap_per_class() -> None:
    proto = export_onnx(tiny_detector(), None, SIZE, nms="onnx",
                        nms_options={"score_threshold": 0.0, "iou_threshold": 0.99, "max_per_class": 5})
    sess = ort_session(proto)
    batch, boxes, scores, labels = sess.run(None, {"images": images(2)})
    assert boxes.shape[1] == 4 and batch.dtype == np.int64 and labels.dtype == np.int64
    for b in range(2):
        for c in range(3):
            assert ((batch == b) & (labels == c)).sum() == 5


def test_efficient_nms_trt_node() -> None:
    model = add_efficient_nms_trt(_passthrough(4), score_threshold=0.2, iou_threshold=0.45, max_det=50)
    onnx.checker.check_model(model)
    node = model.graph.node[-1]
    assert node.op_type == "EfficientNMS_TRT" and node.domain == "TRT"
    assert list(node.input) == ["boxes", "scores"]
    assert list(node.output) == list(EFFICIENT_NMS_OUTPUTS)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["background_class"] == -1 and attrs["box_coding"] == 0 and attrs["score_activation"] == 0
    assert attrs["max_output_boxes"] == 50 and attrs["plugin_version"] == b"1"
    assert attrs["iou_threshold"] == pytest.approx(0.45) and attrs["score_threshold"] == pytest.approx(0.2)
    outs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outs) == list(EFFICIENT_NMS_OUTPUTS)
    assert outs["num_detections"].elem_type == TensorProto.INT32
    assert outs["detection_classes"].elem_type == TensorProto.INT32
    assert [d.dim_param or d.dim_value for d in outs["detection_boxes"].shape.dim] == ["batch", 50, 4]
    assert any(o.domain == "TRT" for o in model.opset_import)
    with pytest.raises(Exception):  # noqa: B017 - TensorRT only: ONNX Runtime has no such op
        ort_session(model)


def test_nms_needs_scores_and_boxes() -> None:
    bad = _passthrough()
    bad.graph.output[0].name = "other"
    with pytest.raises(ValueError, match="needs outputs"):
        add_onnx_nms(bad)


@pytest.mark.parametrize("method", ["msp", "energy"])
def test_ood_output_and_its_gather(method: str) -> None:
    from ghostq.detect.ood import ood_score

    model = tiny_detector()
    x = images(2)
    raw = export_onnx(model, None, SIZE, ood=method)
    assert [o.name for o in raw.graph.output] == ["scores", "boxes", "ood"]
    _scores, _boxes, ood = ort_session(raw).run(None, {"images": x})
    with torch.no_grad():
        ref = ood_score(model(torch.from_numpy(x)).cls_logits, "sigmoid", method).numpy()
    assert ood.shape == (2, ref.shape[1]) and np.abs(ood - ref).max() < 1e-4
    nms = add_onnx_nms(raw, score_threshold=0.0, iou_threshold=0.99, max_per_class=4)
    sess = ort_session(nms)
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x}), strict=True))
    assert list(out) == ["det_batch", "det_boxes", "det_scores", "det_labels", "det_ood"]
    for b, box, o in zip(out["det_batch"], out["det_boxes"], out["det_ood"], strict=True):
        idx = np.flatnonzero(np.isclose(_boxes[b], box, atol=0).all(axis=1))
        assert np.isclose(ood[b, idx], o).any()  # the OOD score of the kept anchor
    trt = add_efficient_nms_trt(raw)
    assert "ood" not in [o.name for o in trt.graph.output]
