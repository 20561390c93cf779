"""HQ: per-layer weight bit widths from k-means error curves (GHOST's rule, or a cost budget).

GHOST's rule (paper and code): "cluster the layer's weights with k-means into 2^n centres for n = 2..8;
score = 1e6 * mean squared distance of each weight to its centre; the layer gets the first n whose score is
below a threshold T (T = 0.1), else 8 bits." GHOST clusters the raw conv weights; ghostq can also cluster the
BN-folded weights that are executed (``hq.weights``). ghostq adds a budget mode: from the same curves, choose widths
that meet a target average weight bit width, size (MB) or BOPs (G) with the least total k-means error
(sum over layers of numel * mean squared distance), greedily over the curves.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ghostq.core.errors import ConfigError

BITS = tuple(range(2, 9))
SCORE_SCALE = 1e6  # GHOST: score = 1e6 * mean squared distance
BudgetKind = Literal["avg_bits", "size_mb", "bops_g"]
TOTALS_KEY = {"avg_bits": "avg_weight_bits", "size_mb": "size_mb", "bops_g": "bops_g"}  # budget -> ModelCost.totals


def _kmeanspp(points: np.ndarray, weight: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on weighted scalars (D^2 sampling)."""
    centres = [points[rng.choice(points.size, p=weight / weight.sum())]]
    d2 = (points - centres[0]) ** 2
    for _ in range(1, k):
        p = weight * d2
        total = p.sum()
        if total <= 0:
            break
        c = points[rng.choice(points.size, p=p / total)]
        centres.append(c)
        d2 = np.minimum(d2, (points - c) ** 2)
    return np.unique(np.asarray(centres))


def _lloyd_sorted(points: np.ndarray, weight: np.ndarray, centres: np.ndarray, iters: int = 300) -> np.ndarray:
    """Weighted Lloyd iterations on sorted scalars: each cluster is a contiguous run (prefix sums)."""
    w1 = np.concatenate([[0.0], np.cumsum(weight)])
    wx = np.concatenate([[0.0], np.cumsum(weight * points)])
    for _ in range(iters):
        bounds = np.concatenate([[0], np.searchsorted(points, (centres[1:] + centres[:-1]) / 2), [points.size]])
        mass, moment = w1[bounds[1:]] - w1[bounds[:-1]], wx[bounds[1:]] - wx[bounds[:-1]]
        new = centres.copy()
        full = mass > 0
        new[full] = moment[full] / mass[full]
        new.sort()
        if np.allclose(new, centres, rtol=0, atol=1e-12 * max(1.0, float(np.abs(points).max()))):
            return new
        centres = new
    return centres


def kmeans_1d(values: np.ndarray, k: int, seed: int = 0, bins: int = 8192) -> tuple[np.ndarray, float]:
    """k-means of scalars (k-means++ seeding + Lloyd, as scikit-learn's KMeans that GHOST's code calls);
    returns (centres, mean squared distance of each weight to its nearest centre).

    The centres are fitted on a ``bins``-bin histogram (bin centres weighted by counts; a bin is 1/8192 of the
    range, far below the spacing of 256 centres) and the error is measured exactly on every weight. Lloyd's
    iterations from a quantile init got stuck at 3-4x this error for k = 256; k-means++ seeding does not.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("k-means of an empty weight tensor")
    uniq = np.unique(x)
    if uniq.size <= k:
        return uniq, 0.0
    if uniq.size <= bins:
        points, weight = np.unique(x, return_counts=True)
    else:
        counts, edges = np.histogram(x, bins=bins)
        keep = counts > 0
        points, weight = ((edges[1:] + edges[:-1]) / 2)[keep], counts[keep]
    weight = weight.astype(np.float64)
    rng = np.random.default_rng(seed)
    centres = _lloyd_sorted(points, weight, _kmeanspp(points, weight, k, rng))
    nearest = centres[np.searchsorted((centres[1:] + centres[:-1]) / 2, x)]
    return centres, float(np.mean((x - nearest) ** 2))


def error_curve(weights: np.ndarray, bits: Sequence[int] = BITS) -> dict[int, float]:
    """GHOST score 1e6 * MSE for each n in ``bits`` (made non-increasing in n: more centres never hurt)."""
    curve, best = {}, np.inf
    for n in sorted(bits):
        best = min(best, SCORE_SCALE * kmeans_1d(weights, 2**n)[1])
        curve[n] = best
    return curve


def rule_bits(curve: Mapping[int, float], threshold: float = 0.1, fallback: int = 8) -> int:
    """GHOST's rule: the first n (ascending) whose score is below ``threshold``, else ``fallback`` (8)."""
    for n in sorted(curve):
        if curve[n] < threshold:
            return n
    return fallback


