"""Size and BOPs of a 3-layer toy model equal a hand count (FP, priced bits, and the quantized model)."""

from __future__ import annotations

import copy

import pytest

from ghostq.compress.cost import MB, model_cost
from ghostq.compress.fold_bn import fold_bn
from ghostq.compress.quantize import QuantConfig, init_weight_scales, quantize

SHAPE = (1, 3, 16, 16)
# stem 3->8 k3 s2 (out 8x8), body 8->8 k3 (out 8x8), pred 8->2 1x1 with bias
MACS = {"stem.conv": 8 * 8 * 8 * 3 * 9, "body.conv": 8 * 8 * 8 * 8 * 9, "pred": 2 * 8 * 8 * 8}


def test_fp_model_by_hand(toy):
    cost = model_cost(toy, SHAPE)
    assert cost.params == 216 + 16 + 576 + 16 + 16 + 2  # convs + BN (gamma, beta) + pred weight and bias
    assert cost.macs == sum(MACS.values()) == 13824 + 36864 + 1024
    assert cost.size_mb == pytest.approx(842 * 4 / MB)
    assert cost.bops_g == pytest.approx(51712 * 32 * 32 / 1e9)
    assert cost.avg_weight_bits == 32


def _hand_quantized() -> tuple[float, float]:
    bits = (216 * 8 + 8 * 32) + (576 * 4 + 8 * 32) + (16 * 32 + 2 * 32)  # folded biases stay FP32
    bops = MACS["stem.conv"] * 8 * 8 + MACS["body.conv"] * 4 * 8 + MACS["pred"] * 32 * 32
    return bits / 8 / MB, bops / 1e9


def test_quantized_model_by_hand(toy):
    q = quantize(fold_bn(copy.deepcopy(toy)), QuantConfig(layer_bits={"body.conv": 4}))
    init_weight_scales(q)
    cost = model_cost(q, SHAPE)
    size_mb, bops_g = _hand_quantized()
    assert [(r.name, r.weight_bits, r.act_bits) for r in cost.layers] == [
        ("stem.conv", 8, 8), ("body.conv", 4, 8), ("pred", 32, 32)]
    assert cost.size_mb == pytest.approx(size_mb)
    assert cost.size_mb * MB * 8 == 5120
    assert cost.bops_g == pytest.approx(bops_g)
    assert cost.bops_g * 1e9 == pytest.approx(3112960)
    assert cost.avg_weight_bits == pytest.approx((216 * 8 + 576 * 4 + 16 * 32) / 808)
    assert "total" in cost.table()


def test_priced_bits_equal_quantized(toy):
    folded = fold_bn(copy.deepcopy(toy))
    priced = model_cost(folded, SHAPE, bits={"stem.conv": 8, "body.conv": 4})
    size_mb, bops_g = _hand_quantized()
    assert priced.size_mb == pytest.approx(size_mb) and priced.bops_g == pytest.approx(bops_g)
