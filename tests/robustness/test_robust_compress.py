"""GHOST compression robustness: the Gumbel switch as published (fixed projections, ~half open, deterministic in
eval), a learned switch that cannot collapse, every HQ budget kind with its default target, raw vs folded weights
for HQ, and the one-line errors of an unreachable budget."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli import main
from ghostq.cli.app import app
from ghostq.compress.distill import GumbelSwitch, OSTLoss, ost_distance
from ghostq.compress.fold_bn import fold_bn
from ghostq.compress.hybrid_bits import error_curve, hq_bits
from ghostq.compress.qat import qat_param_groups
from ghostq.compress.quantize import QuantConfig
from ghostq.core.compress_config import CompressConfig, HQConfig
from ghostq.core.errors import ConfigError
from ghostq.detect.models.layers import ConvBNAct

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.batch_size=4",
        "train.threads=1"]


class _Toy(nn.Module):
    """stem / body ConvBNAct with non-trivial BN, and a 1x1 prediction conv (kept FP by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 8, 3, 2)
        self.body = ConvBNAct(8, 16, 3, 1)
        self.pred = nn.Conv2d(16, 2, 1)
        g = torch.Generator().manual_seed(0)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 4 + 0.05)
                m.weight.data.copy_(torch.rand(n, generator=g) * 3 + 0.2)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(self.body(self.stem(x)))

    def first_conv_name(self) -> str:
        return "stem.conv"

    def prediction_layer_names(self) -> list[str]:
        return ["pred"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


def _features(batch: int = 16, channels: int = 16) -> tuple[dict, dict]:
    return ({"a": torch.randn(batch, channels, 6, 6)}, {"a": torch.randn(batch, channels, 6, 6)})


# ---- item 5: the Gumbel switch -------------------------------------------------------------------------------


def test_gumbel_switch_projections_fixed_no_gradient_and_half_open():
    student = nn.Conv2d(16, 16, 1)  # the student layer whose output is distilled
    ost = OSTLoss({"a": 16}, "gumbel", proj_dim=32)
    before = copy.deepcopy(ost.state_dict())
    assert not any(p.requires_grad for p in ost.parameters())
    groups = qat_param_groups([student, ost], 1e-2)  # what compress's optimizer gets
    optimized = {id(p) for g in groups for p in g["params"]}
    assert not optimized & {id(p) for p in ost.parameters()}
    assert optimized == {id(p) for p in student.parameters()}
    opt = torch.optim.AdamW(groups, lr=1e-2)
    shares = []
    for _ in range(200):
        x, t = _features()
        loss, stats = ost({"a": student(x["a"])}, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(p.grad is None for p in ost.parameters())
        shares.append(stats["switch_on"])
    assert all(torch.equal(before[k], v) for k, v in ost.state_dict().items())
    assert 0.4 < sum(shares) / len(shares) < 0.6  # GHOST's gate stays near half open
    assert 0.35 < sum(shares[-50:]) / 50 < 0.65


def test_gumbel_switch_eval_is_deterministic_threshold():
    switch = GumbelSwitch(16, 32)
    s, t = _features(64)
    train_gates = [switch(s["a"], t["a"]) for _ in range(5)]
    assert any(not torch.equal(train_gates[0], g) for g in train_gates[1:])  # one Gumbel sample per decision
    switch.eval()
    gates = [switch(s["a"], t["a"]) for _ in range(5)]
    assert all(torch.equal(gates[0], g) for g in gates[1:])
    assert torch.equal(gates[0], (switch.logits(s["a"], t["a"]) > 0).float())
    with torch.enable_grad():  # eval mode means no noise even with grad enabled
        assert torch.equal(switch(s["a"], t["a"]), gates[0])
    ost = OSTLoss({"a": 16}, "gumbel", proj_dim=32).eval()
    assert ost(s, t)[1] == ost(s, t)[1]


def _train_gate(objective: str, steps: int = 300) -> tuple[list[float], bool]:
    """Train a learned switch on random features; (open share per step, projections changed)."""
    torch.manual_seed(0)
    ost = OSTLoss({"a": 16}, "gumbel_learned", proj_dim=32)
    switch = ost.switches[0]
    start = switch.proj_s.weight.detach().clone()
    opt = torch.optim.Adam([p for p in ost.parameters() if p.requires_grad], lr=1e-2)
    shares = []
    for _ in range(steps):
        s, t = _features()
        if objective == "ost":
            loss, stats = ost(s, t)
            share = stats["switch_on"]
        else:  # the old learned gate: the non-negative distance alone
            gate = switch(s["a"], t["a"])
            loss, share = (gate * ost_distance(s["a"], t["a"])).mean(), float(gate.detach().mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        shares.append(share)
    return shares, not torch.equal(start, switch.proj_s.weight)


def test_learned_gate_does_not_collapse():
    shares, changed = _train_gate("ost")
    assert changed  # the projections are trained
    assert min(sum(shares[i:i + 50]) / 50 for i in range(0, 300, 50)) > 0.3
    old, _ = _train_gate("distance_only")  # the objective that collapses, for contrast
    assert sum(old[-50:]) / 50 < 0.1


def test_learned_gate_rate_term_holds_the_open_target():
    ost = OSTLoss({"a": 16}, "gumbel_learned", proj_dim=32, open_target=0.8, open_weight=8.0)
    opt = torch.optim.Adam([p for p in ost.parameters() if p.requires_grad], lr=1e-2)
    shares = []
    for _ in range(300):
        loss, stats = ost(*_features())
        opt.zero_grad()
        loss.backward()
        opt.step()
        shares.append(stats["switch_on"])
    assert 0.65 < sum(shares[-50:]) / 50 < 0.95


# ---- items 8 and 27: HQ budgets and what k-means clusters -----------------------------------------------------

SHAPE = (1, 3, 16, 16)


@pytest.mark.parametrize(("kind", "key"), [("avg_bits", "avg_weight_bits"), ("size_mb", "size_mb"),
                                           ("bops_g", "bops_g")])
def test_every_budget_kind_with_the_default_target(kind: str, key: str):
    folded = fold_bn(_Toy().eval())
    qc = QuantConfig()
    out = hq_bits(folded, qc, SHAPE, HQConfig(mode="budget", budget=kind))
    searched = ["stem.conv", "body.conv"]
    uniform = hq_bits(folded, QuantConfig(layer_bits=dict.fromkeys(searched, 4)), SHAPE, HQConfig(mode="uniform"))
    assert out["json"]["target"] == pytest.approx(uniform["json"][key])  # default: the cost at uniform 4 bits
    assert out["json"][key] <= out["json"]["target"] * (1 + 1e-9)
    assert out["json"]["budget"] == kind and out["bits"]["pred"] == 32
    assert all(2 <= out["bits"][n] <= 8 for n in searched)


def test_unreachable_budget_is_one_line_config_error():
    folded = fold_bn(_Toy().eval())
    with pytest.raises(ConfigError) as err:
        hq_bits(folded, QuantConfig(), SHAPE, HQConfig(mode="budget", budget="avg_bits", target=2.5))
    assert str(err.value) == ("compress.hq.target=2.5: the avg_bits budget 2.5 cannot be met, even 2 bits on every "
                              "searched layer cost more; raise it or lower compress.hq.min_bits")
    with pytest.raises(ConfigError, match=r"^compress\.hq\.target_uniform_bits=2: the size_mb budget"):
        hq_bits(folded, QuantConfig(), SHAPE, HQConfig(mode="budget", target_uniform_bits=2, min_bits=3))


def test_hq_clusters_raw_weights_by_default_and_folded_on_request():
    toy = _Toy().eval()
    folded = fold_bn(copy.deepcopy(toy))
    assert HQConfig().weights == "raw"
    raw = hq_bits(folded, QuantConfig(), SHAPE, HQConfig(mode="rule"))
    fold = hq_bits(folded, QuantConfig(), SHAPE, HQConfig(mode="rule", weights="folded"))
    assert raw["json"]["weights"] == "raw" and fold["json"]["weights"] == "folded"
    for name in ("stem.conv", "body.conv"):
        want_raw = error_curve(toy.get_submodule(name).weight.detach().numpy())
        want_folded = error_curve(folded.get_submodule(name).weight.detach().numpy())
        assert raw["json"]["layers"][name]["error"] == {str(k): v for k, v in want_raw.items()}
        assert fold["json"]["layers"][name]["error"] == {str(k): v for k, v in want_folded.items()}
        assert want_raw != want_folded
    assert raw["bits"] != fold["bits"]  # with T = 0.1 absolute, the widths differ on this model
    assert raw["json"]["size_mb"] != fold["json"]["size_mb"]
    # costs are the folded model's either way (the executed weights)
    assert raw["json"]["params"] == fold["json"]["params"]
    with pytest.raises(pydantic_error()):
        HQConfig(weights="bn")


def pydantic_error() -> type[Exception]:
    from pydantic import ValidationError

    return ValidationError


# ---- end to end: the CLI on a tiny run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("runs")
    overrides = [f"run.root={root}", "run.name=rc", *TINY]
    result = CliRunner().invoke(app, ["train", str(REPO / "configs" / "smoke.yaml"), *overrides])
    assert result.exit_code == 0, result.output
    return root / "rc", overrides


def _compress(overrides: list[str], *extra: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["compress", str(REPO / "configs" / "smoke.yaml"), *overrides,
                                    "compress.epochs=1", "compress.batch_size=4", "compress.ptq.batches=1", *extra])


def test_cli_avg_bits_budget_gumbel_switch_recorded(tiny_run):
    run, overrides = tiny_run
    result = _compress(overrides, "compress.hq.mode=budget", "compress.hq.budget=avg_bits",
                       "compress.distill.scm=gumbel", "--force")
    assert result.exit_code == 0, result.output
    bits = json.loads((run / "ghost" / "bits.json").read_text())
    assert bits["budget"] == "avg_bits" and bits["weights"] == "raw"
    assert bits["avg_weight_bits"] <= bits["target"] * (1 + 1e-9)
    metrics = json.loads((run / "ghost" / "metrics.json").read_text())
    switch = metrics["switch"]
    assert switch["scm"] == "gumbel" and len(switch["open_per_epoch"]) == 1
    assert switch["open_trace"] and all(0.0 <= p["open"] <= 1.0 for p in switch["open_trace"])
    assert switch["open_per_epoch"][0] == pytest.approx(metrics["history"][0]["switch_on"])


def test_cli_unreachable_budget_one_red_line_nothing_written(tiny_run, monkeypatch, capsys):
    run, overrides = tiny_run
    ghost = run / "ghost"
    before = {p.name: p.read_bytes() for p in ghost.iterdir()} if ghost.is_dir() else {}
    monkeypatch.setattr(sys, "argv", [
        "ghostq", "compress", str(REPO / "configs" / "smoke.yaml"), *overrides, "compress.hq.mode=budget",
        "compress.hq.budget=size_mb", "compress.hq.target=0.0001", "--force"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip()]
    assert lines == ["error: compress.hq.target=0.0001: the size_mb budget 0.0001 cannot be met, even 2 bits on "
                     "every searched layer cost more; raise it or lower compress.hq.min_bits"]
    after = {p.name: p.read_bytes() for p in ghost.iterdir()} if ghost.is_dir() else {}
    assert after == before


def test_compress_config_accepts_the_new_fields():
    cc = CompressConfig(hq={"weights": "folded"}, distill={"scm": "gumbel_learned", "open_target": 0.6})
    assert cc.hq.weights == "folded" and cc.distill.scm == "gumbel_learned"
    assert CompressConfig().hq.weights == "raw"
