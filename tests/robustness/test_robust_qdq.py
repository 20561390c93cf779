"""INT8 Q/DQ export, the TensorRT-rules lint and the trtexec command: planted defects and their exact outcome.

- the residual Add reads its skip input through a Q/DQ (sharing the scale of the Q already on that tensor), and
  the lint names an Add that reads the float copy;
- every lint rule on a planted hand-made graph (the rule and the node name), and the correct graph is clean;
- exporting the same checkpoint twice (in processes with different hash seeds) gives identical ONNX bytes;
- trtexec.sh is written for the TensorRT major (installed, else ``export.tensorrt_major``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ghostq.export.qdq_lint import RULES, Violation, lint_qdq
from ghostq.export.trtexec import target_tensorrt_major, trtexec_command, write_trtexec_script

REPO = Path(__file__).resolve().parents[2]
SKIP_ADD = "/model/backbone/stages.1/stages.1.1/m.0/Add"


# ----------------------------------------------------------------------------- item 6: the residual Add
@pytest.fixture(scope="module")
def int8_trt() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(FP32 ONNX, TensorRT-form INT8 ONNX) of a tiny csp_n detector, min-max PTQ on two random images."""
    from ghostq.detect.models import build_detector
    from ghostq.export.onnx_export import export_onnx
    from ghostq.export.qdq_export import ptq_minmax, write_qdq

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_detector("csp_n", 3, strides=(8, 16, 32)).eval()
    fp32 = export_onnx(model, None, 64)
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    spec = ptq_minmax(fp32, [x], skip=model.prediction_layer_names())
    return fp32, write_qdq(fp32, spec, "trt")


def _index(m: onnx.ModelProto) -> tuple[dict, dict, dict]:
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producer, consumers, {n.name: n for n in m.graph.node}


def test_residual_add_reads_its_skip_input_through_the_shared_qdq(int8_trt) -> None:
    fp32, q = int8_trt
    producer, consumers, by_name = _index(q)
    add = by_name[SKIP_ADD]
    skip_float = next(n for n in fp32.graph.node if n.name == SKIP_ADD).input[0]
    dq = producer[add.input[0]]
    assert dq.op_type == "DequantizeLinear"
    qnode = producer[dq.input[0]]
    assert qnode.op_type == "QuantizeLinear" and qnode.input[0] == skip_float
    # the one Q on the skip tensor is the one the next conv (m.0.cv1) reads: same node, same scale
    assert [c.op_type for c in consumers[skip_float]] == ["QuantizeLinear"]
    cv1 = by_name["/model/backbone/stages.1/stages.1.1/m.0/cv1/conv/Conv"]
    assert cv1.input[0] == add.input[0]
    # no Add anywhere reads a float tensor that is also quantized, and the whole file is lint-clean
    for n in q.graph.node:
        if n.op_type == "Add":
            assert all(c.op_type != "QuantizeLinear" for i in n.input for c in consumers.get(i, [])), n.name
    assert lint_qdq(q) == []


def test_lint_names_an_add_that_reads_the_float_skip_input(int8_trt, tmp_path) -> None:
    from ghostq.cli import export_commands  # noqa: F401  (registers `export`)
    from ghostq.cli.app import app

    _fp32, q = int8_trt
    planted = onnx.ModelProto()
    planted.CopyFrom(q)
    producer, _c, by_name = _index(planted)
    add = by_name[SKIP_ADD]
    skip_float = producer[producer[add.input[0]].input[0]].input[0]  # DQ <- Q <- the float tensor
    add.input[0] = skip_float  # the export as it was: the Add beside the QuantizeLinear
    violations = lint_qdq(planted)
    assert [(v.rule, v.node) for v in violations] == [("add-skip-unquantized", SKIP_ADD)]
    assert f"reads {skip_float!r} in float while" in violations[0].message
    path = tmp_path / "model_int8.onnx"
    onnx.save(planted, str(path))
    res = CliRunner().invoke(app, ["export", "--check", str(path)])
    assert res.exit_code == 1
    assert f"[add-skip-unquantized] {SKIP_ADD}: reads" in res.output
    assert "1 violation(s) of TensorRT's Q/DQ rules (add-skip-unquantized)" in " ".join(res.output.split())


