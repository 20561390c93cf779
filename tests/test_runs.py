"""Run folder: manifest records stages, skipping needs same config + inputs + intact artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghostq.core.atomic import atomic_path, atomic_write_json, atomic_write_text
from ghostq.core.runs import RunDir, sha256_file


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


def test_lock_is_reentrant_in_process_and_exclusive_across_open_files(tmp_path: Path) -> None:
    import fcntl
    import os

    run = RunDir(tmp_path / "r")
    with run.lock("outer"), run.lock("inner"), run.stage("train", "h"):
        other = os.open(run.lock_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # another open file (as another process would have) cannot lock
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert json.loads(run.lock_path.read_text())["command"] == "outer"
    free = os.open(run.lock_path, os.O_RDWR)
    try:
        fcntl.flock(free, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
    finally:
        os.close(free)


def test_redone_stage_marks_later_ones_stale(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    for name in ("train", "compress", "export"):
        with run.stage(name, "h"):
            pass
    with run.stage("compress", "h2"):
        pass
    stages = run.manifest()["stages"]
    assert [stages[s]["status"] for s in ("train", "compress", "export")] == ["done", "done", "stale"]
    assert stages["export"]["stale_because"].startswith("compress was rerun at ")
    assert not run.is_current("export", "h")


def test_staged_folder_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    with run.staged_folder("export") as d:
        (d / "a.onnx").write_text("1")
        (d / "b.onnx").write_text("1")
    with pytest.raises(RuntimeError), run.staged_folder("export") as d:
        (d / "a.onnx").write_text("2")
        raise RuntimeError("killed mid-way")
    assert {p.name: p.read_text() for p in (run / "export").iterdir()} == {"a.onnx": "1", "b.onnx": "1"}
    with run.staged_folder("export") as d:
        (d / "a.onnx").write_text("3")
    assert {p.name: p.read_text() for p in (run / "export").iterdir()} == {"a.onnx": "3"}  # no stale b.onnx
    assert sorted(p.name for p in run.path.iterdir()) == ["export"]


def test_config_changes_name_dotted_keys() -> None:
    from ghostq.core.runs import config_changes

    old = {"run": {"name": "a", "root": "runs", "seed": 0}, "train": {"epochs": 15, "augment": {"flip": 0.5}}}
    new = {"run": {"name": "b", "root": "/x", "seed": 0}, "train": {"epochs": 1, "augment": {"flip": 0.0}}}
    assert config_changes(old, new, ["run", "train"]) == ["train.augment.flip 0.5 -> 0.0", "train.epochs 15 -> 1"]
    assert config_changes(old, new, ["run"]) == []
