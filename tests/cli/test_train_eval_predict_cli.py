"""The train -> eval -> predict commands end to end on a tiny synthetic run, and a 4-channel VEDAI step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.detect.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic.images=12",
    "data.img_size=96",
    "data.synthetic.size=96",
    "train.batch_size=4",
    "train.threads=1",
]


def _ok(result) -> None:  # noqa: ANN001
    assert result.exit_code == 0, result.output


def test_train_eval_predict(tmp_path: Path) -> None:
    runner = CliRunner()
    overrides = [f"run.root={tmp_path}", *TINY]
    _ok(runner.invoke(app, ["train", str(REPO / "configs" / "smoke.yaml"), *overrides]))
    best = tmp_path / "smoke" / "fp" / "best.pt"
    assert best.is_file()
    again = runner.invoke(app, ["train", str(REPO / "configs" / "smoke.yaml"), *overrides])
    _ok(again)
    assert "is current" in " ".join(again.output.split())
    out = tmp_path / "eval.json"
    _ok(
        runner.invoke(
            app,
            [
                "eval",
                str(REPO / "configs" / "smoke.yaml"),
                *overrides,
                "--model",
                str(best),
                "--metric",
                "voc07",
                "--json",
                str(out),
            ],
        )
    )
    result = json.loads(out.read_text())
    assert result["metric"] == "voc07" and 0.0 <= result["mAP50"] <= 1.0
    assert set(result["per_class"]) == {"small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"}
    images = sorted((tmp_path / "_data").glob("*/images/*.png"))[:2]
    _ok(
        runner.invoke(
            app,
            [
                "predict",
                *map(str, images),
                "--model",
                str(best),
                "--out",
                str(tmp_path / "pred"),
                "--tile",
                "64",
                "--overlap",
                "16",
            ],
        )
    )
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == sorted(p.name for p in images)
    assert isinstance(json.loads((tmp_path / "pred" / "detections.json").read_text()), list)


def test_eval_mode_errors() -> None:
    result = CliRunner().invoke(app, ["eval", "--model", "x.pt"])
    assert result.exit_code != 0


@pytest.mark.realdata
def test_vedai_four_channel_model_trains_a_step(tmp_path: Path, rs_samples: Path) -> None:
    overrides = [
        f"run.root={tmp_path}",
        f"data.root={rs_samples / 'vedai'}",
        "data.val_frac=0.5",
        "data.img_size=128",
        "train.epochs=1",
        "train.batch_size=1",
        "train.threads=1",
        "train.augment.mosaic=0",
    ]
    _ok(CliRunner().invoke(app, ["train", str(REPO / "configs" / "vedai.yaml"), *overrides]))
    ckpt = load_checkpoint(tmp_path / "vedai" / "fp" / "last.pt")
    first_conv = next(v for k, v in ckpt["model"].items() if k.endswith("weight") and v.ndim == 4)
    assert first_conv.shape[1] == 4  # RGB + infrared
    metrics = json.loads((tmp_path / "vedai" / "fp" / "metrics.json").read_text())
    assert metrics["epochs_done"] == 1 and metrics["num_train"] == 1 and metrics["num_val"] == 1
    assert all(v == v for v in (metrics["history"][0]["loss"],))  # finite, not NaN


def test_config_typo_is_one_line_error_before_any_work(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "ghostq",
        "train",
        str(REPO / "configs" / "smoke.yaml"),
        "train.epoch=3",
        f"run.root={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "smoke.yaml: train.epoch: unknown key" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was generated or written