def test_lint_names_qdq_planted_on_the_cls_pred_conv_output(int8_trt, tmp_path) -> None:
    """A Q/DQ pair on ``cls_preds.0``'s output (no activation or BN follows) used to pass the lint."""
    from ghostq.cli import export_commands  # noqa: F401
    from ghostq.cli.app import app

    _fp32, q = int8_trt
    planted = onnx.ModelProto()
    planted.CopyFrom(q)
    conv = next(n for n in planted.graph.node if n.name == "/model/head/cls_preds.0/Conv")
    out = conv.output[0]
    planted.graph.initializer.extend([numpy_helper.from_array(np.array(0.02, np.float32), "planted_s"),
                                      numpy_helper.from_array(np.array(0, np.int8), "planted_zp")])
    for n in planted.graph.node:
        for k, i in enumerate(n.input):
            if i == out:
                n.input[k] = "planted_dq"
    at = list(planted.graph.node).index(conv) + 1
    planted.graph.node.insert(at, helper.make_node("DequantizeLinear", ["planted_q", "planted_s", "planted_zp"],
                                                   ["planted_dq"], name="planted_DQ"))
    planted.graph.node.insert(at, helper.make_node("QuantizeLinear", [out, "planted_s", "planted_zp"],
                                                   ["planted_q"], name="planted_Q"))
    onnx.checker.check_model(planted)
    violations = lint_qdq(planted)
    assert [(v.rule, v.node) for v in violations] == [("qdq-on-conv-output", "planted_Q")]
    assert "/model/head/cls_preds.0/Conv" in violations[0].message
    path = tmp_path / "planted.onnx"
    onnx.save(planted, str(path))
    res = CliRunner().invoke(app, ["export", "--check", str(path)])
    assert res.exit_code == 1 and "[qdq-on-conv-output] planted_Q: Q/DQ on the output of" in res.output


