"""The CPU INT8 form with 8-bit prediction convs (``export.int8.cpu_prediction_convs``): what ONNX Runtime runs
(every conv a QLinearConv, MaxPool / Concat / Resize / Add integer, per ``explain``), parity with the quantized
torch model it comes from, and the config's validation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import SIZE, images, tiny_detector

from ghostq.export.cpu_quant import prediction_convs_tag, with_quantized_convs
from ghostq.export.explain import explain_graph, optimized_graph
from ghostq.export.onnx_export import export_onnx, read_metadata
from ghostq.export.qdq_export import ConvQuant, conv_nodes, ptq_minmax, write_qdq
from ghostq.export.verify import ort_session


def _calib() -> list[np.ndarray]:
    return [images(4, seed=s) for s in range(2)]


@pytest.fixture(scope="module")
def ghost_like():
    """A tiny detector quantized as GHOST leaves it (prediction convs in FP), its FP32 graph and spec."""
    torch.set_num_threads(1)
    model = tiny_detector()
    proto = export_onnx(model, None, SIZE)
    spec = ptq_minmax(proto, _calib(), skip=model.prediction_layer_names())
    return model, proto, spec


def _explained(tmp_path, proto: onnx.ModelProto, name: str) -> dict:
    path = tmp_path / name
    onnx.save(proto, path)
    return explain_graph(optimized_graph(path))


def test_cpu_form_runs_every_conv_maxpool_and_concat_as_integer(ghost_like, tmp_path) -> None:
    model, proto, spec = ghost_like
    preds = model.prediction_layer_names()
    n_convs = len(conv_nodes(proto))
    before = _explained(tmp_path, write_qdq(proto, spec, "cpu"), "fp.onnx")
    cpu = with_quantized_convs(proto, spec, preds, _calib())  # the default: W8A8, float outputs
    assert all(n in cpu and cpu[n].output_range is None for n in preds)
    after = _explained(tmp_path, write_qdq(proto, cpu, "cpu"), "int8.onnx")
    ops = after["ops"]
    # before: the convs feeding the prediction convs (6) and the prediction convs (6) run in float behind
    # NCHWc reorders
    assert before["ops"]["QLinearConv"]["integer"] == n_convs - 2 * len(preds) and before["reorder"] > 0
    assert before["ops"]["Conv"]["float"] + before["ops"]["FusedConv"]["float"] == 2 * len(preds)
    # after: every other conv is one integer QLinearConv; the prediction convs run in float on their dequantized
    # 8-bit inputs (1x1, few outputs); no float conv elsewhere, no layout reorder
    assert ops["QLinearConv"] == {"integer": n_convs - len(preds), "float": 0, "transition": 0, "shape": 0}
    assert ops["Conv"]["float"] == len(preds)
    assert not any(k in ops for k in ("FusedConv", "ReorderInput", "ReorderOutput"))
    # int8_output: the prediction convs are QLinearConvs too
    full = with_quantized_convs(proto, spec, preds, _calib(), output=True)
    assert all(full[n].output_range is not None for n in preds) and not any(spec[n].output_range for n in spec)
    out_ops = _explained(tmp_path, write_qdq(proto, full, "cpu"), "int8_output.onnx")["ops"]
    assert out_ops["QLinearConv"]["integer"] == n_convs
    assert not any(k in out_ops for k in ("Conv", "FusedConv", "ReorderInput", "ReorderOutput"))
    assert ops["NhwcMaxPool"]["integer"] == 3 and ops["NhwcMaxPool"]["float"] == 0  # SPPF's chain
    assert ops["QLinearConcat"]["integer"] >= 10 and ops["QLinearAdd"]["integer"] >= 1
    assert ops["Resize"]["integer"] == 2 and ops["Resize"]["float"] == 0
    # what is left in float is the decode after the head: one Concat per output (scores, boxes, xyxy)
    assert ops["Concat"]["float"] == 3
    assert after["quantize"] == 1  # the image, once
    assert after["float_nodes"] < before["float_nodes"]


@pytest.mark.parametrize("output", [False, True])
def test_cpu_int8_file_tracks_the_quantized_model(ghost_like, output: bool) -> None:
    """The CPU file with 8-bit prediction convs stays as close to the Q/DQ graph with FP prediction convs
    (what the quantized torch model computes: test_qdq_export checks that parity) as rounding allows."""
    model, proto, spec = ghost_like
    preds = model.prediction_layer_names()
    cpu = with_quantized_convs(proto, spec, preds, _calib(), output=output)
    x = images(4, seed=11)
    ref_scores, ref_boxes = ort_session(write_qdq(proto, spec, "cpu")).run(None, {"images": x})
    scores, boxes = ort_session(write_qdq(proto, cpu, "cpu")).run(None, {"images": x})
    fp_scores, fp_boxes = ort_session(proto).run(None, {"images": x})
    assert np.abs(scores - ref_scores).max() > 0  # the prediction convs really are quantized
    assert np.abs(scores - ref_scores).max() < 0.02
    assert np.abs(boxes - ref_boxes).mean() / np.abs(ref_boxes).mean() < 0.02
    # the extra rounding is small against what quantizing the rest of the network already does
    assert np.abs(boxes - ref_boxes).mean() < np.abs(fp_boxes - ref_boxes).mean()


def test_source_scales_are_kept_and_only_outputs_added(ghost_like) -> None:
    model, proto, spec = ghost_like
    preds = model.prediction_layer_names()
    full = ptq_minmax(proto, _calib())  # a source that quantized the prediction convs itself
    cpu = with_quantized_convs(proto, full, preds, _calib(), output=True)
    for n in preds:
        assert cpu[n].input_scale == full[n].input_scale and np.array_equal(cpu[n].weight_scale, full[n].weight_scale)
        lo, hi = cpu[n].output_range
        assert lo < hi
    assert prediction_convs_tag(cpu, preds) == "int8_output"
    assert prediction_convs_tag(full, preds) == "int8" and prediction_convs_tag(spec, preds) == "fp"
    pct = with_quantized_convs(proto, spec, preds, _calib(), method="percentile", percentile=99.0, output=True)
    mm = with_quantized_convs(proto, spec, preds, _calib(), output=True)
    assert all(pct[n].input_scale <= mm[n].input_scale for n in preds)
    assert any(pct[n].input_scale < mm[n].input_scale for n in preds)
    assert all(pct[n].output_range == mm[n].output_range for n in preds)  # outputs: always min-max


def test_bad_calibration_settings_and_trt_form_are_refused(ghost_like) -> None:
    model, proto, spec = ghost_like
    preds = model.prediction_layer_names()
    with pytest.raises(ValueError, match="calibration must be one of"):
        with_quantized_convs(proto, spec, preds, _calib(), method="mse")
    with pytest.raises(ValueError, match="percentile"):
        with_quantized_convs(proto, spec, preds, _calib(), method="percentile", percentile=0)
    with pytest.raises(ValueError, match="no Conv node"):
        with_quantized_convs(proto, spec, ["head.nope"], _calib())
    cpu = with_quantized_convs(proto, spec, preds, _calib(), output=True)
    with pytest.raises(ValueError, match="TensorRT form quantizes no conv output"):
        write_qdq(proto, cpu, "trt")
    with pytest.raises(ValueError, match="output_range"):
        ConvQuant(np.ones(2), 0.1, output_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="output_range"):
        ConvQuant(np.ones(2), 0.1, output_range=(0.0, float("nan")))


def test_export_config_validates_the_setting() -> None:
    from pydantic import ValidationError

    from ghostq.core.export_config import ExportConfig, Int8Section

    assert ExportConfig().int8.cpu_prediction_convs == "int8"  # the CPU default
    assert Int8Section(cpu_prediction_convs="fp", prediction_calib="percentile").prediction_calib == "percentile"
    assert Int8Section(cpu_prediction_convs="int8_output").cpu_prediction_convs == "int8_output"
    for bad in ({"cpu_prediction_convs": "int4"}, {"prediction_calib": "mse"}, {"prediction_percentile": 101},
                {"prediction_percentile": 10}, {"cpu_prediction_convs": True}):
        with pytest.raises(ValidationError):
            Int8Section(**bad)


@pytest.fixture(scope="module")
def student():
    """A tiny detector quantized as GHOST leaves it (brevitas, FP prediction convs, tied scale groups)."""
    pytest.importorskip("brevitas")
    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.pipeline import build_student
    from ghostq.compress.quantize import FP_BITS, calibrate_activations, init_weight_scales, quantizable_layers
    from ghostq.core.compress_config import CompressConfig
    from ghostq.export.scale_groups_trace import trace_scale_groups

    torch.set_num_threads(1)
    fp = tiny_detector()
    preds = fp.prediction_layer_names()
    bits = {n: FP_BITS if n in preds else 8 for n in quantizable_layers(fold_bn(fp))}
    model, groups = build_student(fp, CompressConfig(), bits, (1, 3, SIZE, SIZE), trace_scale_groups)
    init_weight_scales(model, "max")
    calibrate_activations(model, [torch.from_numpy(b) for b in _calib()])
    return model.eval(), bits, groups


def test_cpu_int8_file_vs_quantized_torch_model(student) -> None:
    """The CPU file with 8-bit prediction convs, written from the quantized model's integer weights and scales,
    gives the torch model's scores and boxes within the rounding of the prediction convs' inputs and outputs."""
    from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized
    from ghostq.export.onnx_export import bare_model_spec
    from ghostq.export.verify import torch_reference

    student, _bits, _groups = student
    preds = student.prediction_layer_names()
    base = export_onnx(dequantized_copy(student), None, SIZE)
    spec = spec_from_quantized(student)
    assert not set(preds) & set(spec)  # GHOST's choice: the prediction convs are not in the source
    q = write_qdq(base, with_quantized_convs(base, spec, preds, _calib()), "cpu")
    x = images(4, seed=5)
    scores, boxes = ort_session(q).run(None, {"images": x})
    want_scores, want_boxes = (t.numpy() for t in torch_reference(student, bare_model_spec(student, SIZE, 3, None))(
        torch.from_numpy(x)))
    ref_scores, ref_boxes = ort_session(write_qdq(base, spec, "cpu")).run(None, {"images": x})
    d_boxes, d_ref = np.abs(boxes - want_boxes).mean(), np.abs(ref_boxes - want_boxes).mean()
    assert np.abs(scores - want_scores).max() < 0.02
    assert d_boxes / np.abs(want_boxes).mean() < 0.02
    # as close to the torch model as the CPU file with FP prediction convs (a random network amplifies every
    # rounding flip between torch and ONNX Runtime, so neither is exact; trained models: verify.json's mAP)
    assert d_boxes < 1.1 * d_ref
    assert np.abs(scores - want_scores).max() < 1.5 * np.abs(ref_scores - want_scores).max() + 1e-3


def test_checkpoint_export_quantizes_prediction_convs_only_with_calibration_images(student, tmp_path) -> None:
    """``ghostq export --model ghost/best.pt``: with --calib the CPU file's prediction convs are integer; without,
    one line says they stay as the checkpoint has them. The TensorRT form keeps GHOST's choice either way."""
    from PIL import Image

    from ghostq.detect.checkpoint import save_checkpoint
    from ghostq.export.checkpoint_export import export_checkpoint
    from ghostq.export.onnx_export import bare_model_spec

    model, bits, groups = student
    spec = bare_model_spec(model, SIZE, 3, None)
    ckpt = save_checkpoint(tmp_path / "best.pt", {
        "spec": spec.to_dict(), "classes": list(spec.classes), "model": model.state_dict(), "bits": bits,
        "scale_groups": groups, "act_bits": 8, "act_calib": "percentile"})
    folder = tmp_path / "calib"
    folder.mkdir()
    for k, im in enumerate(images(4, seed=3)):
        Image.fromarray((im.transpose(1, 2, 0) * 255).astype(np.uint8)).save(folder / f"{k}.png")
    without = export_checkpoint(ckpt, tmp_path / "a")
    assert any("--calib IMAGES_DIR" in m for m in without.messages)
    with_calib = export_checkpoint(ckpt, tmp_path / "b", calib=folder)
    assert not with_calib.messages

    def tag(result, key: str) -> str:
        return read_metadata(onnx.load(str(result.files[key])))["ghostq.prediction_convs"]

    assert tag(without, "int8_cpu") == "fp" and tag(with_calib, "int8_cpu") == "int8"
    assert tag(without, "int8") == tag(with_calib, "int8") == "fp"
    explained = explain_graph(optimized_graph(with_calib.files["int8_cpu"]))
    preds = model.prediction_layer_names()
    assert explained["ops"]["QLinearConv"]["integer"] == len(conv_nodes(export_onnx(model, None, SIZE))) - len(preds)
    assert explained["reorder"] == 0
