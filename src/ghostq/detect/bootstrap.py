"""Paired bootstrap confidence intervals for differences between detectors on the same validation images.

Validation sets in remote sensing are small (NWPU VHR-10's val split has ~100 images), so a mAP difference of a
point or two can be noise. Resampling images with replacement (Efron's bootstrap, paired: both methods see the
same draw) gives an interval for the difference; it is "real" when the interval excludes 0.

COCO AP is recomputed per draw without rerunning pycocotools: its matching is per (image, class), so the
per-image matches of one `evaluate()` are kept and each draw re-accumulates them with image multiplicities as
weights. With unit weights this is exactly pycocotools' `accumulate()` (a test checks it, and checks that a
weight of 2 equals evaluating a copy of the image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ghostq.detect.evaluate import GroundTruth, _load_detections, coco_eval, load_ground_truth

DRAWS = 1000
SEED = 0


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections over all images, sorted by score (pycocotools' order), and its GT per image."""

    det_image: np.ndarray  # (D,) index into the image list
    tp: np.ndarray  # (T, D) bool: matched, not ignored
    fp: np.ndarray  # (T, D) bool: unmatched, not ignored
    gt_per_image: np.ndarray  # (I,) counted (non-ignored) ground-truth boxes


@dataclass(frozen=True)
class CocoMatches:
    """Per-image COCO matches of one set of detections (area range `area`, at most `max_dets` per image and class)."""

    num_images: int
    classes: tuple[ClassMatches, ...]
    rec_thrs: np.ndarray  # (R,) pycocotools' 101 recall points
    t50: int  # index of IoU 0.5 among the T thresholds


