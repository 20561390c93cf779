"""`ghostq data synth`, `ghostq data split`, `ghostq data noise`: files and JSON written, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli import app
from ghostq.core.errors import GhostqError


def _run(*args: str):
    return CliRunner().invoke(app, ["data", *args])


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("cli")
    out, summary = tmp / "synth", tmp / "synth.json"
    result = _run(
        "synth",
        "--out",
        str(out),
        "--images",
        "3",
        "--size",
        "160",
        "--seed",
        "2",
        "--ir",
        "--val-frac",
        "0.34",
        "--json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(summary.read_text())


def test_synth_writes_the_set_and_a_summary(synth_set: tuple[Path, dict]) -> None:
    out, summary = synth_set
    coco = json.loads((out / "annotations.json").read_text())
    assert summary["images"] == len(coco["images"]) == 3
    assert summary["objects"] == len(coco["annotations"]) == sum(summary["class_counts"].values())
    assert (summary["size"], summary["seed"], summary["ir"]) == (160, 2, True)
    assert len(json.loads((out / "val.json").read_text())["images"]) == 1
    assert len(list((out / "images_ir").glob("*.png"))) == 3


def test_synth_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("mine")
    result = _run("synth", "--out", str(tmp_path), "--images", "1", "--size", "96")
    assert result.exit_code != 0 and isinstance(result.exception, GhostqError)
    assert "not empty" in str(result.exception) and "--force" in str(result.exception)
    result = _run("synth", "--out", str(tmp_path), "--images", "1", "--size", "96", "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.txt").read_text() == "mine"


def test_synth_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("synth", "--out", str(tmp_path / "s"), "--images", "0")
    assert result.exit_code == 2 and "--images" in result.output


def test_split_the_synthetic_set(synth_set: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("ghostq.detect.data.formats", reason="the dataset loaders are not there yet")
    src, _ = synth_set
    out, summary = tmp_path / "tiles", tmp_path / "split.json"
    result = _run(
        "split",
        "--format",
        "dota",
        "--root",
        str(src),
        "--out",
        str(out),
        "--tile",
        "100",
        "--overlap",
        "40",
        "--json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    s = json.loads(summary.read_text())
    assert s["source_images"] == 3 and s["tiles"] == 3 * 4
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == 12 and len(coco["annotations"]) == s["objects"]
    assert sum(a["ignore"] for a in coco["annotations"]) == s["difficult_or_ignored"]
    assert len(list((out / "images_ir").glob("*.png"))) == 12  # the loader found images_ir/
    result = _run(
        "split",
        "--format",
        "dota",
        "--root",
        str(src),
        "--out",
        str(tmp_path / "t2"),
        "--tile",
        "100",
        "--overlap",
        "100",
    )
    assert isinstance(result.exception, GhostqError) and "--overlap" in str(result.exception)


def test_noise_writes_the_record(synth_set: tuple[Path, dict], tmp_path: Path) -> None:
    src, _ = synth_set
    out, summary = tmp_path / "noisy.json", tmp_path / "noise.json"
    result = _run(
        "noise",
        "--ann",
        str(src / "annotations.json"),
        "--out",
        str(out),
        "--kind",
        "symmetric",
        "--rate",
        "0.5",
        "--seed",
        "4",
        "--json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    noisy, s = json.loads(out.read_text()), json.loads(summary.read_text())
    rec = noisy["ghostq_noise"]
    assert (rec["kind"], rec["rate"], rec["seed"]) == ("symmetric", 0.5, 4)
    assert s["changed"] == len(rec["changes"]) > 0 and s["eligible"] == len(noisy["annotations"])
    clean = json.loads((src / "annotations.json").read_text())
    changed = {c["annotation_id"] for c in rec["changes"]}
    old = {a["id"]: a["category_id"] for a in clean["annotations"]}
    assert changed == {a["id"] for a in noisy["annotations"] if a["category_id"] != old[a["id"]]}


def test_noise_with_a_mapping_file(synth_set: tuple[Path, dict], tmp_path: Path) -> None:
    src, _ = synth_set
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"plane": "ship", "ship": ["plane", "storage-tank"]}))
    out = tmp_path / "noisy.json"
    result = _run(
        "noise",
        "--ann",
        str(src / "annotations.json"),
        "--out",
        str(out),
        "--kind",
        "asymmetric",
        "--rate",
        "1",
        "--map",
        str(mapping),
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())["ghostq_noise"]
    assert {(c["old_category_id"], c["new_category_id"]) for c in rec["changes"]} <= {(3, 4), (4, 3), (4, 5)}
    assert rec["mapping"] == {"plane": ["ship"], "ship": ["plane", "storage-tank"]}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--kind", "sideways", "--rate", "0.1"], "--kind"),
        (["--kind", "drop", "--rate", "1.5"], "--rate"),
        (["--kind", "drop", "--rate", "-0.5"], "--rate"),
    ],
)
def test_noise_usage_errors(synth_set: tuple[Path, dict], tmp_path: Path, args: list, needle: str) -> None:
    src, _ = synth_set
    result = _run("noise", "--ann", str(src / "annotations.json"), "--out", str(tmp_path / "o.json"), *args)
    assert result.exit_code == 2 and needle in result.output
    assert not (tmp_path / "o.json").exists()


def test_noise_missing_file_and_same_output(synth_set: tuple[Path, dict], tmp_path: Path) -> None:
    src, _ = synth_set
    result = _run(
        "noise",
        "--ann",
        str(tmp_path / "none.json"),
        "--out",
        str(tmp_path / "o.json"),
        "--kind",
        "drop",
        "--rate",
        "0.1",
    )
    assert result.exit_code == 2 and "--ann" in result.output
    ann = src / "annotations.json"
    result = _run("noise", "--ann", str(ann), "--out", str(ann), "--kind", "drop", "--rate", "0.1")
    assert isinstance(result.exception, GhostqError) and "must differ" in str(result.exception)


def test_real_entry_point_prints_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ghostq",
            "data",
            "noise",
            "--ann",
            str(bad),
            "--out",
            str(tmp_path / "o.json"),
            "--kind",
            "drop",
            "--rate",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.json:1: not valid JSON" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.json").exists()
