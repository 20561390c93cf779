"""`ghostq data convert` and `ghostq data check`: exit codes, JSON written, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.core.errors import GhostqError
from ghostq.detect.data.formats.dota_writer import write_dota_labels

POLYS = np.array(
    [[2, 2, 12, 2, 12, 8, 2, 8], [20, 20, 30, 20, 30, 28, 20, 28], [5, 5, 9, 5, 9, 9, 5, 9]], float
)


def _dota(root: Path, stems: tuple[str, ...] = ("a", "b"), with_images: tuple[str, ...] = ("a", "b")) -> Path:
    for stem in stems:
        write_dota_labels(
            root / f"labelTxt/{stem}.txt", POLYS, ["plane", "ship", "plane"], [False, False, True]
        )
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem in with_images:
        Image.new("RGB", (40, 32)).save(root / f"images/{stem}.png")
    return root


def _run(*args: str):
    return CliRunner().invoke(app, ["data", *args])


def _ghostq(*args: str) -> subprocess.CompletedProcess:
    """The real entry point (ghostq.cli.main), for exit codes and the one-line error."""
    return subprocess.run(
        [sys.executable, "-m", "ghostq", "data", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_convert_writes_coco_and_a_summary(tmp_path):
    root = _dota(tmp_path / "ds")
    out, summary = tmp_path / "out/ann.json", tmp_path / "summary.json"
    result = _run(
        "convert", "--format", "dota", "--root", str(root), "--out", str(out), "--json", str(summary)
    )
    assert result.exit_code == 0, result.output
    coco = json.loads(out.read_text())
    assert [im["file_name"] for im in coco["images"]] == ["images/a.png", "images/b.png"]
    assert len(coco["annotations"]) == 6
    s = json.loads(summary.read_text())
    assert (s["images"], s["objects"], s["skipped"]) == (2, 6, 0)
    assert (
        s["per_class"]["plane"] == 4
        and s["per_class"]["ship"] == 2
        and s["difficult_per_class"]["plane"] == 2
    )
    assert "plane" in result.output and "images: 2" in result.output


def test_convert_missing_images_fails_and_skip_missing_converts_the_rest(tmp_path):
    root = _dota(tmp_path / "ds", stems=("a", "b", "c"), with_images=("a",))
    out = tmp_path / "ann.json"
    result = _run("convert", "-f", "dota", "--root", str(root), "--out", str(out))
    assert isinstance(result.exception, GhostqError) and not out.exists()
    assert "2 of 3 images named by the annotations are missing" in str(result.exception)
    assert "images/b.png" in str(result.exception) and "images/c.png" in str(result.exception)
    out.write_text("previous")  # a failed conversion leaves the previous file alone
    result = _run("convert", "-f", "dota", "--root", str(root), "--out", str(out))
    assert out.read_text() == "previous"
    result = _run("convert", "-f", "dota", "--root", str(root), "--out", str(out), "--skip-missing")
    assert result.exit_code == 0, result.output
    assert [im["file_name"] for im in json.loads(out.read_text())["images"]] == ["images/a.png"]
    assert "skipped 2 images that are missing" in " ".join(result.output.split())


def test_check_clean_dataset_exits_0_and_writes_empty_problem_list(tmp_path):
    root = _dota(tmp_path / "ds")
    report = tmp_path / "check.json"
    result = _run("check", "--format", "dota", "--root", str(root), "--json", str(report))
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text()) == {
        "format": "dota",
        "root": str(root),
        "errors": 0,
        "warnings": 0,
        "problems": [],
    }
    assert "0 errors, 0 warnings" in result.output


def test_check_reports_every_problem_and_exits_1(tmp_path):
    root = _dota(tmp_path / "ds", stems=("a", "b", "c"), with_images=("a", "b"))
    ann = root / "labelTxt/a.txt"
    ann.write_text(ann.read_text() + "1 2 3 4 5 6 7 8 blimp 0\n2 2 12 2 12 8 2 8 plane 0\n1 2\n")
    report = tmp_path / "check.json"
    result = _run("check", "--format", "dota", "--root", str(root), "--json", str(report))
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert (data["errors"], data["warnings"]) == (3, 1)
    got = {
        (p["severity"], Path(p["path"]).name, p["line"], p["message"].split(":")[0]) for p in data["problems"]
    }
    assert got == {
        ("error", "a.txt", 6, "unknown class 'blimp' (expected one of"),
        ("warning", "a.txt", 7, "duplicate plane box"),
        ("error", "a.txt", 8, "expected 10 fields (x1 y1 x2 y2 x3 y3 x4 y4 class difficult), found 2"),
        ("error", "c.txt", None, "annotation without image"),
    }
    assert "3 errors, 1 warnings" in result.output


def test_check_warnings_only_exits_0(tmp_path):
    root = _dota(tmp_path / "ds")
    ann = root / "labelTxt/a.txt"
    ann.write_text(ann.read_text() + "2 2 12 2 12 8 2 8 plane 0\n")
    result = _run("check", "--format", "dota", "--root", str(root))
    assert result.exit_code == 0 and "0 errors, 1 warnings" in result.output


def test_format_specific_options_are_refused_for_other_formats(tmp_path):
    root = _dota(tmp_path / "ds")
    result = _run(
        "convert", "-f", "dota", "--root", str(root), "--out", str(tmp_path / "a.json"), "--resolution", "512"
    )
    assert isinstance(result.exception, GhostqError) and "--resolution applies to vedai only" in str(
        result.exception
    )
    result = _run("check", "-f", "nwpu", "--root", str(root), "--image-dir", str(root))
    assert "--image-dir applies to coco only" in str(result.exception)


def test_unknown_format_is_a_usage_error(tmp_path):
    result = _run("check", "--format", "voc", "--root", str(tmp_path))
    assert result.exit_code == 2 and "dota" in result.output


def test_entry_point_exit_codes(tmp_path):
    root = _dota(tmp_path / "ds", stems=("a", "b"), with_images=("a",))
    ok = _ghostq("check", "--format", "dota", "--root", str(root), "--no-decode")
    assert ok.returncode == 1, ok.stderr  # b.png is missing: an error
    assert "annotation without image" in ok.stderr
    failed = _ghostq("convert", "--format", "dota", "--root", str(root), "--out", str(tmp_path / "x.json"))
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: 1 of 2 images named by the annotations")
    assert "Traceback" not in failed.stderr


@pytest.mark.realdata
def test_check_real_coco_annotations_only(rs_samples, tmp_path):
    report = tmp_path / "coco.json"
    result = _run("check", "-f", "coco", "--root", str(rs_samples / "coco"), "--json", str(report))
    assert result.exit_code == 1
    messages = [p["message"] for p in json.loads(report.read_text())["problems"]]
    assert messages[0].startswith("annotation without image") and messages[1].startswith("empty dataset")
    result = _run(
        "check", "-f", "coco", "--root", str(rs_samples / "coco"), "--annotations-only", "--json", str(report)
    )
    assert result.exit_code == 0 and json.loads(report.read_text())["problems"] == []