@dataclass
class LayerCurve:
    """One quantized layer: its error curve, weight count and MACs (what a budget prices)."""

    name: str
    curve: dict[int, float]
    params: int
    macs: int


def budget_bits(layers: Sequence[LayerCurve], kind: BudgetKind, target: float, *, act_bits: int = 8,
                fixed: float = 0.0, min_bits: int = 2, max_bits: int = 8) -> dict[str, int]:
    """Widths meeting ``sum(cost) <= target`` with the least total error (greedy over the curves).

    Cost per layer is linear in its bits: ``avg_bits``: params * b / sum(params); ``size_mb``: params * b / 8
    / 2^20 (+ ``fixed``: FP layers, biases, norms); ``bops_g``: MACs * b * act_bits / 1e9 (+ ``fixed``).
    Start at ``max_bits``; repeatedly take the one-bit drop with the least added error per unit of cost saved
    until the target is met, then spend any slack on the raises that remove the most error per unit of cost.
    """
    if not layers:
        return {}
    total_params = sum(lay.params for lay in layers)
    unit = {
        "avg_bits": lambda lay: lay.params / total_params,
        "size_mb": lambda lay: lay.params / 8 / 2**20,
        "bops_g": lambda lay: lay.macs * act_bits / 1e9,
    }[kind]
    c = {lay.name: unit(lay) for lay in layers}
    err = {lay.name: (lambda b, lay=lay: lay.curve[b] * lay.params) for lay in layers}
    bits = {lay.name: max_bits for lay in layers}

    def cost() -> float:
        return fixed + sum(c[n] * b for n, b in bits.items())

    floor = fixed + sum(c[n] * min_bits for n in bits)
    if floor > target * (1 + 1e-9):
        raise ValueError(f"budget {kind}={target:.6g} is below the cost at {min_bits} bits everywhere ({floor:.6g})")
    while cost() > target * (1 + 1e-12):
        cands = [(err[n](b - 1) - err[n](b)) / max(c[n], 1e-30) for n, b in bits.items() if b > min_bits]
        names = [n for n, b in bits.items() if b > min_bits]
        bits[names[int(np.argmin(cands))]] -= 1
    while True:
        slack = target - cost()
        raises = [(n, (err[n](b) - err[n](b + 1)) / max(c[n], 1e-30)) for n, b in bits.items()
                  if b < max_bits and c[n] <= slack * (1 + 1e-12)]
        if not raises:
            return bits
        best = max(raises, key=lambda t: t[1])[0]
        bits[best] += 1


