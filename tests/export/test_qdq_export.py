"""INT8 Q/DQ writer: TensorRT placement (lint-clean), shared Concat/MaxPool scales, the CPU (u8s8) form, PTQ,
and the compressed-model source (brevitas QConv2d -> integer weights and scales as data)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from export_helpers import SIZE, images, tiny_detector
from onnx import numpy_helper
from torch import nn

from ghostq.export.onnx_export import export_onnx
from ghostq.export.qdq_export import ConvQuant, conv_module_name, conv_nodes, ptq_minmax, write_qdq
from ghostq.export.qdq_lint import lint_qdq
from ghostq.export.verify import ort_session


def _exported(backbone: str = "csp_n", head: str = "sigmoid", strides=(8, 16, 32)):
    model = tiny_detector(backbone, head, strides)
    return model, export_onnx(model, None, SIZE)


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize(("backbone", "strides"), [("csp_n", (8, 16, 32)), ("convnextv2_atto", (4, 8, 16))])
def test_conv_names_are_module_names(backbone: str, strides: tuple) -> None:
    model, proto = _exported(backbone, strides=strides)
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(conv_nodes(proto)) == convs
    scoped = "/model/backbone/stages.0/stages.0.1/m.0/cv1/conv/Conv"
    assert conv_module_name(scoped) == "backbone.stages.0.1.m.0.cv1.conv"


@pytest.fixture(scope="module")
def ptq():
    torch.set_num_threads(1)
    model, proto = _exported()
    spec = ptq_minmax(proto, [images(4, seed=s) for s in range(2)], skip=model.prediction_layer_names())
    return model, proto, spec


def test_trt_form_is_lint_clean_and_placed_as_tensorrt_fuses(ptq) -> None:
    model, proto, spec = ptq
    q = write_qdq(proto, spec, "trt")
    assert lint_qdq(q) == []
    consts = _consts(q)
    producer = {o: n for n in q.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    convs = conv_nodes(q)
    for name, node in convs.items():
        w = producer.get(node.input[1])
        if name in spec:  # weights: INT8 initializer + DQ(axis 0); input: Q/DQ INT8, zero point 0, per tensor
            assert w.op_type == "DequantizeLinear" and consts[w.input[0]].dtype == np.int8
            assert next(a.i for a in w.attribute if a.name == "axis") == 0
            assert consts[w.input[1]].shape == (consts[w.input[0]].shape[0],)
            x = producer[node.input[0]]
            assert x.op_type == "DequantizeLinear" and consts[x.input[1]].size == 1
            assert consts[x.input[2]].dtype == np.int8 and consts[x.input[2]] == 0
        else:  # prediction convs stay FP
            assert name in model.prediction_layer_names() and node.input[1] in consts
        for c in consumers.get(node.output[0], []):  # nothing on a conv's output
            assert c.op_type != "QuantizeLinear"
    # every Concat / MaxPool feeding a quantized conv runs on one shared scale (inputs and output)
    checked = 0
    for n in q.graph.node:
        if n.op_type in ("Concat", "MaxPool") and any(c.op_type == "QuantizeLinear" for c in consumers[n.output[0]]):
            out_q = next(c for c in consumers[n.output[0]] if c.op_type == "QuantizeLinear")
            for i in n.input:
                dq = producer[i]
                assert dq.op_type == "DequantizeLinear"
                assert consts[dq.input[1]] == consts[out_q.input[1]]
            checked += 1
    assert checked >= 5  # C2f concats, SPPF maxpools and concat, PAN concats


def test_int8_outputs_track_fp32(ptq) -> None:
    _model, proto, spec = ptq
    x = images(2, seed=7)
    ref = ort_session(proto).run(None, {"images": x})
    for form in ("trt", "cpu"):
        scores, boxes = ort_session(write_qdq(proto, spec, form)).run(None, {"images": x})
        assert np.abs(scores - ref[0]).max() < 0.05
        # a random network amplifies rounding; on average boxes stay within a few percent of their size
        assert np.abs(boxes - ref[1]).mean() / np.abs(ref[1]).mean() < 0.05
        assert np.abs(scores - ref[0]).max() > 0  # really quantized


def test_cpu_form_uses_uint8_activations_and_the_same_weights(ptq) -> None:
    _model, proto, spec = ptq
    trt, cpu = write_qdq(proto, spec, "trt"), write_qdq(proto, spec, "cpu")
    ct, cc = _consts(trt), _consts(cpu)
    assert {k: v for k, v in ct.items() if k.endswith("weight_int8")}.keys() == \
        {k for k in cc if k.endswith("weight_int8")}
    assert all(np.array_equal(ct[k], cc[k]) for k in ct if k.endswith(("weight_int8", "weight_scale")))
    acts = [n for n in cpu.graph.node if n.op_type == "QuantizeLinear"]
    conv_inputs = {node.input[0] for node in conv_nodes(proto).values()}
    assert acts and all(cc[n.input[2]].dtype == np.uint8 for n in acts)
    # post-ReLU groups (and the [0, 1] image) are one-sided: zero point 0, scale 127 s / 255 (finer)
    by_name = {n.name: n for n in trt.graph.node}
    one_sided = compared = 0
    for n in acts:
        if cc[n.input[2]] == 0:
            one_sided += 1
            if n.name in by_name and n.input[0] in conv_inputs:  # same tensor quantized in both forms
                s_trt = ct[by_name[n.name].input[1]]
                assert cc[n.input[1]] >= 127 * s_trt / 255 * (1 - 1e-6)  # covers the TensorRT range (one-sided)
                compared += 1
    assert one_sided == len(acts) and compared > 20  # ReLU network, image in [0, 1]
    # the CPU form also quantizes ahead of Split and residual Add, so ONNX Runtime fuses every quantized conv
    producer = {o: n for n in cpu.graph.node for o in n.output}
    feeds = [producer[i].op_type for n in cpu.graph.node if n.op_type in ("Split", "Add") and "head" not in n.name
             for i in (n.input[:1] if n.op_type == "Split" else n.input) if i in producer]
    assert feeds and set(feeds) == {"DequantizeLinear"}
    rules = {v.rule for v in lint_qdq(cpu)}
    assert "uint8" in rules  # the TensorRT lint rightly rejects the CPU form


def test_sub8bit_integer_weights_are_written_on_their_grid(ptq) -> None:
    _model, proto, spec = ptq
    name = "neck.td_blocks.0.cv2.conv"
    w = numpy_helper.to_array({t.name: t for t in proto.graph.initializer}[conv_nodes(proto)[name].input[1]])
    s4 = np.abs(w.reshape(w.shape[0], -1)).max(1) / 7
    wi = np.clip(np.round(w / s4[:, None, None, None]), -7, 7).astype(np.int8)
    spec4 = dict(spec)
    spec4[name] = ConvQuant(s4, spec[name].input_scale, weight_int=wi, weight_bits=4)
    q = write_qdq(proto, spec4, "trt")
    c = _consts(q)
    assert np.array_equal(c[f"{name}.weight_int8"], wi) and np.abs(wi).max() == 7
    assert lint_qdq(q) == []
    with pytest.raises(ValueError, match="grid"):
        write_qdq(proto, {name: ConvQuant(s4, 0.1, weight_int=wi * 3, weight_bits=4)})
    with pytest.raises(ValueError, match="not in the graph"):
        write_qdq(proto, {"no.such.conv": spec[name]})


def test_scales_as_plain_data_are_validated() -> None:
    with pytest.raises(ValueError):
        ConvQuant(np.array([0.1, 0.0]), 0.1)
    with pytest.raises(ValueError):
        ConvQuant(np.array([0.1]), -1.0)


def test_compressed_model_source_matches_quantized_torch() -> None:
    """Integer weights and scales from brevitas QConv2d modules: the Q/DQ graph computes what the quantized
    torch model computes (tiny three-conv net, so no rounding flip snowballs)."""
    pytest.importorskip("brevitas")
    from ghostq.compress.quantize import QConv2d, QuantConfig, calibrate_activations, init_weight_scales, quantize
    from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.c = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.relu(self.b(torch.relu(self.a(x)))))

    torch.manual_seed(0)
    fp = Tiny().eval()
    q = quantize(copy.deepcopy(fp), QuantConfig(weight_bits=8, layer_bits={"b": 4}, quantize_prediction_convs=True,
                                                act_calib="minmax", first_conv="a", prediction_convs=("c",)))
    init_weight_scales(q, "max")
    calibrate_activations(q, [torch.rand(2, 3, 16, 16) for _ in range(2)])
    q.eval()
    assert sum(isinstance(m, QConv2d) for m in q.modules()) == 3
    spec = spec_from_quantized(q)
    assert spec["b"].weight_bits == 4 and np.abs(spec["b"].weight_int).max() <= 7
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(dequantized_copy(q), (torch.zeros(1, 3, 16, 16),), buf, opset_version=17, dynamo=False,
                          input_names=["images"], output_names=["out"], dynamic_axes={"images": {0: "b"}})
    proto = write_qdq(onnx.load_from_string(buf.getvalue()), spec, "trt")
    assert lint_qdq(proto) == []
    x = torch.rand(2, 3, 16, 16)
    (got,) = ort_session(proto).run(None, {"images": x.numpy()})
    with torch.no_grad():
        want, fp_out = q(x).numpy(), fp(x).numpy()
    # a rounding flip of one input of `c` (float accumulation order differs) moves an output by s_in * |w|
    step = float(spec["c"].input_scale) * float(np.abs(spec["c"].weight_int).max() * spec["c"].weight_scale.max())
    assert np.abs(got - want).max() <= 2 * step + 1e-5
    assert np.abs(want - fp_out).max() > 10 * np.abs(got - want).max()  # quantization is visible; parity is not


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_convnext_int8_is_lint_clean(head: str) -> None:
    model, proto = _exported("convnextv2_atto", head, (4, 8, 16))
    spec = ptq_minmax(proto, [images(2)], skip=model.prediction_layer_names())
    q = write_qdq(proto, spec, "trt")
    assert lint_qdq(q) == []
    x = images(2, seed=5)
    scores, _ = ort_session(q).run(None, {"images": x})
    assert np.abs(scores - ort_session(proto).run(None, {"images": x})[0]).max() < 0.05


def test_cpu_form_reads_signs_from_the_graph_without_calibrated_minima(ptq) -> None:
    """Scales from a compressed model carry no minimum: ReLU outputs (and Split / Add / Concat of them) are
    still found one-sided from the graph, so ONNX Runtime can drop the ReLU into QLinearConv."""
    _model, proto, spec = ptq
    no_min = {k: ConvQuant(v.weight_scale, v.input_scale) for k, v in spec.items()}
    cpu = write_qdq(proto, no_min, "cpu")
    zps = [numpy_helper.to_array(t) for t in cpu.graph.initializer if t.name.endswith("_act_zero_point")]
    assert zps and all(z.dtype == np.uint8 for z in zps)
    assert sum(int(z) == 0 for z in zps) == len(zps) - 1  # all but the image input (no minimum known for it)


def test_cpu_form_drops_relu_before_unsigned_quantize_exactly() -> None:
    """Relu -> QuantizeLinear(uint8, zero point 0) is Q alone: the pass removes the Relu, outputs unchanged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ghostq.export.qdq_export import drop_relu_before_unsigned_quantize

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "zp")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert drop_relu_before_unsigned_quantize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "DequantizeLinear"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(before, after)
