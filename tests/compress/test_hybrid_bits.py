"""HQ: 1-D k-means, GHOST's threshold rule, the budget search, bits.json and bits.png."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest

from ghostq.compress.bits_plot import plot_bits
from ghostq.compress.fold_bn import fold_bn
from ghostq.compress.hybrid_bits import LayerCurve, budget_bits, error_curve, hq_bits, kmeans_1d, rule_bits
from ghostq.compress.quantize import QuantConfig
from ghostq.core.compress_config import HQConfig


def test_kmeans_error_by_hand():
    x = np.array([0.0, 0.1, 1.0, 1.2, 5.0])
    centres, mse = kmeans_1d(x, 3)
    assert np.allclose(centres, [0.05, 1.1, 5.0])
    assert mse == pytest.approx((2 * 0.05**2 + 2 * 0.1**2) / 5)
    assert kmeans_1d(x, 8)[1] == 0.0  # fewer distinct values than centres


def test_rule_first_n_below_threshold():
    levels = np.array([-0.3, -0.1, 0.1, 0.3])  # exactly 4 values: 2 bits reach zero error
    w = np.random.default_rng(0).choice(levels, 500)
    curve = error_curve(w)
    assert curve[2] == 0 and rule_bits(curve) == 2
    wide = np.random.default_rng(0).normal(0, 0.1, 4000)
    curve = error_curve(wide)
    assert all(curve[a] >= curve[b] for a, b in zip(range(2, 8), range(3, 9), strict=True))
    assert rule_bits(curve, threshold=0.1) == 8  # 1e6 * MSE of N(0, 0.1) stays above 0.1 up to 8 bits
    n = rule_bits(curve, threshold=curve[5] * 1.01)
    assert n == 5


def test_budget_is_optimal_on_a_small_case():
    rng = np.random.default_rng(1)
    layers = []
    for i, p in enumerate([100, 400, 250]):
        errs = np.sort(rng.random(7))[::-1] * (i + 1)
        layers.append(LayerCurve(f"l{i}", dict(zip(range(2, 9), errs, strict=True)), p, p * 10))
    target = 5.0
    got = budget_bits(layers, "avg_bits", target)
    total_p = sum(lay.params for lay in layers)
    avg = sum(lay.params * got[lay.name] for lay in layers) / total_p
    assert avg <= target + 1e-9
    best = min(
        (sum(lay.curve[b] * lay.params for lay, b in zip(layers, combo, strict=True)), combo)
        for combo in itertools.product(range(2, 9), repeat=3)
        if sum(lay.params * b for lay, b in zip(layers, combo, strict=True)) / total_p <= target
    )
    ours = sum(lay.curve[got[lay.name]] * lay.params for lay in layers)
    assert ours <= best[0] * 1.25  # greedy stays near the exhaustive optimum
    with pytest.raises(ValueError, match="below the cost"):
        budget_bits(layers, "avg_bits", 1.5)


def test_hq_bits_budget_on_toy(toy, tmp_path):
    model = fold_bn(copy.deepcopy(toy))
    qc = QuantConfig()
    out = hq_bits(model, qc, (1, 3, 16, 16), HQConfig(mode="budget", budget="size_mb", target_uniform_bits=4))
    uniform = hq_bits(model, qc, (1, 3, 16, 16), HQConfig(mode="budget", budget="size_mb", target=1e9))
    assert out["bits"]["pred"] == 32
    assert out["json"]["size_mb"] <= out["json"]["target"] * (1 + 1e-9)
    assert uniform["bits"]["stem.conv"] == 8  # a loose budget keeps 8 bits
    pinned = hq_bits(model, QuantConfig(layer_bits={"body.*": 6}), (1, 3, 16, 16), HQConfig(mode="rule"))
    assert pinned["bits"]["body.conv"] == 6 and "body.conv" not in [
        n for n, v in pinned["json"]["layers"].items() if v["error"]]
    rule = hq_bits(model, qc, (1, 3, 16, 16), HQConfig(mode="rule", threshold=0.1))
    layer = rule["json"]["layers"]["body.conv"]
    assert set(layer) == {"bits", "error", "params", "macs"} and len(layer["error"]) == 7
    path = tmp_path / "bits.json"
    path.write_text(json.dumps(rule["json"]))
    png = plot_bits(json.loads(path.read_text()), tmp_path / "bits.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
