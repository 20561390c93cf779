"""`ghostq run` end to end on a tiny synthetic run: every stage, the report's rows, and skipping on rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.core.config import load_config
from ghostq.core.errors import GhostqError
from ghostq.deploy.report import TRT_NOTE, collect_rows
from ghostq.stages.run import run_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_writes_every_stage_and_a_filled_report(tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "configs" / "smoke.yaml",
        [
            f"run.root={tmp_path}",
            "data.synthetic.images=12",
            "data.img_size=96",
            "data.synthetic.size=96",
            "train.batch_size=4",
            "train.threads=1",
            "compress.epochs=1",
            "compress.ptq.batches=1",
            "bench.iters=3",
            "bench.warmup=1",
            "bench.samples=2",
        ],
    )
    said: list[str] = []
    summary = run_pipeline(cfg, say=said.append)
    assert said[0] == "[1/5] train" and said[-1] == "[5/5] report"
    assert any(line.startswith("[4/5] bench") for line in said)
    run = tmp_path / "smoke"
    assert summary["stages"] == {s: "done" for s in ("train", "compress", "export", "bench", "report")}
    manifest = json.loads((run / "manifest.json").read_text())
    assert {s: manifest["stages"][s]["status"] for s in ("train", "compress", "export", "bench")} == dict.fromkeys(
        ("train", "compress", "export", "bench"), "done"
    )
    rows = {r["name"]: r for r in collect_rows(run)}
    assert set(rows) >= {
        "FP32 (PyTorch)",
        "FP32 ONNX",
        "FP16 ONNX",
        "INT8 ONNX (TensorRT Q/DQ)",
        "INT8 ONNX (CPU, u8s8)",
    }
    for name in ("FP32 ONNX", "FP16 ONNX", "INT8 ONNX (TensorRT Q/DQ)", "INT8 ONNX (CPU, u8s8)"):
        row = rows[name]
        assert 0.0 <= row["mAP50"] <= 1.0 and row["size_mb"] > 0 and row["bops_g"] > 0
        assert row["latency"]["1"]["p50_ms"] > 0 and row["latency"]["4"]["p99_ms"] > 0
    assert rows["INT8 ONNX (CPU, u8s8)"]["size_mb"] < rows["FP32 ONNX"]["size_mb"] / 3
    report = (run / "report.md").read_text()
    assert TRT_NOTE in report and "(TensorRT absent)" in report
    assert (run / "report_latency.png").is_file() and (run / "report_map_vs_latency.png").is_file()
    assert len(list((run / "predict").glob("*.png"))) == 2
    again = run_pipeline(cfg, say=lambda _: None)
    for stage in ("train", "compress", "export", "bench"):
        assert again["stages"][stage] == "skipped (current)", stage
    changed = cfg.model_copy(update={"export": cfg.export.model_copy(update={"fp16": False})})
    finished = (run / "manifest.json").read_text()
    with pytest.raises(GhostqError, match=r"finished stage\(s\) export were built with: export.fp16 true -> false\. "
                       r"Rerun with --force"):
        run_pipeline(changed, say=lambda _: None)
    assert (run / "manifest.json").read_text() == finished  # stopped before any work
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.md").read_text().splitlines()[:4] == report.splitlines()[:4]
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert bad.exit_code != 0
