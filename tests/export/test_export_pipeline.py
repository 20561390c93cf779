"""`ghostq export CONFIG`: every file, verify.json, trtexec.sh, the stage skip; with the LogitClip in the graph."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
import torch
from export_helpers import calibrate_norms
from typer.testing import CliRunner

from ghostq.detect.builders import build_model_from_config
from ghostq.detect.checkpoint import save_checkpoint
from ghostq.export.onnx_export import read_metadata
from ghostq.export.verify import ort_session

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"]


def _overrides(root: Path) -> list[str]:
    return [f"run.root={root}", "run.name=x", "data.synthetic.images=10", "data.img_size=64",
            "data.synthetic.size=64", "loss.logit_clip.bound=2.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with an (untrained, BN-calibrated) checkpoint at fp/best.pt, exported once with ONNX NMS."""
    from ghostq.cli import export_commands
    from ghostq.cli.app import app

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cfg, _ = export_commands.load_export_config(REPO / "configs" / "smoke.yaml", _overrides(root))
    torch.manual_seed(0)
    model = calibrate_norms(build_model_from_config(cfg, len(CLASSES)), seed=0)
    save_checkpoint(root / "x" / "fp" / "best.pt",
                    {"model": model.state_dict(), "config": cfg.model_dump(mode="json"), "classes": CLASSES})
    args = ["export", str(REPO / "configs" / "smoke.yaml"), *_overrides(root), "export.int8.calib_batches=1",
            "export.tensorrt.enabled=true", "--nms", "onnx"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return root / "x" / "export", args, res.output


def test_files_and_verify(run) -> None:
    out, _args, output = run
    for name in ("fp32", "fp16", "int8", "int8_cpu", "fp32_nms", "fp16_nms", "int8_nms", "int8_cpu_nms"):
        assert (out / f"model_{name}.onnx").is_file(), name
    verify = json.loads((out / "verify.json").read_text())
    files = verify["files"]
    assert all(f["checker"] == "ok" for f in files.values())
    fp32 = files["model_fp32.onnx"]
    assert fp32["max_abs_diff"]["scores"] < 1e-4 and fp32["max_abs_diff"]["boxes_per_stride"] < 1e-4
    assert fp32["mAP50_onnx"] == pytest.approx(fp32["mAP50_torch"], abs=1e-6)
    assert files["model_fp16.onnx"]["max_abs_diff"]["scores"] < 1e-2
    assert files["model_int8.onnx"]["lint"] == {"passed": True, "violations": []}
    assert "lint" not in files["model_int8_cpu.onnx"]  # the TensorRT rules do not apply to the CPU form
    for f in files.values():
        assert 0.0 <= f["mAP50_onnx"] <= 1.0 and 0.0 <= f["mAP50_torch"] <= 1.0
    assert verify["int8_source"] == "ptq" and "LogitClip" in verify["logit_clip"]
    # the CPU form's prediction convs are integer by default (export.int8.cpu_prediction_convs: int8), the
    # TensorRT form keeps the source's choice
    assert read_metadata(onnx.load(str(out / "model_int8_cpu.onnx")))["ghostq.prediction_convs"] == "int8"
    assert read_metadata(onnx.load(str(out / "model_int8.onnx")))["ghostq.prediction_convs"] == "fp"
    scales = json.loads((out / "int8_scales.json").read_text())["cpu_prediction_convs"]
    assert sorted(scales) == sorted(f"head.{k}_preds.{i}" for k in ("cls", "box") for i in range(3))
    assert all(r["input_scale"] > 0 and r["output_range"] is None for r in scales.values())  # W8A8, float out
    assert "verify.json" in output  # the table


def test_logit_clip_is_fused(run) -> None:
    out = run[0]
    meta = read_metadata(onnx.load(str(out / "model_fp32.onnx")))
    assert "bound=2.0" in meta["ghostq.logit_clip"] and "inf" in meta["ghostq.logit_clip"]
    assert json.loads(meta["ghostq.classes"]) == CLASSES
    scores, _ = ort_session(out / "model_fp32.onnx").run(None, {"images": torch.rand(2, 3, 64, 64).numpy()})
    assert scores.max() <= 1 / (1 + math.exp(-2.0)) + 1e-6  # sigmoid of a logit clipped to |z| <= 2


def test_trtexec_and_tensorrt_hint(run) -> None:
    out, _args, output = run
    script = (out / "trtexec.sh").read_text()
    assert "--onnx=model_int8.onnx" in script and "--int8" in script and "--minShapes=images:1x3x64x64" in script
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        hint = [ln for ln in output.splitlines() if "TensorRT is not installed" in ln]
        assert len(hint) == 1 and "pip install tensorrt" in hint[0]  # without TensorRT: one line


def test_rerun_is_skipped_then_forced(run) -> None:
    from ghostq.cli.app import app

    out, args, _ = run
    before = (out / "model_int8.onnx").stat().st_mtime_ns
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "is current" in res.output
    assert (out / "model_int8.onnx").stat().st_mtime_ns == before
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["stages"]["export"]["status"] == "done"
    assert "export/model_int8.onnx" in manifest["stages"]["export"]["artifacts"]


def test_config_typo_fails_before_work(tmp_path) -> None:
    from ghostq.cli.app import app
    from ghostq.core.errors import ConfigError

    res = CliRunner().invoke(app, ["export", str(REPO / "configs" / "smoke.yaml"), f"run.root={tmp_path}",
                                   "export.nms.knd=onnx"])
    assert isinstance(res.exception, ConfigError) and "export.nms.knd: unknown key" in str(res.exception)
    res = CliRunner().invoke(app, ["export", str(REPO / "configs" / "smoke.yaml"), f"run.root={tmp_path}"])
    assert "checkpoint not found" in str(res.exception)