def hq_bits(model, quant_config, input_shape: Sequence[int], hq) -> dict:  # noqa: ANN001 (torch-free signature)
    """Run HQ on a BN-folded FP model: per-layer bits + the bits.json payload (layers and totals).

    ``quant_config`` (QuantConfig) says which layers are quantized (first / prediction switches, overrides);
    ``hq`` is the ``compress.hq`` section (mode, threshold, budget, weights). Errors are k-means scores of the
    raw conv weights (``hq.weights=raw``, GHOST: each fused conv's ``unfolded_weight`` from ``fold_bn``) or of
    the folded weights that are quantized and executed (``folded``). Costs are always those of the folded model.
    """
    from ghostq.compress.cost import model_cost
    from ghostq.compress.quantize import FP_BITS, resolve_bits

    base = resolve_bits(model, quant_config)
    fp_cost = model_cost(model, input_shape)
    rows = {r.name: r for r in fp_cost.layers}
    # layers the user gave bits for (exact names or patterns) keep them; HQ searches the rest
    pinned = {n for n in base if any(n == p or fnmatch.fnmatchcase(n, p) for p in quant_config.layer_bits)}
    searched = [n for n, b in base.items() if b != FP_BITS and n not in pinned]
    curves = {} if hq.mode == "uniform" else {n: error_curve(clustered_weight(model.get_submodule(n), hq.weights))
                                              for n in searched}
    chosen = dict(base)
    info: dict = {"mode": hq.mode, "weights": None if hq.mode == "uniform" else hq.weights}  # None: nothing clustered
    if hq.mode == "uniform":  # quant_config's default bits and overrides, as resolved above
        pass
    elif hq.mode == "rule":
        chosen.update({n: rule_bits(curves[n], hq.threshold) for n in searched})
        info["threshold"] = hq.threshold
    elif hq.mode == "budget":
        target = hq.target
        if target is None:  # the cost of the same layers at uniform target_uniform_bits
            uniform = {**base, **dict.fromkeys(searched, hq.target_uniform_bits)}
            target = model_cost(model, input_shape, bits=uniform).totals()[TOTALS_KEY[hq.budget]]
        fixed_bits = {n: b for n, b in base.items() if n not in searched}
        fixed = _fixed_cost(model_cost(model, input_shape, bits=fixed_bits), set(searched), hq.budget)
        layer_curves = [LayerCurve(n, curves[n], rows[n].weight_params, rows[n].macs) for n in searched]
        try:
            if not layer_curves:  # every layer pinned or FP: nothing to choose
                pass
            elif hq.budget == "avg_bits":  # avg over every counted weight, FP layers included at 32
                n_all = sum(r.weight_params for r in fp_cost.layers)
                scale = sum(lc.params for lc in layer_curves) / n_all
                target_in = (target - fixed) / scale
                chosen.update(budget_bits(layer_curves, "avg_bits", target_in, min_bits=hq.min_bits))
            else:
                chosen.update(budget_bits(layer_curves, hq.budget, target, fixed=fixed, min_bits=hq.min_bits))
        except ValueError:
            key = "target" if hq.target is not None else "target_uniform_bits"
            raise ConfigError(
                f"compress.hq.{key}={getattr(hq, key)}: the {hq.budget} budget {target:.6g} cannot be met, even "
                f"{hq.min_bits} bits on every searched layer cost more; raise it or lower compress.hq.min_bits"
            ) from None
        info.update(budget=hq.budget, target=target)
    cost = model_cost(model, input_shape, bits=chosen)
    by_name = {r.name: r for r in cost.layers}
    layers = {n: {"bits": chosen[n], "error": {str(k): v for k, v in curves.get(n, {}).items()},
                  "params": by_name[n].weight_params + by_name[n].bias_params, "macs": by_name[n].macs}
              for n in chosen}
    totals = cost.totals()
    return {"bits": chosen, "json": {**info, "layers": layers, "avg_weight_bits": totals["avg_weight_bits"],
                                     "size_mb": totals["size_mb"], "bops_g": totals["bops_g"],
                                     "params": totals["params"], "macs": totals["macs"],
                                     "input_shape": list(input_shape)}}


def clustered_weight(module, weights: str = "raw") -> np.ndarray:  # noqa: ANN001
    """The weights HQ clusters for one conv: raw (before BN folding, GHOST) or folded (executed)."""
    if weights not in ("raw", "folded"):
        raise ValueError(f"hq.weights must be raw or folded, got {weights!r}")
    w = getattr(module, "unfolded_weight", module.weight) if weights == "raw" else module.weight
    return w.detach().cpu().numpy()


def _fixed_cost(cost, searched: set[str], kind: str) -> float:  # noqa: ANN001
    """The part of a cost that HQ cannot change (FP layers, biases, norms; for avg bits: FP weights)."""
    if kind == "size_mb":
        bits = sum(r.bias_params * 32 + (0 if r.name in searched else r.weight_params * r.weight_bits)
                   for r in cost.layers) + cost.other_params * 32
        return bits / 8 / 2**20
    if kind == "bops_g":
        return sum(r.bops for r in cost.layers if r.name not in searched) / 1e9
    n_all = sum(r.weight_params for r in cost.layers)
    return sum(r.weight_params * r.weight_bits for r in cost.layers if r.name not in searched) / n_all
