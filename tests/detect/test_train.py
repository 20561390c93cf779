"""Training: a tiny run writes its artifacts, is skipped when current, resumes exactly, and DDP agrees."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ghostq.core.config import Config, load_config
from ghostq.core.errors import GhostqError
from ghostq.detect.builders import lr_factor
from ghostq.detect.checkpoint import load_checkpoint, load_detector
from ghostq.stages.train import train

REPO = Path(__file__).resolve().parents[2]


def tiny_config(root: Path, name: str, *extra: str) -> Config:
    """configs/smoke.yaml made smaller still, written under `root`, with extra dotted overrides."""
    overrides = [
        f"run.root={root}",
        f"run.name={name}",
        "data.synthetic.images=12",
        "data.img_size=96",
        "data.synthetic.size=96",
        "train.batch_size=4",
        "train.threads=1",
        *extra,
    ]
    return load_config(REPO / "configs" / "smoke.yaml", overrides)


def test_lr_schedule_shape() -> None:
    assert lr_factor(0, 100, 10, 0.05) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.05) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.05) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.05) == pytest.approx(0.05)
    mid = lr_factor(55, 100, 10, 0.05)
    assert 0.05 < mid < 1.0


def test_train_writes_artifacts_and_skips_when_current(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "t1")
    result = train(cfg, show_progress=False)
    fp = tmp_path / "t1" / "fp"
    metrics = json.loads((fp / "metrics.json").read_text())
    assert 0.0 <= metrics["mAP50"] <= 1.0 and metrics["epochs_done"] == 1
    assert (fp / "curves.png").stat().st_size > 1000
    ckpt = load_checkpoint(fp / "best.pt")  # weights_only=True inside
    assert ckpt["classes"] == ["small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"]
    model, _ = load_detector(fp / "best.pt")
    x = torch.rand(1, 3, 96, 96)
    torch.testing.assert_close(model(x).cls_logits, result.model.eval()(x).cls_logits)
    manifest = json.loads((tmp_path / "t1" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done"
    assert set(manifest["stages"]["train"]["artifacts"]) >= {"fp/best.pt", "fp/last.pt", "fp/metrics.json"}
    again = train(cfg, show_progress=False)
    assert again.skipped
    with pytest.raises(GhostqError, match=r"cannot resume: config sections \['loss'\] differ"):
        train(tiny_config(tmp_path, "t1", "train.epochs=2", "loss.box=ciou"), resume=True, show_progress=False)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = train(tiny_config(tmp_path, "straight", "train.epochs=2"), show_progress=False)
    cfg = tiny_config(tmp_path, "resumed", "train.epochs=2")
    first = train(cfg, stop_after=1, show_progress=False)
    assert first.metrics["epochs_done"] == 1
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "partial"
    resumed = train(cfg, resume=True, show_progress=False)
    assert resumed.metrics["epochs_done"] == 2
    a = load_checkpoint(tmp_path / "straight" / "fp" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "fp" / "last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6, msg=key)
    for key in a["ema"]["module"]:
        torch.testing.assert_close(a["ema"]["module"][key], b["ema"]["module"][key], rtol=0, atol=1e-6)
    assert straight.metrics["history"][-1]["loss"] == pytest.approx(resumed.metrics["history"][-1]["loss"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    from ghostq.detect.distributed import DistInfo, cleanup_distributed

    cfg = tiny_config(Path(root), "ddp")
    result = train(cfg, show_progress=False)
    torch.save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, Path(root) / f"rank{rank}.pt")
    cleanup_distributed(DistInfo(rank, world, rank))


@pytest.mark.slow
def test_ddp_two_gloo_processes_end_identical(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert (tmp_path / "ddp" / "fp" / "best.pt").is_file()


@pytest.mark.parametrize(("head", "cls_loss"), [("sigmoid", "bce"), ("softmax", "ce")])
def test_both_heads_train(tmp_path: Path, head: str, cls_loss: str) -> None:
    cfg = tiny_config(
        tmp_path,
        head,
        "train.epochs=3",
        f"model.head={head}",
        f"loss.cls={cls_loss}",
        "train.augment.mosaic=0",
        "train.lr=0.004",
    )
    result = train(cfg, show_progress=False)
    losses = [row["loss"] for row in result.metrics["history"]]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # it learns
    assert result.model.head_type == head
    assert result.model(torch.rand(1, 3, 96, 96)).cls_logits.shape[-1] == 5 + (head == "softmax")
