"""FP32 / FP16 ONNX of the fused head: parity with PyTorch, dynamic batch, the LogitClip inside the graph."""

from __future__ import annotations

import copy
import math

import numpy as np
import onnx
import pytest
import torch
from export_helpers import SIZE, images, tiny_detector

from ghostq.detect.losses.robust import LogitClip
from ghostq.detect.models.inference_head import InferenceHead
from ghostq.detect.postprocess import class_scores
from ghostq.export.onnx_export import bare_model_spec, export_onnx, read_metadata
from ghostq.export.verify import ort_session, point_strides

CASES = [("csp_n", "sigmoid", (8, 16, 32)), ("convnextv2_atto", "softmax", (4, 8, 16))]


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort_session(proto).run(None, {"images": x})


@pytest.mark.parametrize(("backbone", "head", "strides"), CASES)
def test_fp32_raw_outputs_match_torch(backbone: str, head: str, strides: tuple) -> None:
    model = tiny_detector(backbone, head, strides)
    proto = export_onnx(model, None, SIZE, activation=False)  # raw (unclipped: no LogitClip) logits
    assert proto.opset_import[0].version == 17
    assert [o.name for o in proto.graph.output] == ["logits", "boxes"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = images(3)  # traced at batch 1, run at 3
    logits, boxes = _run(proto, x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    assert float(ref.cls_logits.abs().max()) > 1.0  # a non-trivial comparison
    assert np.abs(logits - ref.cls_logits.numpy()).max() < 1e-4
    ps = point_strides(strides, (SIZE, SIZE))[None, :, None]
    assert (np.abs(boxes - ref.boxes.numpy()) / ps).max() < 1e-4  # per stride unit, as the model tests
    scores, _ = _run(export_onnx(model, None, SIZE), x)
    np.testing.assert_allclose(scores, class_scores(ref.cls_logits, head).numpy(), rtol=0, atol=1e-4)
    assert scores.shape[-1] == 3  # softmax: background dropped


@pytest.mark.parametrize(("head", "p", "mode"), [("sigmoid", math.inf, "continuous"), ("softmax", 2, "continuous"),
                                                  ("sigmoid", math.inf, "official")])
def test_logit_clip_is_in_the_graph(head: str, p: float, mode: str) -> None:
    model = tiny_detector("csp_n", head)
    bound = 2.0
    clip = LogitClip(bound, p=p, mode=mode)
    x = images(2)
    logits, _ = _run(export_onnx(model, None, SIZE, clip=clip, activation=False), x)
    with torch.no_grad():
        raw = model(torch.from_numpy(x)).cls_logits
    expected = clip(raw).numpy()
    assert np.abs(logits - expected).max() < 1e-4
    norm = np.abs(logits).max(-1) if p == math.inf else np.linalg.norm(logits, axis=-1)
    assert norm.max() <= bound + 1e-4  # bounded as trained
    assert float(raw.abs().max()) > bound  # and the clip really acted
    scores, _ = _run(export_onnx(model, None, SIZE, clip=clip), x)
    # the bounded scores are mapped onto [0, 1] in the graph, as in evaluation (`clipped_class_scores`)
    np.testing.assert_allclose(scores, class_scores(raw, head, clip).numpy(), atol=1e-5)
    assert scores.min() >= 0 and scores.max() <= 1 + 1e-6


@pytest.mark.parametrize(("backbone", "head", "strides"), CASES)
def test_fp16_within_1e2(backbone: str, head: str, strides: tuple) -> None:
    """FP16 tolerance, relative to each output's scale: scores (scale 1) within 1e-2 absolute; boxes in units
    of their stride (what the head predicts) within 1e-2 of the largest such value. FP16 keeps 11 significant
    bits, so its error grows with the magnitudes it carries; an absolute bound on pixels would only hold for
    small boxes. The FP16 graph adds no error beyond FP16 arithmetic: torch's own FP16 run of the same model
    is as far from FP32 (checked with a 3x margin: ORT rounds after the BN-folded convs, torch after each op)."""
    model = tiny_detector(backbone, head, strides)
    proto = export_onnx(model, None, SIZE, half=True)
    inits = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(inits) > 10  # weights stored in FP16
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    x = images(2)
    scores, boxes = _run(proto, x)
    with torch.no_grad():
        spec = bare_model_spec(model, SIZE, None, None)
        ref_scores, ref_boxes = InferenceHead(model, spec)(torch.from_numpy(x))
        t16_scores, t16_boxes = InferenceHead(copy.deepcopy(model).half(), spec, half=True)(torch.from_numpy(x))
    ps = point_strides(strides, (SIZE, SIZE))[None, :, None]
    d_scores = np.abs(scores - ref_scores.numpy()).max()
    d_boxes = (np.abs(boxes - ref_boxes.numpy()) / ps).max() / (np.abs(ref_boxes.numpy()) / ps).max()
    assert d_scores < 1e-2
    assert d_boxes < 1e-2
    t16_d_boxes = (np.abs(t16_boxes.numpy() - ref_boxes.numpy()) / ps).max() / (np.abs(ref_boxes.numpy()) / ps).max()
    assert d_scores <= 3 * float((t16_scores - ref_scores).abs().max()) + 1e-4
    assert d_boxes <= 3 * t16_d_boxes + 1e-4


def test_metadata_and_model_untouched(tmp_path) -> None:
    model = tiny_detector()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "m.onnx"
    export_onnx(model, path, SIZE, half=True, metadata={"ghostq.classes": '["a","b","c"]'})
    meta = read_metadata(onnx.load(str(path)))
    assert meta["ghostq.precision"] == "fp16" and meta["ghostq.head"] == "sigmoid"
    assert meta["ghostq.input_size"] == "[64, 64]" and meta["ghostq.classes"] == '["a","b","c"]'
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32


def test_opset_below_17_is_refused() -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_detector(), None, SIZE, opset=13)
