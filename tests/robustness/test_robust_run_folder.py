"""The run folder under concurrent, changed, killed and unwritable use: one writer at a time (a real second process
holds the lock), a changed config or a --resume it cannot honour stops before any work with the keys named,
a redone stage marks the later ones stale, a killed export or save leaves the previous artifacts current and
its leftovers are cleaned, output files honour the umask, and an unwritable run folder fails first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ghostq.cli import main
from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.config import load_config
from ghostq.core.errors import GhostqError
from ghostq.core.runs import RunDir, sha256_file

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.batch_size=4",
        "train.threads=1"]
CLASSES = ["small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"]
HOLDER = """
import sys
from ghostq.core.runs import RunDir
with RunDir(sys.argv[1]).lock("ghostq train (holder)"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """Run `ghostq ARGS` as the console script does: (exit code, the non-empty lines of stderr)."""
    monkeypatch.setattr(sys, "argv", ["ghostq", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def _one_error(code: int, lines: list[str], *expected: str) -> str:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) -> sha256, but the lock record (who last held the lock): proves a
    refused command changed nothing."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A second process holding runs/smoke's lock (as a `ghostq train` in progress would)."""
    run = tmp_path / "smoke"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield run, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


# -- item 3: one writer at a time ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "compress", "export", "run", "report"])
def test_second_writer_fails_at_once_naming_the_holder(
    holder: tuple[Path, subprocess.Popen], command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, proc = holder
    atomic_write_json(run / "manifest.json", {"stages": {}})  # `ghostq report` wants a run folder
    before = _snapshot(tmp_path)
    args = [str(run)] if command == "report" else [str(SMOKE), f"run.root={tmp_path}", *TINY]
    line = _one_error(*_cli(monkeypatch, capsys, command, *args),
                      f"{run}: run folder is locked by pid {proc.pid} (ghostq train (holder), since ")
    assert line.endswith("wait for it to finish or choose another run.name")
    assert _snapshot(tmp_path) == before  # no data generated, nothing written
    assert proc.poll() is None  # the holder is untouched


def test_bench_stage_and_stage_records_need_the_lock(holder: tuple[Path, subprocess.Popen], tmp_path: Path) -> None:
    from ghostq.stages.bench import bench

    run, proc = holder
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", *TINY])
    with pytest.raises(GhostqError, match=f"run folder is locked by pid {proc.pid} "):
        bench(cfg)
    with pytest.raises(GhostqError, match=f"run folder is locked by pid {proc.pid} "), RunDir(run).stage("bench", "h"):
        pass
    assert not (run / "manifest.json").exists() and not (run / "bench").exists()


def test_lock_is_released_when_the_holder_dies_and_its_leftovers_are_cleaned(
    holder: tuple[Path, subprocess.Popen],
) -> None:
    run, proc = holder
    # What a holder killed mid-way leaves: temporaries of atomic writes, a half-built export, a stage "running".
    leftovers = [run / "fp" / ".last.pt.k2j3.tmp.pt", run / "export" / ".model_fp32.onnx.ab.tmp.onnx",
                 run / ".manifest.json.x1.tmp.json", run / ".export.partial" / "model_fp32.onnx"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    kept = {run / "fp" / "last.pt": b"good checkpoint", run / "export" / "model_fp32.onnx": b"old onnx",
            run / "fp" / "notes.tmp.txt": b"not ours: no leading dot"}
    for p, data in kept.items():
        p.write_bytes(data)
    atomic_write_json(run / "manifest.json", {"stages": {"train": {"status": "done"}, "export": {"status": "running"}}})
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with RunDir(run).lock("ghostq export"):
        info = json.loads((run / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["command"] == "ghostq export"
        assert [p for p in leftovers if p.exists()] == [] and not (run / ".export.partial").exists()
        assert {p: p.read_bytes() for p in kept} == kept
        stages = RunDir(run).manifest()["stages"]
        assert stages["export"]["status"] == "interrupted" and stages["train"]["status"] == "done"


def test_killed_between_the_renames_restores_the_previous_export(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    old = run / ".export.old" / "model_fp32.onnx"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"previous complete set")
    (run / ".export.partial").mkdir()
    with run.lock("ghostq export"):
        assert (run / "export" / "model_fp32.onnx").read_bytes() == b"previous complete set"
        assert not (run / ".export.old").exists() and not (run / ".export.partial").exists()


# -- item 17: an unwritable run folder fails before any work -----------------------------------------------------
@pytest.mark.parametrize("command", ["train", "run"])
def test_unwritable_run_folder_fails_first(
    unwritable_dir: Path, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    _one_error(*_cli(monkeypatch, capsys, command, str(SMOKE), f"run.root={unwritable_dir}", *TINY),
               f"{unwritable_dir / 'smoke'}: run folder is not writable (Not a directory); choose another location")
    assert _snapshot(tmp_path) == before


# -- items 4 and 4b: a changed config never destroys finished artifacts ----------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run (train only) plus a compress stage recorded as done on its fp/best.pt."""
    torch.set_num_threads(1)
    from ghostq.stages.train import train

    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(SMOKE, [f"run.root={root}", *TINY, "train.epochs=2"])
    train(cfg, show_progress=False)
    run = RunDir(cfg.run_dir)
    with run.stage("compress", "h", [run / "fp" / "best.pt"]) as stage:
        stage.add_artifact(atomic_write_text(run / "ghost" / "bits.json", "{}"))
    return root


def _copy_run(root: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(root / "smoke", dest / "smoke")
    return dest / "smoke"


def test_run_with_a_forgotten_override_stops_before_any_work(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    run = _copy_run(trained, tmp_path)
    before = _snapshot(run)
    for command in ("run", "train"):
        line = _one_error(*_cli(monkeypatch, capsys, command, str(SMOKE), f"run.root={tmp_path}", *TINY),
                          f"{run / 'config.yaml'}: the config differs from the one finished stage(s) ",
                          "were built with: train.epochs 2 -> 1. Rerun with --force to redo them, or choose another "
                          "run.name")
        assert "train" in line.split("stage(s) ")[1].split(" were")[0]
        assert _snapshot(run) == before  # fp/best.pt (2 epochs), ghost/, config.yaml, manifest: all unchanged
    # A change that only a stage not yet finished reads is no conflict: the finished ones are named precisely.
    code, lines = _cli(monkeypatch, capsys, "run", str(SMOKE), f"run.root={tmp_path}", *TINY, "train.epochs=2",
                       "compress.epochs=3", "export.fp16=false", "bench.iters=1")
    _one_error(code, lines, "finished stage(s) compress were built with: compress.epochs 10 -> 3. Rerun with")
    assert _snapshot(run) == before


def test_resume_refuses_what_it_cannot_honour(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    run = _copy_run(trained, tmp_path)
    before = _snapshot(run)
    base = ["train", str(SMOKE), f"run.root={tmp_path}", *TINY, "train.epochs=2", "--resume"]
    _one_error(*_cli(monkeypatch, capsys, *base, "train.lr=0.5", "run.seed=3"),
               f"{run / 'fp' / 'last.pt'}: --resume cannot honour changed run.seed 0 -> 3; train.lr 0.002 -> 0.5 "
               "(the optimizer, schedule and RNG continue from the checkpoint)")
    _one_error(*_cli(monkeypatch, capsys, *base, "model.act=silu"),
               f"{run / 'fp' / 'last.pt'}: cannot resume: config sections ['model'] differ from the checkpoint's "
               "(model.act relu -> silu)")
    assert _snapshot(run) == before  # config.yaml still records what happened


def test_forced_retrain_marks_later_stages_stale(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from ghostq.core.runs import config_changes

    run = _copy_run(trained, tmp_path)
    old_best = sha256_file(run / "fp" / "best.pt")
    code, lines = _cli(monkeypatch, capsys, "train", str(SMOKE), f"run.root={tmp_path}", *TINY, "--force")
    assert code == 0, lines
    stages = RunDir(run).manifest()["stages"]
    assert stages["train"]["status"] == "done" and sha256_file(run / "fp" / "best.pt") != old_best
    assert stages["compress"]["status"] == "stale" and stages["compress"]["stale_because"].startswith("train was rerun")
    assert not RunDir(run).is_current("compress", "h", [run / "fp" / "best.pt"])
    saved = RunDir(run).saved_config()
    assert saved is not None and config_changes(saved, load_config(SMOKE, TINY).model_dump(mode="json"),
                                                ["train"]) == []  # config.yaml now says 1 epoch, as trained
    # The quantized model built from the old fp/best.pt is not exported as if it were current.
    (run / "ghost" / "best.pt").write_bytes(b"built from the 2-epoch model")
    _one_error(*_cli(monkeypatch, capsys, "export", str(SMOKE), f"run.root={tmp_path}", *TINY),
               f"{run / 'ghost' / 'best.pt'}: the compress stage that wrote it is stale (train was rerun at ",
               "); run ghostq compress first, or set export.int8.source=ptq")
    assert not (run / "export").exists() or not any((run / "export").iterdir())  # nothing exported


def test_corrupt_run_config_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "smoke"
    atomic_write_json(run / "manifest.json", {"stages": {"train": {"status": "done"}}})
    (run / "config.yaml").write_text("run:\n  name: [unclosed\n")
    _one_error(*_cli(monkeypatch, capsys, "run", str(SMOKE), f"run.root={tmp_path}", *TINY),
               f"{run / 'config.yaml'}:3: corrupt run config")


# -- item 11: an export stage is one unit -----------------------------------------------------------------------------
@pytest.fixture
def exportable(tmp_path: Path):  # noqa: ANN201
    """A run folder with an untrained checkpoint at fp/best.pt and a fast export config (FP32 only)."""
    from ghostq.detect.builders import build_model_from_config
    from ghostq.detect.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", *TINY, "export.fp16=false", "export.int8.enabled=false",
                              "export.verify=false"])
    torch.manual_seed(0)
    model = build_model_from_config(cfg, len(CLASSES)).eval()
    save_checkpoint(cfg.run_dir / "fp" / "best.pt",
                    {"model": model.state_dict(), "config": cfg.model_dump(mode="json"), "classes": CLASSES})
    return cfg


def test_failed_export_leaves_the_previous_set_whole(exportable, monkeypatch: pytest.MonkeyPatch) -> None:
    import ghostq.export.pipeline as export_pipeline
    from ghostq.stages.export import run_export

    run = RunDir(exportable.run_dir)
    first = run_export(exportable)
    assert first.out_dir == run / "export" and first.files["fp32"] == run / "export" / "model_fp32.onnx"
    assert sorted(p.name for p in (run / "export").iterdir()) == ["model_fp32.onnx", "trtexec.sh"]
    before = _snapshot(run.path / "export")

    def killed(*_a, **_k) -> None:
        raise KeyboardInterrupt  # after the ONNX file was written, before the stage finished

    monkeypatch.setattr(export_pipeline, "_trt", killed)
    with pytest.raises(KeyboardInterrupt):
        run_export(exportable, force=True)
    assert _snapshot(run.path / "export") == before
    assert not (run / ".export.partial").exists()
    entry = run.manifest()["stages"]["export"]
    assert entry["status"] == "failed" and not run.is_current("export", entry["config_hash"])


def test_file_modes_honour_the_umask(exportable, tmp_path: Path) -> None:
    from ghostq.detect.checkpoint import save_checkpoint
    from ghostq.stages.export import run_export

    old = os.umask(0o022)
    try:
        run_export(exportable)
        for name in ("model_fp32.onnx", "manifest.json"):
            path = exportable.run_dir / ("export" if name.endswith("onnx") else "") / name
            assert path.stat().st_mode & 0o777 == 0o644, name
        for mask, mode in ((0o077, 0o600), (0o002, 0o664)):
            os.umask(mask)
            assert atomic_write_text(tmp_path / f"t{mask}.txt", "x").stat().st_mode & 0o777 == mode
            assert save_checkpoint(tmp_path / f"c{mask}.pt", {"a": 1}).stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)
