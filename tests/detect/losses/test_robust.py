"""Robust losses and logit transforms: hand-computed cases, the clipped-CE bound, a training step each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ghostq.detect.losses import DetectionLoss, get_cls_loss, list_cls_losses
from ghostq.detect.losses.robust import (
    LogitClip,
    LogitNorm,
    clipped_ce_bound,
    gce,
    nce_rce,
    sce,
    target_distribution,
)
from ghostq.detect.models.output import DetectorOutput, Targets

LN = math.log
A = LN(1e-4)  # log 0 as clamped: ln 1e-4 = -9.210340


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ LogitClip
def test_logit_clip_continuous_hand_values() -> None:
    # p=2, d=1: ||(3, 4)|| = 5 -> (3, 4) / 5 = (0.6, 0.8); a vector inside the ball is unchanged
    clip = LogitClip(1.0, p=2)
    assert torch.allclose(clip(t(3, 4)), t(0.6, 0.8))
    assert torch.allclose(clip(t(0.3, 0.4)), t(0.3, 0.4))
    # p=inf, d=2: max |z| of (3, -4) is 4 -> (3, -4) * 2 / 4 = (1.5, -2)
    assert torch.allclose(LogitClip(2.0, p=math.inf)(t(3, -4)), t(1.5, -2.0))
    # rows are clipped independently
    out = clip(torch.stack([t(3, 4), t(0.3, 0.4)]))
    assert torch.allclose(out, torch.stack([t(0.6, 0.8), t(0.3, 0.4)]))


def test_logit_clip_official_mode_hand_values() -> None:
    # official, d=2 -> threshold t = 1/d = 0.5: norms above 0.5 are rescaled to 1/t = 2
    clip = LogitClip(2.0, p=2, mode="official")
    assert torch.allclose(clip(t(0.6, 0.8)), t(1.2, 1.6))  # norm 1 > 0.5 -> (0.6, 0.8) / (0.5 * 1)
    assert torch.allclose(clip(t(0.24, 0.32)), t(0.24, 0.32))  # norm 0.4 <= 0.5: unchanged
    assert torch.allclose(clip(t(30, 40)), t(1.2, 1.6))  # norm 50 -> 2


@pytest.mark.parametrize("p", [2, math.inf])
@pytest.mark.parametrize("bound", [0.5, 1.0, 3.0])
def test_clipped_ce_is_bounded(p: float, bound: float) -> None:
    # With ||z||_p <= d every logit difference is at most 2^(1-1/p) d, so CE <= log(1 + (K-1) e^gap)
    clip = LogitClip(bound, p=p)
    gen = torch.Generator().manual_seed(0)
    for k in (2, 6, 16):
        z = torch.randn(4000, k, generator=gen) * torch.logspace(-2, 3, 4000)[:, None]  # tiny to huge
        z[:7] = 0.0
        z[7, 0], z[7, 1:] = 1e6, -1e6  # the extreme pair
        zc = clip(z)
        gap = (zc.amax(-1) - zc.amin(-1)).max().item()
        assert gap <= clip.max_logit_gap() * (1 + 1e-5)
        labels = torch.randint(0, k, (4000,), generator=gen)
        ce = F.cross_entropy(zc, labels, reduction="none")
        assert torch.isfinite(ce).all()
        assert ce.max().item() <= clipped_ce_bound(k, clip) + 1e-4
    # the bound is attained: d e_0 - d e_1 at p = inf reaches gap 2d exactly
    if p == math.inf:
        assert clip.max_logit_gap() == pytest.approx(2 * bound)


def test_logit_norm_hand_values() -> None:
    # (3, 4) / (0.5 * 5) = (1.2, 1.6)
    assert torch.allclose(LogitNorm(0.5)(t(3, 4)), t(1.2, 1.6))
    z = LogitNorm(0.04)(torch.randn(10, 7))
    assert torch.allclose(z.norm(dim=-1), torch.full((10,), 25.0))


@pytest.mark.parametrize("bad", [dict(bound=0), dict(bound=1, p=3), dict(bound=1, mode="x")])
def test_logit_clip_rejects_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        LogitClip(**bad)


# ----------------------------------------------------------------------------- losses, softmax head
# One class (C = 1) + background: logits (ln 1, ln 3) -> p = (0.25, 0.75).
SOFTMAX_Z = torch.tensor([[[0.0, LN(3)]]])
FG = torch.tensor([[True]])


def _args(score: float, fg: bool = True) -> tuple:
    return torch.tensor([[0 if fg else 1]]), torch.tensor([[score]]), torch.tensor([[fg]]), 1


def test_gce_softmax_hand_values() -> None:
    # hard target class 0: (1 - 0.25^0.7) / 0.7 = (1 - 0.378929) / 0.7 = 0.887244
    assert gce(SOFTMAX_Z, *_args(1.0)).item() == pytest.approx(0.887244, abs=1e-5)
    # soft target t_hat 0.5 -> y = (0.5, 0.5): 0.5 * 0.887244 + 0.5 * (1 - 0.75^0.7) / 0.7
    #   0.75^0.7 = 0.817604 -> 0.260566; total 0.573905
    assert gce(SOFTMAX_Z, *_args(0.5)).item() == pytest.approx(0.573905, abs=1e-5)
    # q -> 0 is CE: -ln 0.25 = 1.386294
    assert gce(SOFTMAX_Z, *_args(1.0), q=1e-4).item() == pytest.approx(1.386294, abs=1e-3)


def test_sce_softmax_hand_values() -> None:
    # CE = -ln 0.25 = 1.386294; RCE = -(0.25 ln 1 + 0.75 ln 1e-4) = 0.75 * 9.210340 = 6.907755
    # SCE = 0.1 * 1.386294 + 1.0 * 6.907755 = 7.046385
    assert sce(SOFTMAX_Z, *_args(1.0)).item() == pytest.approx(7.046385, abs=1e-4)
    # background anchor: y = (0, 1): CE = -ln 0.75 = 0.287682, RCE = -0.25 A = 2.302585 -> 2.331353
    assert sce(SOFTMAX_Z, *_args(0.0, fg=False)).item() == pytest.approx(2.331353, abs=1e-4)


def test_nce_rce_softmax_hand_values() -> None:
    # NCE = ln 0.25 / (ln 0.25 + ln 0.75) = 1.386294 / 1.673976 = 0.828143; + RCE 6.907755 = 7.735898
    assert nce_rce(SOFTMAX_Z, *_args(1.0)).item() == pytest.approx(7.735898, abs=1e-4)


# ----------------------------------------------------------------------------- losses, sigmoid head
# Two classes, a foreground anchor of class 1 with t_hat 1: logits (0, ln 3) -> p = (0.5, 0.75), y = (0, 1).
SIG_Z = torch.tensor([[[0.0, LN(3)]]])
SIG_ARGS = (torch.tensor([[1]]), torch.tensor([[1.0]]), FG, 2)


def test_gce_sigmoid_hand_values() -> None:
    # class 0, target 0: (1 - (1 - 0.5)^0.7) / 0.7 = (1 - 0.615572) / 0.7 = 0.549183
    # class 1, target 1: (1 - 0.75^0.7) / 0.7 = (1 - 0.817604) / 0.7 = 0.260566
    assert torch.allclose(gce(SIG_Z, *SIG_ARGS), torch.tensor([[[0.549183, 0.260566]]]), atol=1e-5)


def test_sce_sigmoid_hand_values() -> None:
    # class 0: 0.1 * (-ln 0.5) + -(0.5 * A) = 0.0693147 + 4.605170 = 4.674485
    # class 1: 0.1 * (-ln 0.75) + -(0.25 * A) = 0.0287682 + 2.302585 = 2.331353
    assert torch.allclose(sce(SIG_Z, *SIG_ARGS), torch.tensor([[[4.674485, 2.331353]]]), atol=1e-4)


def test_nce_rce_sigmoid_hand_values() -> None:
    # class 0: ln 0.5 / (ln 0.5 + ln 0.5) = 0.5, + 4.605170 = 5.105170
    # class 1: ln 0.75 / (ln 0.75 + ln 0.25) = 0.171856, + 2.302585 = 2.474441
    assert torch.allclose(nce_rce(SIG_Z, *SIG_ARGS), torch.tensor([[[5.105170, 2.474441]]]), atol=1e-4)


def test_target_distribution() -> None:
    labels, scores = torch.tensor([[1, 2]]), torch.tensor([[0.6, 0.0]])
    fg = torch.tensor([[True, False]])
    y = target_distribution(labels, scores, fg, 2, "softmax")
    assert torch.allclose(y, torch.tensor([[[0.0, 0.6, 0.4], [0.0, 0.0, 1.0]]]))
    y = target_distribution(labels, scores, fg, 2, "sigmoid")
    assert torch.allclose(y, torch.tensor([[[0.0, 0.6], [0.0, 0.0]]]))


def test_registry_heads() -> None:
    for name in ("gce", "sce", "nce_rce"):
        assert name in list_cls_losses("sigmoid") and name in list_cls_losses("softmax")
    with pytest.raises(ValueError, match="softmax"):
        get_cls_loss("ce", head="sigmoid")


# ----------------------------------------------------------------------------- through DetectionLoss
def _fake_output(head: str, nc: int = 3) -> tuple[DetectorOutput, Targets, torch.nn.Parameter]:
    r = torch.arange(8, dtype=torch.float32) * 8 + 4
    y, x = torch.meshgrid(r, r, indexing="ij")
    points = torch.stack([x.flatten(), y.flatten()], -1)
    strides = torch.full((64,), 8.0)
    k = nc + (head == "softmax")
    logits = torch.nn.Parameter(torch.randn(2, 64, k, generator=torch.Generator().manual_seed(0)))
    boxes = torch.cat([points - 6, points + 6], -1).expand(2, 64, 4)
    targets = Targets(
        boxes=torch.tensor([[[10.0, 10.0, 26.0, 30.0], [40.0, 36.0, 60.0, 50.0]], [[4.0, 4.0, 20, 20], [0] * 4]]),
        labels=torch.tensor([[0, 2], [1, 0]]),
        mask=torch.tensor([[True, True], [True, False]]),
    )
    return DetectorOutput(logits, boxes, points, strides, head), targets, logits


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("cls_loss", ["gce", "sce", "nce_rce", "logitnorm", "clip"])
def test_training_step_through_detection_loss(head: str, cls_loss: str) -> None:
    base = "bce" if head == "sigmoid" else "ce"
    transform = None
    if cls_loss == "logitnorm":
        cls_loss, transform = base, LogitNorm(0.04)
    elif cls_loss == "clip":
        cls_loss, transform = base, LogitClip(2.0, p=math.inf if head == "sigmoid" else 2)
    out, targets, logits = _fake_output(head)
    loss_fn = DetectionLoss(3, head=head, cls_loss=cls_loss, logit_transform=transform)
    total, parts = loss_fn(out, targets)
    assert torch.isfinite(total) and parts["num_fg"] > 0 and parts["cls"] > 0
    total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    before = total.item()
    with torch.no_grad():
        logits -= 0.5 * logits.grad / logits.grad.abs().max()  # one descent step lowers the loss
    assert loss_fn(out, targets)[0].item() < before


# ----------------------------------------------------------------------------------------------- config
def _cfg(**loss: object) -> object:
    from ghostq.core.config import Config

    head = loss.pop("head", "sigmoid")
    return Config.model_validate({"model": {"head": head}, "loss": loss})


def test_config_accepts_the_robust_keys_and_builds_the_loss() -> None:
    from ghostq.detect.builders import build_loss_from_config
    from ghostq.detect.losses.open_set import OpenSetHook

    cfg = _cfg(cls="bce", logit_clip={"bound": 2.0})
    loss = build_loss_from_config(cfg, 5)
    assert isinstance(loss.logit_transform, LogitClip) and loss.logit_transform.p == math.inf  # sigmoid: inf
    cfg = _cfg(head="softmax", cls="ce", logit_clip={"bound": 2.0, "mode": "official"})
    assert build_loss_from_config(cfg, 5).logit_transform.p == 2  # softmax: 2
    cfg = _cfg(cls="bce", logit_clip={"p": float("inf"), "bound": 1.0})  # YAML .inf
    assert cfg.loss.logit_clip.p == "inf"
    loss = build_loss_from_config(_cfg(head="softmax", cls="logitnorm", logitnorm_tau=0.1), 5)
    assert isinstance(loss.logit_transform, LogitNorm) and loss.cls_loss.name == "ce"
    assert build_loss_from_config(_cfg(cls="logitnorm"), 5).cls_loss.name == "bce"
    for name in ("gce", "sce", "nce_rce"):
        for head in ("sigmoid", "softmax"):
            assert build_loss_from_config(_cfg(head=head, cls=name), 5).cls_loss.name == name
    cfg = _cfg(cls="varifocal", open_set={"method": "open_sampling", "eta": 0.5})
    hook = build_loss_from_config(cfg, 2, [3, 1]).assignment_hook
    assert isinstance(hook, OpenSetHook) and torch.allclose(hook.labeler.prior, torch.tensor([0.25, 0.75]))


def test_cls_params_reach_the_loss_and_unknown_ones_are_one_line() -> None:
    """loss.cls_params (the sweep's knob: GCE q, SCE / NCE+RCE alpha, beta) is passed to the loss function."""
    from ghostq.core.errors import GhostqError
    from ghostq.detect.builders import build_loss_from_config

    loss = build_loss_from_config(_cfg(head="softmax", cls="gce", cls_params={"q": 0.4}), 5)
    assert loss.cls_loss_kwargs == {"q": 0.4}
    z, labels = torch.randn(2, 7, 6), torch.randint(0, 5, (2, 7))
    scores, fg = torch.rand(2, 7), torch.rand(2, 7) > 0.5
    torch.testing.assert_close(loss.cls_loss.fn(z, labels, scores, fg, 5, **loss.cls_loss_kwargs),
                               gce(z, labels, scores, fg, 5, q=0.4))
    assert not torch.allclose(gce(z, labels, scores, fg, 5, q=0.4), gce(z, labels, scores, fg, 5))
    with pytest.raises(GhostqError, match=r"^loss.cls_params: sce takes alpha, beta, log_clamp; got q$"):
        build_loss_from_config(_cfg(cls="sce", cls_params={"q": 0.5}), 5)


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (dict(cls="ce"), "with a sigmoid head use one of varifocal, bce, gce"),
        (dict(head="softmax", cls="bce"), "with a softmax head use one of ce, gce"),
        (dict(cls="logitnorm", logit_clip={"bound": 1.0}), "cannot be combined"),
        (dict(cls="bce", logit_clip={"bound": 0}), "logit_clip.bound"),
        (dict(cls="bce", logit_clip={"p": 3}), "logit_clip.p"),
        (dict(cls="bce", logit_clip={"mode": "fast"}), "logit_clip.mode"),
        (dict(cls="bce", logit_clip={"bound": 1, "tau": 2}), "logit_clip.tau: unknown key"),
        (dict(cls="bce", open_set={"method": "mixup"}), "open_set.method"),
        (dict(cls="bce", open_set={"eta": -1}), "open_set.eta"),
        (dict(cls="focal"), "loss.cls"),
    ],
)
def test_config_rejects_bad_robust_settings(loss: dict, message: str) -> None:
    from ghostq.core.config import REGISTRIES, Config, validate_sections
    from ghostq.core.errors import ConfigError
    from ghostq.stages.config import registries

    head = loss.pop("head", "sigmoid")
    with pytest.raises(ConfigError, match=message):
        validate_sections(Config, {"model": {"head": head}, "loss": loss}, "cfg.yaml", {REGISTRIES: registries()})
