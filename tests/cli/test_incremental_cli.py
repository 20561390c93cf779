"""`ghostq incremental`: base fit on the config's train split, then a phase of new classes on new data only; the
extended checkpoint is evaluated by `ghostq eval` like any other; misuse is one line with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ghostq.cli import main
from ghostq.core.spec import spec_from_config
from ghostq.detect.checkpoint import load_checkpoint, save_checkpoint
from ghostq.detect.data.classes import SYNTHETIC
from ghostq.detect.models import build_detector_from_spec
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[2]
BASE = list(SYNTHETIC[:3])


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ghostq", *args])
    try:
        main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


@pytest.fixture
def base(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """Overrides of the smoke config (3 base classes), an untrained base checkpoint, the synthetic data root."""
    from ghostq.detect.data.prepare import ensure_synthetic

    overrides = [f"run.root={tmp_path}", f"data.classes=[{','.join(BASE)}]", "data.synthetic.images=12"]
    cfg = load_config(REPO / "configs" / "smoke.yaml", overrides)
    root = ensure_synthetic(cfg)
    spec = spec_from_config(cfg, tuple(BASE))
    torch.manual_seed(0)
    model = build_detector_from_spec(spec)
    path = save_checkpoint(tmp_path / "fp.pt", {"model": model.state_dict(), "classes": BASE,
                                                 "spec": spec.to_dict()})
    return overrides, path, root


def test_base_fit_then_phase_then_eval(base, tmp_path: Path, monkeypatch, capsys) -> None:
    overrides, fp, root = base
    config = str(REPO / "configs" / "smoke.yaml")
    p0, p1 = tmp_path / "p0.pt", tmp_path / "p1.pt"
    assert _run(monkeypatch, "incremental", config, *overrides, "--model", str(fp), "--out", str(p0),
                "--buffer-dim", "32") == 0
    assert load_checkpoint(p0)["classes"] == BASE
    new = list(SYNTHETIC[3:])
    assert _run(monkeypatch, "incremental", config, *overrides, "--model", str(p0), "--out", str(p1),
                "--data", str(root), "--format", "dota", "--classes", ",".join(new)) == 0
    payload = load_checkpoint(p1)
    assert payload["classes"] == BASE + new
    assert [p["classes"] for p in payload["acil"]["phases"]] == [BASE, new]
    assert payload["spec"]["analytic"]["buffer_dim"] == 32 and payload["spec"]["analytic"]["feature_classes"] == 3
    said = " ".join(capsys.readouterr().err.split())
    assert "kept of the old data: 30,096 bytes" in said  # 3 levels x (33 x 33 + 33 x 5) float64 (R and W)
    assert _run(monkeypatch, "eval", "--model", str(p1), "--data", str(root), "--format", "dota") == 0
    assert "12 images" in capsys.readouterr().err  # scored: every image of the data


def test_misuse_is_one_line(base, tmp_path: Path, monkeypatch, capsys) -> None:
    overrides, fp, root = base
    config = str(REPO / "configs" / "smoke.yaml")
    code = _run(monkeypatch, "incremental", config, *overrides, "--model", str(fp), "--out", str(tmp_path / "x.pt"),
                "--data", str(root), "--classes", "ship")
    err = capsys.readouterr().err
    assert code == 2 and "fit its base first" in err and len(err.strip().splitlines()) == 1
    code = _run(monkeypatch, "incremental", config, *overrides, "--model", str(fp), "--out", str(fp))
    err = capsys.readouterr().err
    assert code == 2 and "--out must differ from --model" in err
