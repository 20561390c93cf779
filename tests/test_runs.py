"""Run folder: manifest records stages, skipping needs same config + inputs + intact artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghostq.atomic import atomic_path, atomic_write_json, atomic_write_text
from ghostq.runs import RunDir, sha256_file


def test_stage_done_and_skip(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    inp = tmp_path / "in.txt"
    inp.write_text("data")
    assert not run.is_current("train", "h1", [inp])
    with run.stage("train", "h1", [inp]) as st:
        out = atomic_write_text(run / "fp/best.pt", "weights")
        st.add_artifact(out)
    entry = run.manifest()["stages"]["train"]
    assert entry["status"] == "done"
    assert entry["artifacts"] == {"fp/best.pt": sha256_file(out)}
    assert entry["inputs"] == {str(inp): sha256_file(inp)}
    assert "python" in entry["versions"] and "ghostq" in entry["versions"]
    assert run.is_current("train", "h1", [inp])
    assert not run.is_current("train", "h2", [inp])  # config changed
    inp.write_text("other")
    assert not run.is_current("train", "h1", [inp])  # input changed
    inp.write_text("data")
    out.write_text("tampered")
    assert not run.is_current("train", "h1", [inp])  # artifact changed


def test_failed_stage_recorded(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    with pytest.raises(RuntimeError), run.stage("export", "h"):
        raise RuntimeError("boom")
    entry = run.manifest()["stages"]["export"]
    assert entry["status"] == "failed" and entry["error"] == "boom"
    assert not run.is_current("export", "h")


def test_atomic_write_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise ValueError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [target]  # no temporary left behind
    with pytest.raises(ValueError):
        atomic_write_json(target, {"v": float("nan")})
    assert json.loads(target.read_text()) == {"v": 1}
