"""AUROC / FPR95 against scikit-learn on hand cases; detection matching and the F1 operating threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from ghostq.detect.ood_metrics import auroc, f1_threshold, fpr_at_tpr, true_positive_flags

# hand case: ID (known objects) mostly low, OOD mostly high, with ties across the groups
ID = np.array([0.1, 0.2, 0.2, 0.3, 0.5, 0.7, 0.15, 0.25, 0.05, 0.4,
               0.12, 0.22, 0.33, 0.21, 0.11, 0.09, 0.6, 0.31, 0.18, 0.27])
OOD = np.array([0.2, 0.6, 0.8, 0.9, 0.5, 0.95, 0.3, 0.85])


def _sklearn_fpr95(id_s: np.ndarray, ood_s: np.ndarray) -> float:
    y = np.r_[np.ones(id_s.size), np.zeros(ood_s.size)]  # ID = positive, kept when -score is high
    fpr, tpr, _ = roc_curve(y, -np.r_[id_s, ood_s])
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def test_auroc_matches_sklearn_on_hand_case() -> None:
    expect = roc_auc_score(np.r_[np.zeros(ID.size), np.ones(OOD.size)], np.r_[ID, OOD])
    assert auroc(ID, OOD) == pytest.approx(expect, abs=1e-12)
    assert auroc([0.0, 0.1], [0.5, 0.9]) == 1.0 and auroc([0.5, 0.9], [0.0, 0.1]) == 0.0
    assert auroc([0.3, 0.3], [0.3]) == 0.5  # all tied: chance


def test_fpr95_matches_sklearn_on_hand_case() -> None:
    # 95% of 20 ID samples = 19 kept: threshold 0.6 (the 19th lowest), OOD kept at <= 0.6: 0.2, 0.6, 0.5, 0.3
    assert fpr_at_tpr(ID, OOD) == pytest.approx(4 / 8)
    assert fpr_at_tpr(ID, OOD) == pytest.approx(_sklearn_fpr95(ID, OOD))
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(0, 1, 37).round(1), rng.normal(1, 1, 23).round(1)
        assert fpr_at_tpr(a, b) == pytest.approx(_sklearn_fpr95(a, b))
        assert auroc(a, b) == pytest.approx(roc_auc_score(np.r_[np.zeros(37), np.ones(23)], np.r_[a, b]))


def test_bad_scores_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        auroc([], [0.1])
    with pytest.raises(ValueError, match="finite"):
        fpr_at_tpr([np.nan], [0.1])
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([0.1], [0.2], tpr=0.0)


def test_true_positive_flags_greedy_by_score_one_match_per_box() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    dets = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    scores = np.array([0.6, 0.9, 0.8, 0.7])
    labels = np.array([0, 0, 2, 0])  # the third is the wrong class for box 2 (class 1)
    flags = true_positive_flags(dets, scores, labels, gt, np.array([0, 1]))
    # 0.9 takes box 1 (IoU 0.81); the 0.6 duplicate finds it used; wrong class and far box miss
    assert flags.tolist() == [False, True, False, False]
    assert true_positive_flags(dets, scores, labels, np.zeros((0, 4)), np.zeros(0)).tolist() == [False] * 4


def test_f1_threshold_picks_best_cut() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    tp = np.array([True, True, False, True, False])
    thr, f1 = f1_threshold(scores, tp, num_gt=4)
    # keep 2: 2*2/(2+4)=0.667; keep 4: 2*3/(4+4)=0.75; keep 5: 6/9=0.667
    assert thr == 0.6 and f1 == pytest.approx(0.75)
