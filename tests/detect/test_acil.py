"""ACIL's closed form: phase-by-phase updates equal joint ridge on all data (float64), also ill-conditioned."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.detect.acil import AnalyticClassifier, expand, random_buffer, ridge


def _phases(seed: int, sizes: list[int], classes_per_phase: list[int], dim: int = 24) -> list[tuple]:
    rng = np.random.default_rng(seed)
    out, seen = [], 0
    for n, c in zip(sizes, classes_per_phase, strict=True):
        x = rng.normal(size=(n, dim))
        labels = rng.integers(seen, seen + c, n)
        seen += c
        out.append((x, labels))
    return out


def _onehot(labels: np.ndarray, num: int) -> np.ndarray:
    y = np.zeros((len(labels), num))
    y[np.arange(len(labels)), labels] = 1
    return y


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("weighted", [False, True])
def test_phases_equal_joint_ridge(weighted: bool) -> None:
    buffer = random_buffer(24, 64, seed=3)
    phases = _phases(0, [300, 80, 2500, 40, 60, 90], [5, 1, 1, 1, 1, 1])  # uneven phase sizes
    total = 10
    rng = np.random.default_rng(1)
    clf = AnalyticClassifier.empty(64, gamma=0.1)
    xs, ys, ws = [], [], []
    seen = 0
    for x, labels in phases:
        seen = max(seen, int(labels.max()) + 1)
        xe, y = expand(x, buffer), _onehot(labels, seen)
        w = rng.uniform(0.1, 2.0, len(x)) if weighted else None
        clf.fit_phase(xe, y, w)
        xs.append(xe)
        ys.append(_onehot(labels, total))
        ws.append(w if weighted else np.ones(len(x)))
    joint = ridge(np.concatenate(xs), np.concatenate(ys), 0.1, np.concatenate(ws))
    assert clf.W.shape == joint.shape == (64, total)
    assert _rel(clf.W, joint) < 1e-8


def test_one_phase_and_five_phases_give_the_same_head() -> None:
    buffer = random_buffer(24, 48, seed=0)
    base, *new = _phases(5, [200, 50, 50, 50, 50, 50], [5, 1, 1, 1, 1, 1])
    one = AnalyticClassifier.empty(48)
    five = AnalyticClassifier.empty(48)
    for clf in (one, five):
        clf.fit_phase(expand(base[0], buffer), _onehot(base[1], 5))
    x_new = np.concatenate([x for x, _ in new])
    l_new = np.concatenate([lab for _, lab in new])
    one.fit_phase(expand(x_new, buffer), _onehot(l_new, 10))
    for k, (x, labels) in enumerate(new):
        five.fit_phase(expand(x, buffer), _onehot(labels, 6 + k))
    assert _rel(five.W, one.W) < 1e-8
    assert _rel(five.A, one.A) < 1e-8


def test_buffer_is_reproducible_and_state_round_trips() -> None:
    assert np.array_equal(random_buffer(8, 16, 7), random_buffer(8, 16, 7))
    assert not np.array_equal(random_buffer(8, 16, 7), random_buffer(8, 16, 8))
    clf = AnalyticClassifier.empty(16, gamma=0.5)
    clf.fit_phase(np.abs(np.random.default_rng(0).normal(size=(30, 16))), _onehot(np.arange(30) % 3, 3))
    back = AnalyticClassifier.from_dict(clf.to_dict())
    assert back.gamma == 0.5 and np.array_equal(back.W, clf.W) and np.array_equal(back.A, clf.A)


def test_bad_shapes_are_refused() -> None:
    clf = AnalyticClassifier.empty(8)
    clf.fit_phase(np.ones((4, 8)), _onehot(np.array([0, 1, 2, 0]), 3))
    with pytest.raises(ValueError, match="already has 3"):
        clf.fit_phase(np.ones((2, 8)), _onehot(np.array([0, 1]), 2))
    with pytest.raises(ValueError, match="buffer 8"):
        clf.fit_phase(np.ones((2, 5)), _onehot(np.array([0, 1]), 3))
    with pytest.raises(ValueError, match="gamma"):
        AnalyticClassifier.empty(8, gamma=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_absorbing_phase_sums_equals_row_by_row_and_joint(weighted: bool) -> None:
    """`absorb(X^T S X, X^T S Y)` (what the detector streams) == `fit_phase` rows == joint ridge."""
    buffer = random_buffer(24, 40, seed=2)
    phases = _phases(7, [400, 60, 90, 1500], [4, 1, 2, 1])
    rng = np.random.default_rng(3)
    sums, rows = AnalyticClassifier.empty(40, gamma=0.1), AnalyticClassifier.empty(40, gamma=0.1)
    xs, ys, ws, seen = [], [], [], 0
    for x, labels in phases:
        seen = max(seen, int(labels.max()) + 1)
        xe, y = expand(x, buffer), _onehot(labels, seen)
        w = rng.uniform(0.1, 2.0, len(x)) if weighted else np.ones(len(x))
        sums.absorb((xe * w[:, None]).T @ xe, (xe * w[:, None]).T @ y)
        rows.fit_phase(xe, y, w)
        xs.append(xe)
        ys.append(_onehot(labels, 8))
        ws.append(w)
    joint = ridge(np.concatenate(xs), np.concatenate(ys), 0.1, np.concatenate(ws))
    assert _rel(sums.W, joint) < 1e-8 and _rel(rows.W, joint) < 1e-8
    assert _rel(sums.A, rows.A) < 1e-8


def test_phases_equal_joint_ridge_when_ill_conditioned() -> None:
    """Detector-like conditioning (NWPU: cond(A) 1e7-2e9, lambda_min = gamma from buffer units that never fire):
    20,000 rows scaled x30 through a 96-wide buffer, 16 units dead. Keeping A (not R = A^-1, updated by
    Woodbury: 6e-7 here) holds the phases to the joint solve."""
    rng = np.random.default_rng(5)
    buffer = random_buffer(6, 96, seed=1)
    xe = expand(30 * rng.normal(size=(20_000, 6)), buffer)
    xe[:, :16] = 0.0
    labels = rng.integers(0, 6, len(xe))
    a = xe.T @ xe + 0.1 * np.eye(96)
    ev = np.linalg.eigvalsh(a)
    assert ev.max() / ev.min() > 1e8
    clf = AnalyticClassifier.empty(96, gamma=0.1)
    for k, part in enumerate(np.array_split(np.arange(len(xe)), 6)):
        clf.fit_phase(xe[part], _onehot(np.minimum(labels[part], k), k + 1))
    joint = ridge(xe, _onehot(np.concatenate([np.minimum(labels[p], k) for k, p in
                                              enumerate(np.array_split(np.arange(len(xe)), 6))]), 6), 0.1)
    assert _rel(clf.W, joint) < 1e-8
