"""OST attention distance, the switch modes, layer pairing."""

from __future__ import annotations

import pytest
import torch

from ghostq.compress.distill import (
    FeatureTap,
    OSTLoss,
    attention_vector,
    distill_layer_names,
    feature_channels,
    hard_gumbel_sigmoid,
    ost_distance,
)
from ghostq.detect.models import build_detector


def test_attention_vector_by_hand():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0] = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    f[0, 1] = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    a = torch.tensor([1.0, 2.0, 0.0, 2.0])  # mean over channels of F^2
    assert torch.allclose(attention_vector(f)[0], a / a.norm())
    g = f.clone()
    g[0, 0, 1, 1] = 3.0
    b = torch.tensor([1.0, 2.0, 0.0, 6.5])
    d = ((a / a.norm() - b / b.norm()) ** 2).mean()
    assert torch.allclose(ost_distance(f, g), d.reshape(1))
    assert ost_distance(f, 5 * f).abs().max() < 1e-7  # scale-free


def test_switch_modes():
    torch.manual_seed(0)
    s = {"a": torch.randn(4, 3, 5, 5, requires_grad=True)}
    t = {"a": torch.randn(4, 3, 5, 5)}
    d = ost_distance(s["a"], t["a"])
    off, _ = OSTLoss({"a": 3}, "off")(s, t)
    assert torch.allclose(off, d.mean())
    gate = torch.tensor([1.0, 0.0, 1.0, 0.0])
    gt, stats = OSTLoss({"a": 3}, "gt")(s, t, gate)
    assert torch.allclose(gt, (gate * d).mean()) and stats["switch_on"] == 0.5
    gum = OSTLoss({"a": 3}, "gumbel", proj_dim=8)
    loss, stats = gum(s, t)
    loss.backward()
    assert gum.switches[0].proj_t.weight.grad is None  # GHOST: projections never trained
    gate = gum.switches[0](s["a"], t["a"])
    assert stats["switch_on"] in (0.0, 0.25, 0.5, 0.75, 1.0) and set(gate.unique().tolist()) <= {0.0, 1.0}
    learned = OSTLoss({"a": 3}, "gumbel_learned", proj_dim=8)
    loss, stats = learned(s, t)
    loss.backward()
    assert learned.switches[0].proj_t.weight.grad is not None and "switch_loss" in stats
    with pytest.raises(ValueError):
        OSTLoss({"a": 3}, "gt")(s, t)


def test_hard_gumbel_is_binary_with_gradient():
    x = torch.zeros(1000, requires_grad=True)
    y = hard_gumbel_sigmoid(x)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert 0.4 < float(y.detach().mean()) < 0.6
    y.sum().backward()
    assert x.grad.abs().sum() > 0


def test_pairing_on_detector():
    m = build_detector("csp_n", 3)
    names = distill_layer_names(m)
    assert "backbone.stages.0" in names and "neck.bu_blocks.1" in names
    assert not any(n.startswith("backbone.stages.0.") for n in names)
    ch = feature_channels(m, names, torch.zeros(1, 3, 64, 64))
    tap = FeatureTap(m, names)
    m(torch.zeros(1, 3, 64, 64))
    tap.remove()
    assert {n: f.shape[1] for n, f in tap.features.items()} == ch
