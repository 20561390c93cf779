"""`explain`: counts what ONNX Runtime runs as integer / float on hand-made graphs whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from ghostq.core.errors import GhostqError
from ghostq.export.explain import explain, explain_markdown


def _model(path: Path, quantized: bool) -> Path:
    """x -> conv -> relu -> maxpool -> sigmoid; with Q/DQ around conv and maxpool when `quantized`."""
    rng = np.random.default_rng(0)
    inits = [nh.from_array(np.float32(0.02), "s_in"), nh.from_array(np.uint8(0), "z_u8"),
             nh.from_array(np.full(8, 0.01, np.float32), "s_w"), nh.from_array(np.zeros(8, np.int8), "z_w"),
             nh.from_array(rng.integers(-50, 50, (8, 3, 3, 3)).astype(np.int8), "w_i8"),
             nh.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w_f"),
             nh.from_array(np.zeros(8, np.float32), "b"), nh.from_array(np.float32(0.05), "s_a")]
    conv = dict(pads=[1, 1, 1, 1])
    pool = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    if quantized:
        nodes = [h.make_node("QuantizeLinear", ["x", "s_in", "z_u8"], ["xq"]),
                 h.make_node("DequantizeLinear", ["xq", "s_in", "z_u8"], ["xd"]),
                 h.make_node("DequantizeLinear", ["w_i8", "s_w", "z_w"], ["wd"], axis=0),
                 h.make_node("Conv", ["xd", "wd", "b"], ["y"], **conv),
                 h.make_node("Relu", ["y"], ["yr"]),
                 h.make_node("QuantizeLinear", ["yr", "s_a", "z_u8"], ["yq"]),
                 h.make_node("DequantizeLinear", ["yq", "s_a", "z_u8"], ["yd"]),
                 h.make_node("MaxPool", ["yd"], ["p"], **pool),
                 h.make_node("QuantizeLinear", ["p", "s_a", "z_u8"], ["pq"]),
                 h.make_node("DequantizeLinear", ["pq", "s_a", "z_u8"], ["pd"]),
                 h.make_node("Sigmoid", ["pd"], ["out"])]
    else:
        nodes = [h.make_node("Conv", ["x", "w_f", "b"], ["y"], **conv), h.make_node("Relu", ["y"], ["yr"]),
                 h.make_node("MaxPool", ["yr"], ["pd"], **pool), h.make_node("Sigmoid", ["pd"], ["out"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                         [h.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_quantized_graph_counts(tmp_path: Path) -> None:
    r = explain(_model(tmp_path / "q.onnx", quantized=True))
    assert r["ops"]["QLinearConv"] == {"integer": 1, "float": 0, "transition": 0, "shape": 0}  # conv + relu fused
    assert r["ops"]["Sigmoid"] == {"integer": 0, "float": 1, "transition": 0, "shape": 0}
    pool = {k: v for k, v in r["ops"].items() if "MaxPool" in k}
    assert sum(v["integer"] for v in pool.values()) == 1 and sum(v["float"] for v in pool.values()) == 0
    assert r["quantize"] == 1 and r["dequantize"] == 1  # the input and the float Sigmoid's input
    assert "Conv" not in r["ops"] and r["float_nodes"] == 1
    table = explain_markdown(r)
    assert "| QLinearConv | 1 | 0 | 0 | 0 |" in table


def test_float_graph_has_no_integer_node(tmp_path: Path) -> None:
    r = explain(_model(tmp_path / "f.onnx", quantized=False))
    assert r["integer_nodes"] == 0 and r["quantize"] == 0 and r["dequantize"] == 0
    assert r["float_nodes"] >= 2  # a (fused) conv and the sigmoid at least


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(GhostqError, match=r"bad.onnx: ONNX Runtime cannot load it") as err:
        explain(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(GhostqError, match="file not found"):
        explain(tmp_path / "missing.onnx")


def test_explain_command_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json
    import sys

    from ghostq.cli import main

    model = _model(tmp_path / "q.onnx", quantized=True)
    argv, sys.argv = sys.argv, ["ghostq", "export", "--explain", str(model), "--json", str(tmp_path / "x.json")]
    try:
        with pytest.raises(SystemExit) as stop:
            main()
    finally:
        sys.argv = argv
    assert stop.value.code == 0
    assert "| QLinearConv | 1 | 0 | 0 | 0 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "x.json").read_text())["ops"]["QLinearConv"]["integer"] == 1


def _concat_pool_model(path: Path) -> Path:
    """conv -> (relu, Q/DQ) -> Concat of two views -> Q/DQ -> MaxPool -> Q/DQ -> Reshape to a shape read by Shape:
    ORT fuses the Concat into a QLinearConcat (whose first input is its output *scale*) and runs the MaxPool on
    uint8; the Reshape's target shape is int64 arithmetic."""
    rng = np.random.default_rng(0)
    inits = [nh.from_array(np.float32(1 / 255), "s_in"), nh.from_array(np.uint8(0), "z_u8"),
             nh.from_array(np.full(8, 0.01, np.float32), "s_w"), nh.from_array(np.zeros(8, np.int8), "z_w"),
             nh.from_array(rng.integers(-50, 50, (8, 3, 3, 3)).astype(np.int8), "w_i8"),
             nh.from_array(np.zeros(8, np.float32), "b"), nh.from_array(np.float32(0.05), "s_a"),
             nh.from_array(np.array([0], np.int64), "i0"), nh.from_array(np.array([1], np.int64), "i1"),
             nh.from_array(np.array([-1], np.int64), "m1")]
    q = lambda t, s, o: [h.make_node("QuantizeLinear", [t, s, "z_u8"], [f"{o}q"]),  # noqa: E731
                         h.make_node("DequantizeLinear", [f"{o}q", s, "z_u8"], [o])]
    nodes = [*q("x", "s_in", "xd"),
             h.make_node("DequantizeLinear", ["w_i8", "s_w", "z_w"], ["wd"], axis=0),
             h.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["y"], ["yr"]),
             *q("yr", "s_a", "yd"),
             h.make_node("Concat", ["yd", "yd"], ["c"], axis=1), *q("c", "s_a", "cd"),
             h.make_node("MaxPool", ["cd"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
             *q("p", "s_a", "pd"),
             h.make_node("Shape", ["pd"], ["shp"]), h.make_node("Slice", ["shp", "i0", "i1"], ["n"]),
             h.make_node("Concat", ["n", "m1"], ["target"], axis=0),
             h.make_node("Reshape", ["pd", "target"], ["flat"]), h.make_node("Sigmoid", ["flat"], ["out"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
                         [h.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_qlinear_concat_output_is_integer_and_shape_math_is_not_float(tmp_path: Path) -> None:
    r = explain(_concat_pool_model(tmp_path / "c.onnx"))
    ops = r["ops"]
    assert ops["QLinearConcat"] == {"integer": 1, "float": 0, "transition": 0, "shape": 0}
    pool = {k: v for k, v in ops.items() if "MaxPool" in k}
    assert sum(v["integer"] for v in pool.values()) == 1 and sum(v["float"] for v in pool.values()) == 0
    assert ops["Shape"]["shape"] == 1 and ops["Concat"] == {"integer": 0, "float": 0, "transition": 0, "shape": 1}
    assert ops["Sigmoid"]["float"] == 1 and r["shape_nodes"] >= 2
    assert "shape arithmetic" in explain_markdown(r)
