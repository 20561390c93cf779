"""benchmarks/nwpu_compress.py on a tiny synthetic run: rows made from the run's FP checkpoint and scored with size
and bootstrap intervals, finished rows skipped, a row of other settings refused, the budget respected, the
markdown table and the size-vs-mAP chart written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ghostq.core.compress_config import CompressConfig
from ghostq.detect.bootstrap import map_difference
from ghostq.stages.compress import compress
from ghostq.stages.config import load_config
from ghostq.stages.train import train

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.batch_size=4",
        "train.threads=1", "compress.epochs=1", "compress.batch_size=4", "compress.ptq.batches=1"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_nwpu_compress", REPO / "benchmarks" / "nwpu_compress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={root}", "run.name=n", *TINY])
    train(cfg, show_progress=False)
    ghost = CompressConfig(**{**cfg.compress.model_dump(), "method": "ghost", "hq": {"mode": "budget"},
                              "distill": {"scm": "off"}})
    compress(cfg, ghost, max_steps=1, show_progress=False)  # the run's own GHOST row (ghost/best.pt)
    return cfg, root / "n"


def test_row_configs_follow_the_run_compress_section(bench, tiny_run) -> None:
    cfg, _ = tiny_run
    rows = dict(bench.compress_rows())
    assert list(rows) == list(bench.ORDER)
    qat = bench.row_config(cfg, rows["qat_w4a8"]).compress
    assert (qat.method, qat.weight_bits, qat.epochs, qat.ptq.batches) == ("qat", 4, 1, 1)
    rule = bench.row_config(cfg, rows["ghost_rule"]).compress
    assert (rule.method, rule.hq.mode, rule.hq.threshold, rule.batch_size) == ("ghost", "rule", 0.1, 4)
    off = bench.row_config(cfg, rows["ghost_w4budget_off"]).compress
    assert (off.hq.mode, off.distill.scm, off.distill.w_kd) == ("budget", "off", cfg.compress.distill.w_kd)


def test_expected_seconds_grows_for_the_first_ghost_row(bench) -> None:
    assert bench.expected_seconds("qat_w4a8", {"ptq_w8a8": 30.0}) == 0.0
    assert bench.expected_seconds("qat_w4a8", {"ptq_w8a8": 30.0}, prior_s=480.0) == 480.0
    assert bench.expected_seconds("ptq_w8a8", {}, prior_s=480.0) == 0.0
    assert bench.expected_seconds("qat_w8a8", {"ptq_w8a8": 30.0, "qat_w4a8": 100.0}) == 100.0
    assert bench.expected_seconds("ghost_rule", {"qat_w4a8": 100.0, "qat_w8a8": 80.0}) == 150.0
    assert bench.expected_seconds("ghost_w4budget_off", {"qat_w4a8": 100.0, "ghost_rule": 120.0}) == 120.0


def test_rows_scored_resumed_refused_and_reported(bench, tiny_run, tmp_path: Path) -> None:
    cfg, run = tiny_run
    out = tmp_path / "rows"
    seen = []
    done = bench.run_rows(cfg, run, out, ["ptq_w8a8", "qat_w4a8"], max_steps=1, on_row=lambda r: seen.append(set(r)))
    rows = done["rows"]
    assert list(rows) == ["fp32", "ghost_w4budget", "ptq_w8a8", "qat_w4a8"] and seen[-1] == set(rows)
    for r in rows.values():
        assert 0.0 <= r["mAP50"] <= 1.0 and set(r["by_size"]) == {"small", "medium", "large"}
    assert rows["ptq_w8a8"]["size_mb"] < rows["fp32"]["size_mb"] / 3
    assert rows["qat_w4a8"]["avg_weight_bits"] < rows["ptq_w8a8"]["avg_weight_bits"] < 32
    assert (out / "qat_w4a8" / "best.pt").is_file() and (out / "qat_w4a8" / "bits.json").is_file()

    stamp = (out / "qat_w4a8" / "row.json").stat().st_mtime_ns
    again = bench.run_rows(cfg, run, out, ["ptq_w8a8", "qat_w4a8"], max_steps=1)
    assert (out / "qat_w4a8" / "row.json").stat().st_mtime_ns == stamp  # finished: kept, not redone
    assert again["rows"]["qat_w4a8"]["mAP50"] == rows["qat_w4a8"]["mAP50"]
    with pytest.raises(SystemExit, match=r"row\.json: this row was made with another max_steps"):
        bench.run_rows(cfg, run, out, ["qat_w4a8"], max_steps=2)
    budget = bench.run_rows(cfg, run, out, ["qat_w8a8"], max_steps=1, budget_s=0.0)
    assert "qat_w8a8" not in budget["rows"] and budget["not_run"]["qat_w8a8"].startswith("budget")

    diffs = bench.differences(bench.prepare_data(cfg).val_coco(), rows, draws=20)
    assert {"qat_w4a8 - fp32", "ptq_w8a8 - fp32", "ghost_w4budget - fp32", "ghost_w4budget - qat_w4a8"} <= set(diffs)
    gt = bench.prepare_data(cfg).val_coco()
    same = map_difference(gt, rows["qat_w4a8"]["dets"], rows["ghost_w4budget"]["dets"], "mAP50_95", draws=20)
    assert diffs["ghost_w4budget - qat_w4a8"]["mAP50_95"] == same  # the shared function's figures, reused draws
    for d in diffs.values():
        lo, hi = d["mAP50"]["ci"]
        assert lo <= d["mAP50"]["diff"] + 1e-12 and d["mAP50"]["diff"] <= hi + 1e-12
    g = bench.goals(diffs)
    assert g["ghost_w4_above_qat_w4a8_beyond_ci"]["met"] == (diffs["ghost_w4budget - qat_w4a8"]["mAP50"]["ci"][0] > 0)
    assert g["qat_w8a8_within_0.5pt_of_fp32"] is None  # not made: not claimed
    result = {**done, "differences": diffs, "goals": g, "not_run": budget["not_run"]}
    md = bench.markdown(result)
    assert "| qat_w4a8 |" in md and "ghost_w4budget - qat_w4a8" in md and "qat_w8a8: not run (budget" in md
    bench.plot(result, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check = bench.nwpu_json_check(rows, tmp_path / "absent.json")
    assert check == {"found": False}
    (tmp_path / "nwpu.json").write_text(json.dumps({"rows": {"fp32_torch": {"mAP50": rows["fp32"]["mAP50"]}}}))
    assert bench.nwpu_json_check(rows, tmp_path / "nwpu.json")["fp32"]["agrees"]
