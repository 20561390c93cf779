"""`ghostq compress` end to end on a tiny run: artifacts, rebuild from bits, skipping, the CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ghostq.compress.pipeline import load_quantized
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import load_config
from ghostq.core.errors import GhostqError
from ghostq.stages.compress import compress
from ghostq.stages.train import train

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.batch_size=4",
        "train.threads=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={root}", "run.name=c", *TINY])
    train(cfg, show_progress=False)
    return cfg


def test_ghost_budget_writes_artifacts_and_rebuilds(trained):
    cc = CompressConfig(method="ghost", epochs=1, batch_size=4, hq={"mode": "budget"}, distill={"scm": "off"},
                        ptq={"batches": 1})
    result = compress(trained, cc, show_progress=False)
    out = result.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "bits.json", "bits.png", "metrics.json"]
    bits = json.loads((out / "bits.json").read_text())
    quantized = [v["bits"] for v in bits["layers"].values() if v["bits"] != 32]
    assert len(set(quantized)) > 1 and max(quantized) <= 8  # a size budget of W4 gives mixed widths
    assert bits["size_mb"] <= bits["target"] * (1 + 1e-9)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["size_mb"] == pytest.approx(bits["size_mb"])
    assert metrics["cost"]["quantized"]["size_mb"] < metrics["cost"]["fp32"]["size_mb"] / 4
    payload = torch.load(out / "best.pt", weights_only=True)
    assert payload["bits"] == bits["bits"] if "bits" in bits else True
    model, _ = load_quantized(out / "best.pt")
    x = torch.rand(2, 3, 96, 96)
    result.model.eval()
    assert torch.equal(model(x).cls_logits, result.model(x).cls_logits)
    again = compress(trained, cc, show_progress=False)
    assert again.skipped


def test_gt_switch_and_ptq_run(trained):
    cc = CompressConfig(method="ghost", epochs=1, batch_size=4, hq={"mode": "rule", "threshold": 50.0},
                        distill={"scm": "gt"}, ptq={"batches": 1})
    m = compress(trained, cc, force=True, max_steps=2, show_progress=False).metrics
    assert 0.0 <= m["history"][0]["switch_on"] <= 1.0 and m["mAP50"] is not None
    ptq = compress(trained, CompressConfig(method="ptq", ptq={"batches": 1, "calib": "mse"}), force=True,
                   show_progress=False).metrics
    assert ptq["avg_weight_bits"] == pytest.approx(8.0, abs=0.1) and ptq["train_seconds"] == 0.0


def test_missing_checkpoint_is_one_line_error(tmp_path):
    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={tmp_path}", "run.name=none", *TINY])
    with pytest.raises(GhostqError, match="no full-precision checkpoint"):
        compress(cfg, CompressConfig(method="ptq"))


def test_cli_reads_compress_section(tmp_path, trained):
    import yaml
    from typer.testing import CliRunner

    from ghostq.cli import compress_commands  # noqa: F401  (registers the command)
    from ghostq.cli.app import app

    data = trained.model_dump(mode="json")
    data.pop("compress", None)
    data["compress"] = {"method": "ptq", "ptq": {"batches": 1}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["compress", str(path), "run.name=c", "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text())["method"] == "ptq"
    bad = CliRunner().invoke(app, ["compress", str(path), "compress.hq.mode=nope"])
    assert bad.exit_code != 0


def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from ghostq.detect.distributed import DistInfo, cleanup_distributed

    torch.set_num_threads(1)
    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={root}", "run.name=c", *TINY])
    cc = CompressConfig(method="qat", epochs=1, batch_size=2, hq={"mode": "uniform"}, ptq={"batches": 1})
    result = compress(cfg, cc, force=True, max_steps=2, show_progress=False)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save(state, Path(root) / f"rank{rank}.pt")
    cleanup_distributed(DistInfo(rank, world, rank))


@pytest.mark.slow
def test_qat_under_ddp_two_gloo_processes_agree(trained):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = trained.run.root
    mp.spawn(_ddp_worker, args=(2, port, str(root)), nprocs=2, join=True)
    a = torch.load(root / "rank0.pt", weights_only=True)
    b = torch.load(root / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k]) for k in a)
    assert (root / "c" / "ghost" / "best.pt").is_file()
