"""NWPU VHR-10 end to end on real data (../shared/nwpu_vhr10): 1 epoch on 16 images, evaluated with AP by object
size; the recorded split is the same for two runs with the same seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ghostq.cli import main

REPO = Path(__file__).resolve().parents[1]
NWPU = REPO.parent / "shared" / "nwpu_vhr10"
pytestmark = pytest.mark.realdata


@pytest.fixture
def nwpu() -> Path:
    if not NWPU.is_dir():
        pytest.skip(f"NWPU VHR-10 not found at {NWPU} (realdata tests need ../shared/nwpu_vhr10)")
    return NWPU


def _ghostq(*args: str) -> None:
    argv, sys.argv = sys.argv, ["ghostq", *args]
    try:
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code in (0, None)
    finally:
        sys.argv = argv


def _tiny(root: Path, nwpu: Path) -> list[str]:
    return [str(REPO / "configs" / "nwpu.yaml"), f"data.root={nwpu}", f"run.root={root}", "data.max_images=16",
            "data.img_size=128", "train.epochs=1", "train.batch_size=4", "train.threads=1", "train.val_every=1"]


def test_nwpu_trains_one_epoch_and_reports_ap_by_size(nwpu: Path, tmp_path: Path) -> None:
    _ghostq("train", *_tiny(tmp_path, nwpu))
    best = tmp_path / "nwpu" / "fp" / "best.pt"
    assert best.is_file()
    out = tmp_path / "eval.json"
    _ghostq("eval", *_tiny(tmp_path, nwpu), "--model", str(best), "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["by_size"]) == {"small", "medium", "large"}
    shares = [result["by_size"][k]["gt_share"] for k in ("small", "medium", "large")]
    assert all(0 <= s <= 1 for s in shares) and sum(shares) >= 0.99  # every counted object is in a bucket
    split = json.loads((tmp_path / "nwpu" / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 16 and not set(split["train"]) & set(split["val"])


def test_split_is_identical_across_runs_with_the_same_seed(nwpu: Path, tmp_path: Path) -> None:
    from ghostq.detect.data.prepare import prepare_data, write_split
    from ghostq.stages.config import load_config

    records = []
    for k in range(2):
        cfg = load_config(REPO / "configs" / "nwpu.yaml", [f"data.root={nwpu}", f"run.root={tmp_path / str(k)}"])
        splits = prepare_data(cfg)
        records.append(write_split(tmp_path / f"split{k}.json", splits, cfg.run.seed, cfg.data.val_frac))
    assert (tmp_path / "split0.json").read_bytes() == (tmp_path / "split1.json").read_bytes()
    assert len(records[0]["train"]) + len(records[0]["val"]) == 640  # 520 positive + 120 negative images
    other = load_config(REPO / "configs" / "nwpu.yaml", [f"data.root={nwpu}", "run.seed=1"])
    assert split_sha(prepare_data(other), other) != records[0]["sha256"]


def split_sha(splits, cfg) -> str:  # noqa: ANN001
    from ghostq.detect.data.prepare import split_record

    return split_record(splits, cfg.run.seed, cfg.data.val_frac)["sha256"]
