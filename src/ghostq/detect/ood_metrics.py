"""How well an out-of-distribution score separates detections: AUROC, FPR at 95% TPR, matching, thresholds.

Convention (as ``ghostq.detect.ood``): **higher score = more likely out-of-distribution**. In-distribution
(ID) samples are the positives of the ROC ("keep it"), so a good score is low on ID and high on OOD:
- ``auroc``: probability that a random OOD sample scores above a random ID one (ties count half), equal to
  scikit-learn's ``roc_auc_score(is_ood, score)``;
- ``fpr_at_tpr``: the share of OOD samples still kept when the threshold keeps ``tpr`` (95%) of ID samples,
  i.e. scikit-learn's ``roc_curve(is_id, -score)`` FPR at the first point whose TPR reaches 0.95 (the FPR95 of
  Hendrycks et al. and LogitNorm, Wei et al., ICML 2022).

For detections: ``true_positive_flags`` marks the detections that match a ground-truth box of their class
(greedy by score, IoU >= 0.5, each box once, as the VOC / COCO matchers do), and ``f1_threshold`` picks the
score threshold with the best F1 on the images that hold objects: the operating point of a deployed detector.
Torch-free (numpy).
"""

from __future__ import annotations

import numpy as np


def _scores(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, np.float64).reshape(-1)
    b = np.asarray(ood_scores, np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"need at least one ID and one OOD score, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("OOD scores must be finite")
    return a, b


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC of ``score`` as a detector of OOD samples (0.5 = chance, 1 = perfect)."""
    a, b = _scores(id_scores, ood_scores)
    both = np.concatenate([a, b])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based ranks, ties averaged
    r_ood = ranks[a.size:].sum()
    return float((r_ood - b.size * (b.size + 1) / 2.0) / (a.size * b.size))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD samples kept by the strictest threshold that keeps at least ``tpr`` of the ID samples."""
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    a, b = _scores(id_scores, ood_scores)
    # keep a sample when score <= t; candidate thresholds are the ID scores in increasing order
    t_sorted = np.sort(a)
    k = int(np.ceil(tpr * a.size - 1e-12))  # ID samples that must be kept
    t = t_sorted[max(k, 1) - 1]
    return float((b <= t).mean())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def true_positive_flags(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Per detection of one image: does it match a ground-truth box of its class (greedy by score, each once)?"""
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    det_labels = np.asarray(det_labels).reshape(-1)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    flags = np.zeros(det_scores.size, bool)
    if det_scores.size == 0 or gt_labels.size == 0:
        return flags
    iou = box_iou(det_boxes, gt_boxes)
    used = np.zeros(gt_labels.size, bool)
    for i in np.argsort(-det_scores, kind="mergesort"):
        cand = np.where((gt_labels == det_labels[i]) & ~used, iou[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            used[j], flags[i] = True, True
    return flags


def f1_threshold(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> tuple[float, float]:
    """(threshold, F1): keeping detections with score >= threshold gives the best F1 against ``num_gt`` objects."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    tp = np.asarray(tp, bool).reshape(-1)
    if scores.size == 0 or num_gt <= 0:
        raise ValueError(f"need detections and objects, got {scores.size} and {num_gt}")
    order = np.argsort(-scores, kind="mergesort")
    s, hits = scores[order], np.cumsum(tp[order])
    kept = np.arange(1, s.size + 1)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # cut only between distinct scores
    f1 = 2 * hits[last] / (kept[last] + num_gt)
    best = int(np.argmax(f1))
    return float(s[last[best]]), float(f1[best])
