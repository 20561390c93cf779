"""The TensorRT Q/DQ lint: clean on a legal graph, and names the rule on hand-made bad graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ghostq.export.qdq_lint import RULES, lint_qdq

C_IN, C_OUT = 4, 6


def _graph(
    act_zp: np.ndarray = np.array(0, np.int8),
    act_scale: np.ndarray = np.array(0.05, np.float32),
    w_scale: np.ndarray | None = None,
    weight_clip: bool = False,
    act_clip: bool = False,
    qdq_after_conv: bool = False,
    opset: int = 17,
) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(W: INT8 + DQ axis 0) -> Relu -> y, with one defect switched on at a time."""
    w_scale = np.full(C_OUT, 0.01, np.float32) if w_scale is None else w_scale
    inits = [
        numpy_helper.from_array(act_scale, "a_s"), numpy_helper.from_array(act_zp, "a_zp"),
        numpy_helper.from_array(np.ones((C_OUT, C_IN, 3, 3), np.int8), "w_int8"),
        numpy_helper.from_array(w_scale, "w_s"),
        numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(-127, np.int8), "clip_lo"),
        numpy_helper.from_array(np.array(127, np.int8), "clip_hi"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["xq"], name="x_Q")]
    xq = "xq"
    if act_clip:
        nodes.append(helper.make_node("Clip", ["xq", "clip_lo", "clip_hi"], ["xq_c"], name="act_Clip"))
        xq = "xq_c"
    nodes.append(helper.make_node("DequantizeLinear", [xq, "a_s", "a_zp"], ["xdq"], name="x_DQ"))
    w = "w_int8"
    if weight_clip:
        nodes.append(helper.make_node("Clip", ["w_int8", "clip_lo", "clip_hi"], ["w_c"], name="weight_Clip"))
        w = "w_c"
    nodes.append(helper.make_node("DequantizeLinear", [w, "w_s", "w_zp"], ["w_dq"], axis=0, name="w_DQ"))
    nodes.append(helper.make_node("Conv", ["xdq", "w_dq"], ["c"], pads=[1, 1, 1, 1], name="conv"))
    c = "c"
    if qdq_after_conv:
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "c_s"),
                  numpy_helper.from_array(np.array(0, np.int8), "c_zp")]
        nodes += [helper.make_node("QuantizeLinear", ["c", "c_s", "c_zp"], ["cq"], name="conv_out_Q"),
                  helper.make_node("DequantizeLinear", ["cq", "c_s", "c_zp"], ["cdq"], name="conv_out_DQ")]
        c = "cdq"
    nodes.append(helper.make_node("Relu", [c], ["y"], name="relu"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C_OUT, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _rules(model: onnx.ModelProto) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in lint_qdq(model):
        assert v.rule in RULES and v.message
        out.setdefault(v.rule, set()).add(v.node)
    return out


def test_legal_graph_is_clean_and_runs() -> None:
    model = _graph()
    onnx.checker.check_model(model)
    assert lint_qdq(model) == []


def test_clip_between_q_and_dq() -> None:
    assert _rules(_graph(weight_clip=True)) == {"clip-between-q-dq": {"weight_Clip"}}  # brevitas QCDQ weights
    assert _rules(_graph(act_clip=True)) == {"clip-between-q-dq": {"act_Clip"}}


def test_nonzero_zero_point() -> None:
    assert _rules(_graph(act_zp=np.array(3, np.int8))) == {"zero-point-nonzero": {"x_Q", "x_DQ"}}


def test_uint8_activations() -> None:
    rules = _rules(_graph(act_zp=np.array(0, np.uint8)))
    assert rules == {"uint8": {"x_Q", "x_DQ"}}
    rules = _rules(_graph(act_zp=np.array(128, np.uint8)))  # the ORT u8 form: both rules
    assert set(rules) == {"uint8", "zero-point-nonzero"}


def test_per_tensor_weights() -> None:
    assert _rules(_graph(w_scale=np.array(0.01, np.float32))) == {"weight-per-tensor": {"w_DQ"}}


def test_per_channel_activations() -> None:
    rules = _rules(_graph(act_scale=np.full(C_IN, 0.05, np.float32), act_zp=np.zeros(C_IN, np.int8)))
    assert rules == {"activation-per-channel": {"x_Q", "x_DQ"}}


def test_qdq_between_conv_and_activation() -> None:
    assert _rules(_graph(qdq_after_conv=True)) == {"qdq-between-conv-and-activation": {"conv_out_Q"}}


def test_opset_below_13_with_per_channel() -> None:
    assert _rules(_graph(opset=11)) == {"opset-per-channel": {"w_DQ"}}


def _concat_graph(scales: tuple[float, float], dq_then_q: bool = False) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(s, np.float32), f"s{i}") for i, s in enumerate(scales)]
    inits.append(numpy_helper.from_array(np.array(0, np.int8), "zp"))
    nodes = []
    for i in range(2):
        nodes += [helper.make_node("QuantizeLinear", [f"x{i}", f"s{i}", "zp"], [f"q{i}"], name=f"Q{i}"),
                  helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", "zp"], [f"d{i}"], name=f"DQ{i}")]
    nodes.append(helper.make_node("Concat", ["d0", "d1"], ["y"], axis=1, name="concat"))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])]
    if dq_then_q:
        nodes.append(helper.make_node("QuantizeLinear", ["d0", "s0", "zp"], ["rq"], name="requant_Q"))
        outputs.append(helper.make_tensor_value_info("rq", TensorProto.INT8, [1, 2, 4, 4]))
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, 2, 4, 4]) for i in range(2)]
    g = helper.make_graph(nodes, "c", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_concat_scales_and_round_trips() -> None:
    assert lint_qdq(_concat_graph((0.1, 0.1))) == []
    assert _rules(_concat_graph((0.1, 0.2))) == {"concat-scale-mismatch": {"concat"}}
    assert _rules(_concat_graph((0.1, 0.1), dq_then_q=True)) == {"requant-round-trip": {"requant_Q"}}


def test_check_cli(tmp_path) -> None:
    from ghostq.cli import export_commands  # noqa: F401  (registers `export`)
    from ghostq.cli.app import app

    good, bad, junk = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "junk.onnx"
    onnx.save(_graph(), str(good))
    onnx.save(_graph(weight_clip=True, act_zp=np.array(0, np.uint8)), str(bad))
    junk.write_bytes(b"\x00not an onnx file at all\xff" * 3)
    runner = CliRunner()
    res = runner.invoke(app, ["export", "--check", str(good)])
    assert res.exit_code == 0 and "passes" in res.output
    res = runner.invoke(app, ["export", "--check", str(bad)])
    assert res.exit_code == 1
    assert "clip-between-q-dq" in res.output and "uint8" in res.output and "weight_Clip" in res.output
    res = runner.invoke(app, ["export", "--check", str(junk)])
    assert res.exit_code != 0 and "not an ONNX model" in str(res.exception or res.output)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_is_documented(rule: str) -> None:
    from ghostq.export import qdq_lint

    assert f"``{rule}``" in qdq_lint.__doc__


def test_lint_and_config_import_without_torch() -> None:
    """`ghostq export --check` and the config section work where torch is absent (a deployment box)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import ghostq.export.qdq_lint, ghostq.core.export_config\n"
            "print(ghostq.core.export_config.ExportConfig().opset)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "17"
