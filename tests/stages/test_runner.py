"""The one runner: `ghostq run` prepares the dataset once for every stage, sessions are shared and torn down,
and registry names are checked by the stages' config loader (core checks none by itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import ghostq.detect.data.prepare as prepare
from ghostq.core import config as core_config
from ghostq.core.errors import ConfigError
from ghostq.stages.config import load_config
from ghostq.stages.run import run_pipeline
from ghostq.stages.runner import session

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY = ["data.synthetic.images=8", "data.img_size=64", "data.synthetic.size=64", "train.batch_size=4",
        "train.threads=1", "compress.method=ptq", "compress.ptq.batches=1", "export.fp16=false",
        "export.verify_images=2", "bench.batches=[1]", "bench.iters=1", "bench.warmup=0", "bench.samples=1"]


@pytest.mark.slow
def test_run_prepares_the_dataset_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    calls: list[str] = []
    real = prepare.prepare_data

    def counted(cfg: core_config.Config) -> prepare.DataSplits:
        calls.append(cfg.run.name)
        return real(cfg)

    monkeypatch.setattr(prepare, "prepare_data", counted)
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", *TINY])
    summary = run_pipeline(cfg, say=lambda _: None)
    assert summary["stages"] == dict.fromkeys(("train", "compress", "export", "bench", "report"), "done")
    assert (tmp_path / "smoke" / "export" / "model_int8_cpu.onnx").is_file()  # PTQ calibration read the data
    assert len(list((tmp_path / "smoke" / "predict").glob("*.png"))) == 1  # so did the bench samples
    assert calls == ["smoke"]


def test_session_is_shared_and_its_data_prepared_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(prepare, "prepare_data", lambda cfg: calls.append(1) or "splits")
    monkeypatch.setattr(prepare, "write_split", lambda path, splits, seed, val_frac: {})  # "splits" is a stand-in
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", "train.threads=1"])
    with session(cfg, "test") as outer:
        assert outer.device == torch.device("cpu") and outer.dist is not None and outer.is_main
        with session(cfg, "inner", given=outer) as inner:
            assert inner is outer
            assert inner.data() == "splits" and outer.data() == "splits"
    assert calls == [1]


def test_registry_names_are_checked_by_the_stages_loader_only(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"data.format: unknown dataset format 'xview'; allowed: .*coco, .*synthetic"):
        load_config(path, ["data.format=xview", "data.root=/x"])
    cfg = core_config.load_config(path, ["data.format=xview", "data.root=/x", "model.backbone=csp_x"])
    assert (cfg.data.format, cfg.model.backbone) == ("xview", "csp_x")  # a stored config is read as it was written


def test_core_imports_nothing_above_it() -> None:
    for py in (REPO / "src" / "ghostq" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ghostq."):
                assert node.module.startswith("ghostq.core"), f"{py.name} imports {node.module}"
