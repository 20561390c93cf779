"""Checkpoints and artifacts that do not match: each planted bad .pt through every command that reads one, non-finite
weights never saved, NaN metrics written as null, and outputs checked writable before any work."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ghostq.cli import main
from ghostq.core.config import Config, load_config
from ghostq.core.errors import GhostqError
from ghostq.detect.builders import build_model_from_config
from ghostq.detect.checkpoint import load_checkpoint, load_detector, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY = [
    "data.synthetic.images=12",
    "data.img_size=96",
    "data.synthetic.size=96",
    "train.batch_size=4",
    "train.threads=1",
]
CLASSES = ["small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"]


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `ghostq ARGS` as the console script does: (exit code, stderr stripped)."""
    monkeypatch.setattr(sys, "argv", ["ghostq", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err.strip()


def _one_error_line(code: int, err: str, expected: str | tuple[str, ...], path: Path | None = None) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part.format(p=path) in err, err


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    """A valid FP checkpoint payload of the tiny smoke model (untrained weights: structure is what matters)."""
    torch.manual_seed(0)
    cfg = load_config(SMOKE, TINY)
    model = build_model_from_config(cfg, len(CLASSES))
    return {"config": cfg.model_dump(mode="json"), "classes": list(CLASSES), "model": model.state_dict()}


def _config_with(payload: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(payload["config"]))
    config[section][key] = value
    return {**payload, "config": config}


def _save_raw(path: Path, obj: Any) -> None:
    torch.save(obj, path)  # not save_checkpoint: these files are planted, some on purpose unsaveable by it


def _truncated(path: Path, payload: dict[str, Any]) -> None:
    _save_raw(path, payload)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _non_finite(path: Path, payload: dict[str, Any]) -> None:
    state = dict(payload["model"])
    state["head.cls_preds.0.bias"] = torch.full_like(state["head.cls_preds.0.bias"], float("nan"))
    _save_raw(path, {**payload, "model": state})


# name -> (writer(path, good payload), what the one red line must contain (one part or several), {p}: the file)
PLANTED: dict[str, tuple[Callable[[Path, dict[str, Any]], None], str | tuple[str, ...]]] = {
    "no-classes": (
        lambda p, g: _save_raw(p, {k: v for k, v in g.items() if k != "classes"}),
        "{p}: not a ghostq checkpoint: no 'classes' entry (a ghostq checkpoint holds 'model', 'classes' and 'spec')",
    ),
    "other-backbone-config": (
        lambda p, g: _save_raw(p, _config_with(g, "model", "backbone", "csp_s")),
        "{p}: the weights do not fit the csp_s detector with 5 classes its config describes (354 tensors): "
        "261 differ in shape (checkpoint vs model): backbone.stem.conv.weight [16, 3, 3, 3] vs [32, 3, 3, 3]",
    ),
    "other-backbone-family": (
        lambda p, g: _save_raw(p, _config_with(g, "model", "backbone", "convnextv2_atto")),
        "{p}: the weights do not fit the convnextv2_atto detector with 5 classes its config describes "
        "(334 tensors): 142 missing: backbone.stem.0.weight, backbone.stem.0.bias, backbone.stem.1.weight, "
        "... 139 more; 162 unexpected: backbone.stem.conv.weight,",
    ),
    "wrong-class-count": (
        lambda p, g: _save_raw(p, {**g, "classes": CLASSES[:3]}),
        "{p}: the weights do not fit the csp_n detector with 3 classes its config describes (354 tensors): "
        "6 differ in shape (checkpoint vs model): head.cls_preds.0.weight [5, 64, 1, 1] vs [3, 64, 1, 1]",
    ),
    "model-empty-string": (
        lambda p, g: _save_raw(p, {**g, "model": ""}),
        "{p}: 'model' must be a state dict (parameter name -> tensor), got str ''",
    ),
    "config-not-mapping": (
        lambda p, g: _save_raw(p, {**g, "config": ["model", "csp_n"]}),
        "{p}: 'config' must be a mapping of config sections, got a list",
    ),
    "config-bad-value": (
        lambda p, g: _save_raw(p, _config_with(g, "model", "head", "linear")),
        "{p}: stored config: model.head: Input should be 'sigmoid' or 'softmax'",
    ),
    "unknown-backbone": (
        lambda p, g: _save_raw(p, _config_with(g, "model", "backbone", "resnet9000")),
        ("{p}: stored config: model.backbone", "'resnet9000'", "convnextv2_atto, convnextv2_femto, csp_n, csp_s"),
    ),
    "not-a-checkpoint": (
        lambda p, g: p.write_text("epoch,mAP50\n1,0.5\n"),
        "{p}: not a PyTorch checkpoint (a checkpoint is the zip archive torch.save writes)",
    ),
    "empty-file": (lambda p, g: p.write_bytes(b""), "{p}: empty file (0 bytes), not a checkpoint"),
    "truncated": (
        _truncated,
        "{p}: truncated or corrupt checkpoint (its zip archive has no central directory)",
    ),
    "unsafe-pickle": (
        lambda p, g: _save_raw(p, {**g, "args": argparse.Namespace(lr=0.1)}),
        "{p}: refused by the data-only loader (weights_only=True): it holds the Python object argparse.Namespace",
    ),
    "not-a-mapping": (
        lambda p, g: _save_raw(p, [g["model"]]),
        "{p}: not a ghostq checkpoint (it holds a list, not a mapping with 'model', 'classes' and 'spec')",
    ),
    "non-finite-weights": (
        _non_finite,
        "{p}: 1 of 354 weight tensors hold NaN/inf (first: head.cls_preds.0.bias); the checkpoint is unusable",
    ),
    "quantized-checkpoint": (
        lambda p, g: _save_raw(p, {**g, "bits": {"backbone.stem.conv": 4}}),
        "{p}: a compressed (quantized) checkpoint; this command takes a full-precision checkpoint",
    ),
}


def _image(path: Path) -> Path:
    Image.fromarray(np.full((96, 96, 3), 120, dtype=np.uint8)).save(path)
    return path


def _command(name: str, ckpt: Path, tmp_path: Path) -> list[str]:
    """The command line that has to load `ckpt`."""
    cfg = [str(SMOKE), f"run.root={tmp_path / 'runs'}", *TINY]
    if name == "eval":
        return ["eval", *cfg, "--model", str(ckpt)]
    if name == "predict":
        return ["predict", str(_image(tmp_path / "scene.png")), "--model", str(ckpt), "--out", str(tmp_path / "pred")]
    if name == "bench":
        return ["bench", "--model", str(ckpt), "--warmup", "0", "--iters", "1"]
    if name == "export":
        return ["export", *cfg, f"export.source={ckpt}"]
    return ["compress", *cfg, f"compress.source={ckpt}"]


@pytest.mark.parametrize("command", ["eval", "predict", "bench", "export", "compress"])
@pytest.mark.parametrize("case", sorted(PLANTED))
def test_bad_checkpoint_is_one_line_in_every_command(
    case: str, command: str, good: dict[str, Any], tmp_path: Path, monkeypatch, capsys
) -> None:
    write, message = PLANTED[case]
    if (case, command) == ("quantized-checkpoint", "eval"):  # eval takes compressed checkpoints: it rebuilds one
        message = "{p}: the weights do not fit the quantized model"
    ckpt = tmp_path / "planted.pt"
    write(ckpt, good)
    before = ckpt.read_bytes()
    code, err = _cli(monkeypatch, capsys, *_command(command, ckpt, tmp_path))
    _one_error_line(code, err, message, ckpt)
    assert ckpt.read_bytes() == before  # the input is never touched
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").iterdir())
    for stage in ("export", "ghost"):
        assert not list((tmp_path / "runs" / "smoke" / stage).glob("*.onnx")) + list(
            (tmp_path / "runs" / "smoke" / stage).glob("*.pt")
        )


def test_good_checkpoint_loads(good: dict[str, Any], tmp_path: Path) -> None:
    """The planted cases differ from a checkpoint that loads in exactly what they break."""
    path = save_checkpoint(tmp_path / "best.pt", good)
    model, payload = load_detector(path)
    assert payload["classes"] == CLASSES and model.head_type == "sigmoid"
    assert all(torch.equal(v, good["model"][k]) for k, v in model.state_dict().items())


def test_folder_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GhostqError) as err:
        load_checkpoint(tmp_path)
    assert str(err.value) == f"{tmp_path}: a folder, not a checkpoint file"
    with pytest.raises(GhostqError) as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(err.value) == f"{tmp_path / 'nope.pt'}: checkpoint not found"


# -- resume ----------------------------------------------------------------------------------------------


RESUME_CASES = {
    "best-pt-as-last": (
        lambda p, g: save_checkpoint(p, {**g, "epoch": 0, "metrics": {"mAP50": 0.1}}),
        "{p}: cannot resume from it: no training state (optimizer, scheduler, scaler, rng, best_map50, history "
        "missing); a best.pt holds weights only, --resume needs the run's last.pt",
    ),
    "truncated": PLANTED["truncated"],
    "unsafe-pickle": PLANTED["unsafe-pickle"],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_from_wrong_last_pt(case: str, good: dict[str, Any], tmp_path: Path, monkeypatch, capsys) -> None:
    write, message = RESUME_CASES[case]
    last = tmp_path / "smoke" / "fp" / "last.pt"
    last.parent.mkdir(parents=True)
    write(last, good)
    before = last.read_bytes()
    code, err = _cli(monkeypatch, capsys, "train", str(SMOKE), f"run.root={tmp_path}", *TINY, "--resume")
    _one_error_line(code, err, message, last)
    assert last.read_bytes() == before
    assert not (tmp_path / "smoke" / "fp" / "best.pt").exists()


# -- non-finite weights and metrics --------------------------------------------------------------------------


def test_save_checkpoint_refuses_non_finite_and_keeps_previous(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    before = path.read_bytes()
    planted = {
        "model": {"w": torch.ones(2), "b": torch.tensor([1.0, float("inf")])},
        "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}, "step": torch.tensor(3)},
    }
    with pytest.raises(GhostqError) as err:
        save_checkpoint(path, planted)
    assert str(err.value) == (
        f"{path}: not saved: 2 of 4 tensors hold NaN/inf (first: model.b); the previous file is kept"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind
    only_optimizer = {"model": {"w": torch.ones(2)}, "optimizer": planted["optimizer"]}
    with pytest.raises(GhostqError, match=r"1 of 3 tensors hold NaN/inf \(first: optimizer\.state\.0\.exp_avg\)"):
        save_checkpoint(tmp_path / "new.pt", only_optimizer)
    assert not (tmp_path / "new.pt").exists()


def _trainer(tmp_path: Path, overrides: list[str]) -> Any:
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.trainer import Trainer

    torch.set_num_threads(1)
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", *TINY, *overrides])
    return Trainer(cfg, prepare_data(cfg), DistInfo(), torch.device("cpu"))


def test_infinite_lr_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    """Epoch 1 trains normally; epoch 2 runs at lr=inf (what train.lr=.inf did): its weights are never saved."""
    trainer = _trainer(tmp_path, ["train.epochs=2", "train.batch_size=8", "train.warmup_epochs=0"])
    assert trainer.steps_per_epoch == 1  # one step, then the epoch ends with the broken weights
    trainer.fit(stop_after=1, show_progress=False)
    fp = tmp_path / "smoke" / "fp"
    saved = {name: (fp / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.json")}
    trainer.start_epoch, trainer.best_map = 1, -1.0  # epoch 2 would also write best.pt
    for group in trainer.optimizer.param_groups:
        group["lr"] = math.inf
    trainer.scheduler.base_lrs = [math.inf] * len(trainer.scheduler.base_lrs)
    with pytest.raises(GhostqError) as err:
        trainer.fit(stop_after=1, show_progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{fp / 'best.pt'}: not saved: ")
    assert "tensors hold NaN/inf (first: " in msg
    assert msg.endswith(
        f"the previous file is kept; training stopped after epoch 2, the last good checkpoint is {fp / 'last.pt'}. "
        "Lower train.lr or raise train.warmup_epochs."
    )
    assert {name: (fp / name).read_bytes() for name in saved} == saved
    assert sorted(p.name for p in fp.iterdir() if p.name.startswith(".")) == []
    model, payload = load_detector(fp / "best.pt")  # the kept checkpoint is finite and loads
    assert payload["epoch"] == 0


@pytest.mark.parametrize(
    ("batch", "stopped", "kept"),
    [(4, "epoch 1 step 2", "no checkpoint was written yet"), (8, "epoch 2 step 1", "the last good checkpoint is")],
)
def test_huge_lr_training_never_writes_a_non_finite_checkpoint(
    batch: int, stopped: str, kept: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    """train.lr=1e30 for a few steps: one line, exit 2, and every checkpoint left behind is finite and loads."""
    code, err = _cli(monkeypatch, capsys, "train", str(SMOKE), f"run.root={tmp_path}", *TINY,
                     "train.lr=1e30", "train.epochs=3", f"train.batch_size={batch}")
    _one_error_line(code, err, f"non-finite loss at {stopped}")
    assert kept in err
    fp = tmp_path / "smoke" / "fp"
    left = sorted(fp.glob("*.pt")) if fp.is_dir() else []
    assert [p.name for p in left] == ([] if batch == 4 else ["best.pt", "last.pt"])
    for path in left:
        assert load_checkpoint(path)["epoch"] == 0
    if left:
        assert json.loads((fp / "metrics.json").read_text())["epochs_done"] == 1


def test_nan_metrics_are_written_as_null(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, [])
    row = {"epoch": 1, "loss": 1.5, "cls": math.nan, "lr": math.inf, "mAP50": math.nan, "mAP50_95": -math.inf}
    trainer.history.append(row)
    trainer._write_epoch(0, row)
    metrics = json.loads((tmp_path / "smoke" / "fp" / "metrics.json").read_text())
    assert metrics["history"] == [
        {"epoch": 1, "loss": 1.5, "cls": None, "lr": None, "mAP50": None, "mAP50_95": None}
    ]
    assert metrics["mAP50"] is None
    assert not (tmp_path / "smoke" / "fp" / "best.pt").exists()  # NaN mAP is never "better"
    assert load_checkpoint(tmp_path / "smoke" / "fp" / "last.pt")["epoch"] == 0


# -- outputs that cannot be written ---------------------------------------------------------------------


def test_eval_json_unwritable_before_any_work(unwritable_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "no_such_checkpoint.pt"  # the writability check comes before the checkpoint is read
    out = unwritable_dir / "eval.json"
    code, err = _cli(monkeypatch, capsys, "eval", str(SMOKE), f"run.root={tmp_path}", *TINY,
                     "--model", str(missing), "--json", str(out))
    _one_error_line(code, err, f"{unwritable_dir}: folder of the --json file is not writable (Not a directory); "
                               "choose another location")
    assert not (tmp_path / "_data").exists()  # no dataset was generated


def test_eval_json_that_is_a_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "eval.json"
    out.mkdir()
    code, err = _cli(monkeypatch, capsys, "eval", "--gt", str(tmp_path / "gt.json"), "--dets",
                     str(tmp_path / "dets.json"), "--json", str(out))
    _one_error_line(code, err, f"{out}: --json file is a folder; give a file name")


def test_export_unwritable_before_any_work(
    good: dict[str, Any], unwritable_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    source = save_checkpoint(tmp_path / "best.pt", good)
    code, err = _cli(monkeypatch, capsys, "export", str(SMOKE), f"run.root={unwritable_dir}", *TINY,
                     f"export.source={source}")
    _one_error_line(code, err, f"{unwritable_dir / 'smoke'}: run folder is not writable (Not a directory); "
                               "choose another location")


def test_compress_unwritable_before_any_work(
    good: dict[str, Any], unwritable_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    source = save_checkpoint(tmp_path / "best.pt", good)
    code, err = _cli(monkeypatch, capsys, "compress", str(SMOKE), f"run.root={unwritable_dir}", *TINY,
                     f"compress.source={source}")
    _one_error_line(code, err, f"{unwritable_dir / 'smoke'}: run folder is not writable")
    runs = tmp_path / "runs"
    code, err = _cli(monkeypatch, capsys, "compress", str(SMOKE), f"run.root={runs}", *TINY,
                     f"compress.source={source}", "--json", str(unwritable_dir / "m.json"))
    _one_error_line(code, err, f"{unwritable_dir}: folder of the --json file is not writable")
    assert not (runs / "_data").exists() and not (runs / "smoke" / "ghost").exists()


def test_report_unwritable(unwritable_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from ghostq.deploy.report import write_report

    with pytest.raises(GhostqError) as err:
        write_report(unwritable_dir)
    assert str(err.value) == (f"{unwritable_dir}: folder of the report is not writable (Not a directory); "
                              "choose another location")
    run = tmp_path / "run"
    (run / "report.md").mkdir(parents=True)
    (run / "manifest.json").write_text("{}\n")
    code, err = _cli(monkeypatch, capsys, "report", str(run))
    _one_error_line(code, err, f"{run / 'report.md'}: report is a folder; give a file name")
    assert not list(run.glob("*.png")) and not any((run / "report.md").iterdir())


def test_config_of_good_payload_is_valid(good: dict[str, Any]) -> None:
    """Guard for the planted cases: the only thing wrong in each is what it plants."""
    assert Config.model_validate(good["config"]).model.backbone == "csp_n"
