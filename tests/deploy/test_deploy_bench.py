"""Benchmark numbers, interleaved comparison, machine record, the `ghostq bench` command (tiny models, few
iterations; nothing here asserts a timing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ghostq.core.errors import GhostqError
from ghostq.deploy.bench import BenchSettings, bench_model, compare, latency_stats, markdown
from ghostq.deploy.machine import cpu_model, library_versions, machine_info, memory_mb

FAST = BenchSettings(batches=(1, 2), warmup=1, iters=3, threads=1)


def test_latency_stats_on_known_values() -> None:
    times = list(range(1, 101))  # 1..100 ms
    s = latency_stats(times, batch=4)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01) and s["mean_ms"] == pytest.approx(50.5)
    assert s["std_ms"] == pytest.approx(np.std(times, ddof=1)) and (s["min_ms"], s["max_ms"]) == (1, 100)
    assert s["throughput_ips"] == pytest.approx(4 * 1000 / 50.5) and s["iters"] == 100
    assert latency_stats([2.0], batch=1)["std_ms"] == 0.0


def test_settings_are_validated() -> None:
    with pytest.raises(GhostqError, match="batch sizes"):
        BenchSettings(batches=(0,))
    with pytest.raises(GhostqError, match="iters"):
        BenchSettings(iters=0)
    assert BenchSettings().resolved_threads() >= 1


def test_bench_model_records_every_batch_and_the_machine(blob_onnx: Path) -> None:
    r = bench_model(blob_onnx, "ort-cpu", FAST)
    assert r["kind"] == "bench" and set(r["batches"]) == {"1", "2"} and r["input"] == [3, 64, 64]
    for b in ("1", "2"):
        e = r["batches"][b]
        assert len(e["times_ms"]) == 3 and e["iters"] == 3
        assert e["p50_ms"] <= e["p99_ms"] <= e["max_ms"] and e["peak_rss_mb"] > 0
    assert r["runtime"]["threads"] == 1 and r["settings"]["threads"] == 1
    assert r["machine"]["versions"]["onnxruntime"] and r["machine"]["cpu"]
    json.dumps(r, allow_nan=False)  # writable as strict JSON
    table = markdown(r)
    assert table.count("| blob.onnx | ort-cpu (fp32) |") == 2 and "Machine:" in table
    assert "CPU instruction sets:" in table


def test_compare_interleaves_and_gives_the_ratio(blob_onnx: Path, tmp_path: Path) -> None:
    other = tmp_path / "copy" / "blob.onnx"  # same file name: labels fall back to full paths
    other.parent.mkdir()
    shutil.copy(blob_onnx, other)
    r = compare([blob_onnx, other], "ort-cpu", BenchSettings(batches=(1,), warmup=1, iters=4, threads=1))
    a, b = r["models"]
    assert a == str(blob_onnx) and b == str(other)
    stats = r["batches"]["1"]["models"]
    assert len(stats[a]["times_ms"]) == len(stats[b]["times_ms"]) == 4
    assert r["ratio"] == pytest.approx(stats[a]["p50_ms"] / stats[b]["p50_ms"])
    assert r["ratios"]["1"][b] == r["ratio"] and "p50 latency of" in r["ratio_definition"]
    assert "Batch 1: p50(" in markdown(r)
    with pytest.raises(GhostqError, match="at least two"):
        compare([blob_onnx], "ort-cpu", FAST)


def test_compare_refuses_models_with_different_inputs(blob_onnx: Path, nms_onnx: Path) -> None:
    with pytest.raises(GhostqError, match="different inputs"):
        compare([blob_onnx, nms_onnx], "ort-cpu", FAST)


def test_machine_record() -> None:
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n"
    assert cpu_model(x86) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n"
    assert cpu_model(arm) == "ARM implementer 0x41 part 0xd42"
    versions = library_versions()
    assert "numpy" in versions and "python" in versions
    info = machine_info()
    assert info["cpu_usable"] >= 1 and isinstance(info["gpus"], list)
    assert memory_mb()["peak_rss_mb"] >= memory_mb()["rss_mb"] > 0


def test_cli_bench_and_compare(blob_onnx: Path, tmp_path: Path) -> None:
    from ghostq.cli import bench_commands  # noqa: F401  (registers `bench` on the app)
    from ghostq.cli.app import app

    runner = CliRunner()
    out = tmp_path / "b.json"
    res = runner.invoke(
        app,
        [
            "bench",
            "--model",
            str(blob_onnx),
            "--batch",
            "1,2",
            "--threads",
            "1",
            "--warmup",
            "1",
            "--iters",
            "2",
            "--json",
            str(out),
            "--md",
            str(tmp_path / "b.md"),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data["batches"]) == {"1", "2"} and data["settings"]["iters"] == 2
    assert "| blob.onnx |" in (tmp_path / "b.md").read_text()
    other = tmp_path / "other.onnx"
    shutil.copy(blob_onnx, other)
    res = runner.invoke(
        app,
        [
            "bench",
            "--compare",
            str(blob_onnx),
            str(other),
            "--backend",
            "ort-cpu",
            "--batch",
            "1",
            "--threads",
            "1",
            "--warmup",
            "0",
            "--iters",
            "2",
            "--json",
            str(tmp_path / "c.json"),
            "--plot",
            str(tmp_path / "c.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert cmp["models"] == ["blob.onnx", "other.onnx"] and cmp["ratio"] > 0
    assert all(r["spinning"] is False for r in cmp["runtimes"])  # interleaved sessions must not spin
    assert Image.open(tmp_path / "c.png").size[0] > 100
    for args, message in (
        (["bench"], "needs --model"),
        (["bench", "--compare", str(blob_onnx)], "two or more models"),
        (["bench", "--model", str(blob_onnx), "--batch", "1,x"], "comma-separated integers"),
        (["bench", str(blob_onnx)], "give one model with --model"),
    ):
        res = runner.invoke(app, args)
        assert res.exit_code != 0 and message in str(res.exception), (args, res.exception)
