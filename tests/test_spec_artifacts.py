"""The model spec travels with every artifact: a checkpoint or ONNX file alone is enough to evaluate and export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from typer.testing import CliRunner

from ghostq.cli import app
from ghostq.core.spec import ModelSpec, spec_from_config
from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint, load_detector, save_checkpoint
from ghostq.detect.data.classes import SYNTHETIC
from ghostq.detect.data.synthetic import generate_synthetic
from ghostq.detect.models import build_detector_from_spec
from ghostq.export.checkpoint_export import export_checkpoint
from ghostq.export.onnx_export import read_metadata
from ghostq.stages.config import load_config

CLASSES = list(SYNTHETIC)
CONFIG = """run: {{name: spec, root: {runs}}}
data: {{format: dota, root: {root}, val_root: {root}, classes: {classes}, img_size: 64, workers: 0}}
model: {{backbone: csp_n, strides: [8, 16, 32], head: {head}}}
loss: {{cls: {cls}, logit_clip: {{bound: 2.0}}}}
eval: {{score_threshold: 0.01}}
"""


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "data"
    generate_synthetic(root, images=4, size=64, seed=0, val_frac=None)
    return root


def _saved(tmp: Path, data: Path, head: str = "sigmoid") -> tuple[Path, Path, ModelSpec]:
    """A config (LogitClip on) and a checkpoint of its model, as the trainer writes it (config + spec)."""
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(CONFIG.format(runs=tmp / "runs", root=data, classes=json.dumps(CLASSES), head=head,
                                      cls="bce" if head == "sigmoid" else "ce"))
    cfg = load_config(cfg_path)
    spec = spec_from_config(cfg, CLASSES)
    torch.manual_seed(0)
    model = build_detector_from_spec(spec)
    with torch.no_grad():  # outputs that depend on the image, so the ranking is not a tie
        for conv in model.head.cls_preds:
            conv.weight.normal_(0.0, 0.05)
            conv.bias.zero_()
    ckpt = save_checkpoint(tmp / "best.pt", {"model": model.state_dict(), "config": cfg.model_dump(mode="json"),
                                             "classes": CLASSES, "spec": spec.to_dict()})
    return cfg_path, ckpt, spec


def _without(path: Path, key: str, out: Path) -> Path:
    payload = torch.load(path, weights_only=True)
    del payload[key]
    return save_checkpoint(out, payload)


def test_checkpoint_holds_the_spec_and_loads_without_config(tmp_path, data) -> None:
    _, ckpt, spec = _saved(tmp_path, data)
    assert checkpoint_spec(load_checkpoint(ckpt)) == spec
    assert spec.logit_clip is not None and spec.logit_clip.p == float("inf")
    alone = _without(ckpt, "config", tmp_path / "alone.pt")
    model, payload = load_detector(alone)
    assert checkpoint_spec(payload) == spec and "config" not in payload
    ref, _ = load_detector(ckpt)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True))


def test_old_checkpoint_without_spec_derives_it_from_its_config(tmp_path, data) -> None:
    _, ckpt, spec = _saved(tmp_path, data)
    old = _without(ckpt, "spec", tmp_path / "old.pt")
    assert checkpoint_spec(load_checkpoint(old)) == spec
    neither = _without(old, "config", tmp_path / "neither.pt")
    with pytest.raises(Exception, match="no 'spec' entry"):
        load_checkpoint(neither)


def test_export_from_the_checkpoint_alone_writes_onnx_with_its_spec(tmp_path, data) -> None:
    _, ckpt, spec = _saved(tmp_path, data)
    alone = _without(ckpt, "config", tmp_path / "alone.pt")
    result = export_checkpoint(alone, tmp_path / "out")
    assert set(result.files) == {"fp32", "fp16"}
    assert any("--calib IMAGES_DIR" in m for m in result.messages)  # INT8 declined, the option named
    result = export_checkpoint(alone, tmp_path / "out8", calib=data / "images")
    assert {"fp32", "fp16", "int8", "int8_cpu"} <= set(result.files)
    for path in result.files.values():
        assert ModelSpec.from_metadata(read_metadata(onnx.load(str(path))), str(path)) == spec


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_eval_from_the_checkpoint_alone_equals_eval_with_the_config(tmp_path, data, head) -> None:
    cfg_path, ckpt, _ = _saved(tmp_path, data, head)
    alone = _without(ckpt, "config", tmp_path / "alone.pt")
    runner = CliRunner()
    with_cfg, no_cfg = tmp_path / "a.json", tmp_path / "b.json"
    r = runner.invoke(app, ["eval", str(cfg_path), "--model", str(ckpt), "--json", str(with_cfg)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "--model", str(alone), "--data", str(data), "--format", "dota",
                            "--json", str(no_cfg)])
    assert r.exit_code == 0, r.output
    a, b = json.loads(with_cfg.read_text()), json.loads(no_cfg.read_text())
    assert a == b and a["num_dets"] > 0


def test_export_cli_with_model_and_out(tmp_path, data) -> None:
    _, ckpt, spec = _saved(tmp_path, data)
    r = CliRunner().invoke(app, ["export", "--model", str(ckpt), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "--calib" in r.output
    meta = read_metadata(onnx.load(str(tmp_path / "cli" / "model_fp32.onnx")))
    assert ModelSpec.from_metadata(meta) == spec
    shutil.rmtree(tmp_path / "cli")