def coco_matches(
    gt: GroundTruth | dict | str | Path, dets: list[dict] | str | Path, area: str = "all", max_dets: int = 100
) -> CocoMatches:
    """Run pycocotools once and keep what AP needs per image (see the module docstring); at most `max_dets`
    detections per image and class count (pycocotools' default 100)."""
    truth = load_ground_truth(gt)
    ev = coco_eval(truth, _load_detections(dets, truth), max_dets)
    p = ev.params
    num_images, num_areas = len(p.imgIds), len(p.areaRng)
    a0, max_det = p.areaRngLbl.index(area), max_dets
    classes = []
    for k in range(len(p.catIds)):
        scores, det_image, dtm, dt_ig = [], [], [], []
        gt_per_image = np.zeros(num_images, np.int64)
        for i in range(num_images):
            e = ev.evalImgs[k * num_areas * num_images + a0 * num_images + i]
            if e is None:
                continue
            s = np.asarray(e["dtScores"][:max_det], np.float64)
            scores.append(s)
            det_image.append(np.full(len(s), i, np.int64))
            dtm.append(np.asarray(e["dtMatches"])[:, :max_det] > 0)
            dt_ig.append(np.asarray(e["dtIgnore"])[:, :max_det].astype(bool))
            gt_per_image[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        num_t = len(p.iouThrs)
        if scores:
            order = np.argsort(-np.concatenate(scores), kind="mergesort")  # pycocotools' order
            matched = np.concatenate(dtm, axis=1)[:, order]
            ignored = np.concatenate(dt_ig, axis=1)[:, order]
            det = np.concatenate(det_image)[order]
        else:
            matched = ignored = np.zeros((num_t, 0), bool)
            det = np.zeros(0, np.int64)
        classes.append(ClassMatches(det, matched & ~ignored, ~matched & ~ignored, gt_per_image))
    t50 = int(np.argmin(np.abs(np.asarray(p.iouThrs) - 0.5)))
    return CocoMatches(num_images, tuple(classes), np.asarray(p.recThrs, np.float64), t50)


def coco_map(m: CocoMatches, weights: np.ndarray | None = None) -> dict[str, float]:
    """mAP50 and mAP50:95 of `m` with each image counted `weights[i]` times (pycocotools' accumulate)."""
    w = np.ones(m.num_images) if weights is None else np.asarray(weights, np.float64)
    ap = []  # (T,) per valid class
    for c in m.classes:
        npig = float(w @ c.gt_per_image)
        if npig == 0:
            continue  # a class with no counted GT in this draw is left out, as pycocotools does
        dw = w[c.det_image]
        tp = np.cumsum(c.tp * dw, axis=1)
        fp = np.cumsum(c.fp * dw, axis=1)
        q = np.zeros((tp.shape[0], len(m.rec_thrs)))
        if tp.shape[1]:
            rc = tp / npig
            pr = tp / (tp + fp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
            for t in range(tp.shape[0]):
                idx = np.searchsorted(rc[t], m.rec_thrs, side="left")
                ok = idx < rc.shape[1]
                q[t, ok] = pr[t, idx[ok]]
        ap.append(q.mean(axis=1))
    if not ap:
        return {"mAP50": 0.0, "mAP50_95": 0.0}
    per_class = np.stack(ap)  # (K_valid, T)
    return {"mAP50": float(per_class[:, m.t50].mean()), "mAP50_95": float(per_class.mean())}


def paired_bootstrap(
    stat_a: Callable[[np.ndarray], float],
    stat_b: Callable[[np.ndarray], float],
    num_images: int,
    draws: int = DRAWS,
    seed: int = SEED,
    confidence: float = 0.95,
) -> dict[str, float | int | bool | list[float]]:
    """Percentile interval of stat_b - stat_a over image resamples; each stat maps image weights to a number.

    Both stats see the same draws (paired), so what the images share cancels out of the difference."""
    return paired_bootstrap_many(lambda w: [stat_a(w)], lambda w: [stat_b(w)], num_images, draws, seed, confidence)[0]


def paired_bootstrap_many(
    stats_a: Callable[[np.ndarray], Sequence[float]],
    stats_b: Callable[[np.ndarray], Sequence[float]],
    num_images: int,
    draws: int = DRAWS,
    seed: int = SEED,
    confidence: float = 0.95,
) -> list[dict[str, float | int | bool | list[float]]]:
    """`paired_bootstrap` of several stats at once (one evaluation per draw gives them all, e.g. mAP50 and
    mAP50:95): the same draws as `paired_bootstrap` with the same seed, so each interval equals its own run."""
    if num_images < 1 or draws < 1:
        raise ValueError("paired_bootstrap needs at least one image and one draw")
    rng = np.random.default_rng(seed)
    ones = np.ones(num_images)
    a, b = np.asarray(stats_a(ones), np.float64), np.asarray(stats_b(ones), np.float64)
    diffs = np.empty((draws, len(a)))
    for k in range(draws):
        w = np.bincount(rng.integers(0, num_images, num_images), minlength=num_images).astype(np.float64)
        diffs[k] = np.asarray(stats_b(w), np.float64) - np.asarray(stats_a(w), np.float64)
    tail = 100 * (1 - confidence) / 2
    out = []
    for s in range(len(a)):
        lo, hi = (float(v) for v in np.percentile(diffs[:, s], [tail, 100 - tail]))
        out.append(
            {
                "a": float(a[s]),
                "b": float(b[s]),
                "diff": float(b[s] - a[s]),
                "ci": [lo, hi],
                "confidence": confidence,
                "significant": bool(lo > 0 or hi < 0),
                "draws": draws,
                "seed": seed,
                "num_images": num_images,
            }
        )
    return out


def map_difference(
    gt: GroundTruth | dict | str | Path,
    dets_a: list[dict] | str | Path,
    dets_b: list[dict] | str | Path,
    metric: str = "mAP50",
    draws: int = DRAWS,
    seed: int = SEED,
    max_dets: int = 100,
) -> dict[str, float | int | bool | list[float]]:
    """COCO `metric` (mAP50 or mAP50_95) of B minus A on the same ground truth, with its paired bootstrap CI
    (at most `max_dets` detections per image and class count, as in `evaluate_coco`)."""
    return map_differences(gt, dets_a, dets_b, (metric,), draws, seed, max_dets)[metric]


def map_differences(
    gt: GroundTruth | dict | str | Path,
    dets_a: list[dict] | str | Path,
    dets_b: list[dict] | str | Path,
    metrics: Sequence[str] = ("mAP50", "mAP50_95"),
    draws: int = DRAWS,
    seed: int = SEED,
    max_dets: int = 100,
) -> dict[str, dict[str, float | int | bool | list[float]]]:
    """`map_difference` of each metric from one matching and one set of draws (each equal to its own run)."""
    truth = load_ground_truth(gt)
    ma, mb = coco_matches(truth, dets_a, max_dets=max_dets), coco_matches(truth, dets_b, max_dets=max_dets)

    def stats(m: CocoMatches) -> Callable[[np.ndarray], list[float]]:
        def at(w: np.ndarray) -> list[float]:
            r = coco_map(m, w)  # every metric from one accumulation
            return [r[k] for k in metrics]

        return at

    out = paired_bootstrap_many(stats(ma), stats(mb), ma.num_images, draws, seed)
    return {m: {"metric": m, **o} for m, o in zip(metrics, out, strict=True)}