# ----------------------------------------------------------------------------- item 7: every rule, planted
def _net(plant: str | None = None) -> onnx.ModelProto:
    """A legal Q/DQ net with every construct the lint checks; ``plant`` switches one defect on.

    x -Q/DQ- conv1 - relu - Q/DQ(a) -+- pool - Q/DQ - conv2 - relu - Q/DQ(b) -+- concat - Q/DQ - conv3 - relu
                                     +-------------------------------------------+
    - Q/DQ(d) - resize - Q/DQ(e) -+- conv4 - relu -+- add - Q/DQ - pred (1x1 conv) -> y
                                  +----------------+
    """
    sa, sr, sg, bad = 0.05, 0.04, 0.08, 0.11
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def qdq(t: str, tag: str, scale: float, zp: str = "zp") -> str:
        s = const(f"{tag}_s", np.array(scale, np.float32))
        nodes.extend([helper.make_node("QuantizeLinear", [t, s, zp], [f"{tag}_q"], name=f"{tag}_Q"),
                      helper.make_node("DequantizeLinear", [f"{tag}_q", s, zp], [f"{tag}_dq"], name=f"{tag}_DQ")])
        return f"{tag}_dq"

    def conv(t: str, name: str, c_in: int, c_out: int, k: int = 3) -> str:
        w = np.random.default_rng(len(nodes)).integers(-127, 128, (c_out, c_in, k, k)).astype(np.int8)
        wi = const(f"{name}_w", w)
        if plant == "clip-between-q-dq" and name == "conv1":
            lo, hi = const("lo", np.array(-127, np.int8)), const("hi", np.array(127, np.int8))
            nodes.append(helper.make_node("Clip", [wi, lo, hi], [f"{name}_wc"], name=f"{name}_w_Clip"))
            wi = f"{name}_wc"
        scale = np.full(c_out, 0.01, np.float32)
        axis = 0
        if name == "conv1" and plant == "weight-per-tensor":
            scale = np.array(0.01, np.float32)
        if name == "conv1" and plant == "weight-axis":
            axis = 1
        ws, wz = const(f"{name}_ws", scale), const(f"{name}_wz", np.zeros(scale.shape, np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [wi, ws, wz], [f"{name}_wdq"], axis=axis,
                                      name=f"{name}_w_DQ"))
        nodes.append(helper.make_node("Conv", [t, f"{name}_wdq"], [f"{name}_out"], pads=[k // 2] * 4, name=name))
        return f"{name}_out"

    def relu(t: str, name: str) -> str:
        nodes.append(helper.make_node("Relu", [t], [f"{name}_out"], name=name))
        return f"{name}_out"

    const("zp", np.array(0, np.int8))
    x_scale, x_zp = np.array(0.01, np.float32), np.array(0, np.int8)
    if plant == "zero-point-nonzero":
        x_zp = np.array(3, np.int8)
    elif plant == "uint8":
        x_zp = np.array(0, np.uint8)
    elif plant == "scale-not-positive":
        x_scale = np.array(-0.01, np.float32)
    elif plant == "activation-per-channel":
        x_scale, x_zp = np.full(4, 0.01, np.float32), np.zeros(4, np.int8)
    const("x_s", x_scale)
    const("x_zp", x_zp)
    nodes.extend([helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["x_q"], name="x_Q"),
                  helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_zp"], ["x_dq"], name="x_DQ")])
    c1 = conv("x_dq", "conv1", 4, 4)
    if plant == "qdq-between-conv-and-activation":
        c1 = qdq(c1, "conv1_out", sa)
    a = qdq(relu(c1, "relu1"), "a", sa)
    nodes.append(helper.make_node("MaxPool", [a], ["pool_out"], kernel_shape=[3, 3], pads=[1] * 4, name="pool"))
    p = qdq("pool_out", "p", bad if plant == "maxpool-scale-mismatch" else sa)
    b = qdq(relu(conv(p, "conv2", 4, 4), "relu2"), "b", sa)
    nodes.append(helper.make_node("Concat", [a, b], ["cat_out"], axis=1, name="concat"))
    c = qdq("cat_out", "cat", bad if plant == "concat-scale-mismatch" else sa)
    d = qdq(relu(conv(c, "conv3", 8, 4), "relu3"), "d", sr)
    roi, scales = const("roi", np.zeros(0, np.float32)), const("scales", np.array([1, 1, 2, 2], np.float32))
    nodes.append(helper.make_node("Resize", [d, roi, scales], ["resize_out"], mode="nearest", name="resize"))
    e = qdq("resize_out", "e", bad if plant == "resize-scale-mismatch" else sr)
    f = relu(conv(e, "conv4", 4, 4), "relu4")
    skip = "resize_out" if plant == "add-skip-unquantized" else e
    nodes.append(helper.make_node("Add", [skip, f], ["add_out"], name="add"))
    y = conv(qdq("add_out", "g", sg), "pred", 4, 3, k=1)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])]
    if plant == "qdq-on-conv-output":
        y = qdq(y, "pred_out", 0.02)
    nodes.append(helper.make_node("Identity", [y], ["y"], name="y_Identity"))
    if plant == "requant-round-trip":
        nodes.append(helper.make_node("QuantizeLinear", [a, "a_s", "zp"], ["a_rq"], name="requant_Q"))
        outputs.append(helper.make_tensor_value_info("a_rq", TensorProto.INT8, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              outputs, inits)
    opset = 11 if plant == "opset-per-channel" else 17
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


_WEIGHT_DQS = {f"{c}_w_DQ" for c in ("conv1", "conv2", "conv3", "conv4", "pred")}
PLANTED = {  # rule -> the nodes the lint must name (and nothing else)
    "clip-between-q-dq": {"conv1_w_Clip"},
    "zero-point-nonzero": {"x_Q", "x_DQ"},
    "uint8": {"x_Q", "x_DQ"},
    "scale-not-positive": {"x_Q", "x_DQ"},
    "weight-per-tensor": {"conv1_w_DQ"},
    "weight-axis": {"conv1_w_DQ"},
    "activation-per-channel": {"x_Q", "x_DQ"},
    "qdq-between-conv-and-activation": {"conv1_out_Q"},
    "qdq-on-conv-output": {"pred_out_Q"},
    "concat-scale-mismatch": {"concat"},
    "maxpool-scale-mismatch": {"pool"},
    "resize-scale-mismatch": {"resize"},
    "add-skip-unquantized": {"add"},
    "requant-round-trip": {"requant_Q"},
    "opset-per-channel": _WEIGHT_DQS,
}


def test_the_correct_graph_is_clean_and_runs() -> None:
    import onnxruntime as ort

    model = _net()
    onnx.checker.check_model(model)
    assert lint_qdq(model) == []
    x = np.random.default_rng(0).random((1, 4, 8, 8), dtype=np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.shape == (1, 3, 16, 16) and np.isfinite(y).all()


def test_every_rule_has_a_planted_graph() -> None:
    assert set(PLANTED) == set(RULES)


@pytest.mark.parametrize("rule", sorted(PLANTED))
def test_planted_violation_is_reported_with_its_node(rule: str) -> None:
    violations = lint_qdq(_net(rule))
    assert {(v.rule, v.node) for v in violations} == {(rule, node) for node in PLANTED[rule]}
    for v in violations:
        assert isinstance(v, Violation) and "\n" not in str(v) and str(v).startswith(f"[{rule}] {v.node}: ")


def test_scale_mismatch_messages_name_both_quantizers() -> None:
    (pool,) = lint_qdq(_net("maxpool-scale-mismatch"))
    assert pool.message == ("input quantized with the scale of a_DQ, output by p_Q with another; share one scale "
                            "so it runs in INT8 in place")
    (resize,) = lint_qdq(_net("resize-scale-mismatch"))
    assert resize.message.startswith("input quantized with the scale of d_DQ, output by e_Q with another")


# ----------------------------------------------------------------------------- item 12: deterministic export
_CHECKPOINT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {helpers!r})
from export_helpers import calibrate_norms
from ghostq.core.config import load_config
from ghostq.detect.checkpoint import save_checkpoint
from ghostq.detect.builders import build_model_from_config
torch.set_num_threads(1)
cfg = load_config(Path({config!r}), {overrides!r})
torch.manual_seed(0)
model = calibrate_norms(build_model_from_config(cfg, 5), seed=0)
save_checkpoint(Path(sys.argv[1]), {{"model": model.state_dict(), "config": cfg.model_dump(mode="json"),
                                    "classes": ["a", "b", "c", "d", "e"]}})
"""


def test_exporting_the_same_checkpoint_twice_gives_identical_bytes(tmp_path) -> None:
    """Two `ghostq export` processes with different hash seeds (set order differs between them)."""
    config = str(REPO / "configs" / "smoke.yaml")
    small = ["data.synthetic.images=8", "data.img_size=64", "data.synthetic.size=64", "train.threads=1"]
    ckpt = tmp_path / "best.pt"
    script = _CHECKPOINT.format(helpers=str(REPO / "tests" / "export"), config=config,
                                overrides=[f"run.root={tmp_path}", *small])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(ckpt)], check=True, env=env, timeout=300)
    files = {}
    for seed in ("1", "2"):
        args = [sys.executable, "-m", "ghostq", "export", config, f"run.root={tmp_path / seed}", "run.name=x", *small,
                f"export.source={ckpt}", "export.int8.calib_batches=1", "export.verify=false", "--nms", "onnx"]
        res = subprocess.run(args, env={**env, "PYTHONHASHSEED": seed}, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        out = tmp_path / seed / "x" / "export"
        files[seed] = {p.name: p.read_bytes() for p in sorted(out.glob("*.onnx"))}
    assert set(files["1"]) == set(files["2"]) and {"model_int8.onnx", "model_int8_cpu.onnx", "model_fp32.onnx",
                                                   "model_int8_nms.onnx", "model_int8_cpu_nms.onnx"} <= set(files["1"])
    for name, data in files["1"].items():
        assert data == files["2"][name], f"{name} differs between two exports of the same checkpoint"


# ----------------------------------------------------------------------------- item 14: trtexec for the major
def _flags(cmd: list[str]) -> set[str]:
    return {a for a in cmd if a in ("--int8", "--fp16", "--stronglyTyped")}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_command_for_each_major(precision: str) -> None:
    weak10 = {"fp32": set(), "fp16": {"--fp16"}, "int8": {"--int8", "--fp16"}}[precision]
    assert _flags(trtexec_command("m.onnx", "m.plan", (3, 64, 64), precision, "weak", tensorrt_major=10)) == weak10
    assert _flags(trtexec_command("m.onnx", "m.plan", (3, 64, 64), precision, "strong", tensorrt_major=10)) == {
        "--stronglyTyped"}
    for typing in ("weak", "strong"):  # TensorRT 11: strongly typed whatever the config says, no precision flag
        cmd = trtexec_command("m.onnx", "m.plan", (3, 64, 64), precision, typing, tensorrt_major=11)
        assert _flags(cmd) == {"--stronglyTyped"}
        assert cmd[:3] == ["/usr/src/tensorrt/bin/trtexec", "--onnx=m.onnx", "--saveEngine=m.plan"]
    with pytest.raises(ValueError, match="tensorrt_major must be 10 or later, got 8"):
        trtexec_command("m.onnx", "m.plan", (3, 64, 64), precision, tensorrt_major=8)


def test_installed_tensorrt_decides_the_major_else_the_config(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not installed
    assert target_tensorrt_major(11) == 11 and target_tensorrt_major(10) == 10
    assert "--int8" in trtexec_command("m.onnx", "m.plan", (3, 64, 64), "int8")  # default: TensorRT 10, weak
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "11.1.0"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert target_tensorrt_major(10) == 11
    assert _flags(trtexec_command("m.onnx", "m.plan", (3, 64, 64), "int8", "weak")) == {"--stronglyTyped"}
    fake.__version__ = "10.3.0"
    assert target_tensorrt_major(11) == 10


def test_script_header_names_the_major(tmp_path) -> None:
    cmd = trtexec_command("model_int8.onnx", "model_int8.plan", (3, 64, 64), "int8", tensorrt_major=11)
    text = write_trtexec_script(tmp_path / "trtexec.sh", [cmd], tensorrt_major=11).read_text()
    assert "# For TensorRT 11 (strongly typed" in text and "--int8" not in text and "--stronglyTyped" in text
    cmd = trtexec_command("model_int8.onnx", "model_int8.plan", (3, 64, 64), "int8", tensorrt_major=10)
    text = write_trtexec_script(tmp_path / "trtexec10.sh", [cmd], tensorrt_major=10).read_text()
    assert "# For TensorRT 10 (JetPack 6 ships 10.3" in text and "--int8 --fp16" in text


def test_tensorrt_major_config_is_validated(monkeypatch, capsys, tmp_path) -> None:
    from ghostq.cli import main
    from ghostq.core.config import load_config
    from ghostq.core.errors import ConfigError

    config = REPO / "configs" / "smoke.yaml"
    assert load_config(config, ["export.tensorrt_major=11"]).export.tensorrt_major == 11
    assert load_config(config, []).export.tensorrt_major == 10
    with pytest.raises(ConfigError) as err:
        load_config(config, ["export.tensorrt_major=12"])
    assert str(err.value) == f"{config}: export.tensorrt_major: Input should be 10 or 11 (got 12)"
    monkeypatch.setattr(sys, "argv", ["ghostq", "export", str(config), f"run.root={tmp_path}",
                                      "export.tensorrt_major=9"])
    with pytest.raises(SystemExit) as code:
        main()
    assert code.value.code == 2
    out = capsys.readouterr().err.strip()
    assert out == f"error: {config}: export.tensorrt_major: Input should be 10 or 11 (got 9)"
    assert not (tmp_path / "smoke").exists()  # failed before any work
