"""`ghostq eval --gt --dets`: the table, the JSON file, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ghostq.cli import main

# car: GT on images 1 and 2, detections FP (0.9, image 2 elsewhere) then TP (0.8) then TP (0.7):
# precision 0, 1/2, 2/3 at recall 0, 1/2, 1. VOC12 envelope: 2/3 on (0, 1] -> 2/3.
# plane: one GT, found -> 1. ship: no GT -> null. mAP50 = (2/3 + 1) / 2 = 5/6.
GT = {
    "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}, {"id": 2}],
    "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "plane"}, {"id": 3, "name": "ship"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [40, 40, 20, 20], "area": 400, "iscrowd": 0},
    ],
}
DETS = [
    {"image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.9},
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.7},
    {"image_id": 1, "category_id": 2, "bbox": [40, 40, 20, 20], "score": 0.6},
]


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ghostq", "eval", *args])
    try:
        main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(GT))
    dets.write_text(json.dumps(DETS))
    return gt, dets


def test_voc12_table_and_json(files, tmp_path: Path, monkeypatch, capsys) -> None:
    gt, dets = files
    out = tmp_path / "res" / "voc.json"
    assert (
        _run(monkeypatch, "--gt", str(gt), "--dets", str(dets), "--metric", "voc12", "--json", str(out)) == 0
    )
    res = json.loads(out.read_text())
    assert set(res) == {"metric", "mAP50", "per_class", "num_images", "num_dets"}  # no mAP50_95 for VOC
    assert res["metric"] == "voc12"
    assert res["mAP50"] == pytest.approx(5 / 6)
    assert res["per_class"] == {
        "car": {"AP50": pytest.approx(2 / 3), "num_gt": 2, "num_dets": 3},
        "plane": {"AP50": pytest.approx(1.0), "num_gt": 1, "num_dets": 1},
        "ship": {"AP50": None, "num_gt": 0, "num_dets": 0},
    }
    assert (res["num_images"], res["num_dets"]) == (2, 4)
    text = capsys.readouterr().err
    assert "0.6667" in text and "0.8333" in text and "n/a" in text


def test_coco_json(files, tmp_path: Path, monkeypatch) -> None:
    gt, dets = files
    out = tmp_path / "coco.json"
    assert _run(monkeypatch, "--gt", str(gt), "--dets", str(dets), "--json", str(out)) == 0  # coco by default
    res = json.loads(out.read_text())
    assert res["metric"] == "coco"
    assert set(res["per_class"]["car"]) == {"AP50", "AP50_95"}
    assert res["per_class"]["ship"] == {"AP50": None, "AP50_95": None}
    # COCO's 101-point interpolation of the same curve: precision 2/3 for recall up to 1 -> 2/3.
    assert res["per_class"]["car"]["AP50"] == pytest.approx(2 / 3)
    assert res["mAP50"] == pytest.approx(5 / 6)
    assert 0 < res["mAP50_95"] <= res["mAP50"]


def test_bad_dets_exit_2_one_line(files, tmp_path: Path, monkeypatch, capsys) -> None:
    gt, dets = files
    bad = [*DETS, {"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 0.1}]
    dets.write_text(json.dumps(bad))
    out = tmp_path / "never.json"
    assert _run(monkeypatch, "--gt", str(gt), "--dets", str(dets), "--json", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"{dets}: entry 4: unknown category_id 7" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "map"], "unknown --metric 'map'"),
        ([], "needs --gt GT.json and --dets DETS.json, or CONFIG --model PATH"),
    ],
)
def test_usage_errors_exit_2(files, monkeypatch, capsys, args: list[str], message: str) -> None:
    gt, _ = files
    assert _run(monkeypatch, "--gt", str(gt), *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
