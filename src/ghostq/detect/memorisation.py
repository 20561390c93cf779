"""Memorisation of noisy labels by a detector: what it predicts on the train objects whose class was flipped.

For each flipped object (true class != noisy class) the model's answer is the highest-scoring detection whose
box has IoU >= 0.5 with the object's box (any class). It falls in one of four outcomes:
``noisy`` (the detection's class is the wrong, noisy one: the label was memorised), ``true`` (the model
recovers the true class), ``other`` (a third class), ``missed`` (no detection overlaps). Clean objects get the
same outcomes (``true`` = correct). Shares over the flipped objects per epoch give the memorisation curve of
Liu et al. (early-learning regularisation, NeurIPS 2020) for detection. Torch-free (numpy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ghostq.detect.ood_metrics import box_iou

OUTCOMES = ("noisy", "true", "other", "missed")


@dataclass(frozen=True)
class NoisyObjects:
    """The objects of one image: boxes [N, 4] xyxy, true and noisy (training) class ids [N]."""

    boxes: np.ndarray
    true_labels: np.ndarray
    noisy_labels: np.ndarray


def object_outcomes(
    objects: NoisyObjects,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    iou_threshold: float = 0.5,
) -> list[str]:
    """The outcome (``noisy`` / ``true`` / ``other`` / ``missed``) of every object of one image."""
    n = len(objects.true_labels)
    if len(objects.noisy_labels) != n or len(objects.boxes) != n:
        raise ValueError(f"boxes, true and noisy labels differ in length: {len(objects.boxes)}, {n}, "
                         f"{len(objects.noisy_labels)}")
    det_scores = np.asarray(det_scores, np.float64).reshape(-1)
    det_labels = np.asarray(det_labels).reshape(-1)
    if n == 0:
        return []
    if det_scores.size == 0:
        return ["missed"] * n
    iou = box_iou(objects.boxes, det_boxes)  # [N, K]
    out = []
    for i in range(n):
        hit = iou[i] >= iou_threshold
        if not hit.any():
            out.append("missed")
            continue
        best = det_labels[np.flatnonzero(hit)[int(np.argmax(det_scores[hit]))]]
        if best == objects.noisy_labels[i] and objects.noisy_labels[i] != objects.true_labels[i]:
            out.append("noisy")
        elif best == objects.true_labels[i]:
            out.append("true")
        else:
            out.append("other")
    return out


def memorisation_shares(
    objects: Sequence[NoisyObjects],
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
) -> dict[str, dict[str, float | int]]:
    """Shares of each outcome over the flipped objects and over the clean ones, for images and their
    detections (boxes, scores, labels) in the same order: ``{"flipped": {"n", "noisy", ...}, "clean": {...}}``."""
    if len(objects) != len(detections):
        raise ValueError(f"{len(objects)} images of objects but {len(detections)} of detections")
    counts = {"flipped": dict.fromkeys(OUTCOMES, 0), "clean": dict.fromkeys(OUTCOMES, 0)}
    for obj, (boxes, scores, labels) in zip(objects, detections, strict=True):
        flipped = np.asarray(obj.true_labels) != np.asarray(obj.noisy_labels)
        for k, outcome in enumerate(object_outcomes(obj, boxes, scores, labels, iou_threshold)):
            counts["flipped" if flipped[k] else "clean"][outcome] += 1
    result: dict[str, dict[str, float | int]] = {}
    for group, c in counts.items():
        n = sum(c.values())
        result[group] = {"n": n, **{k: (v / n if n else float("nan")) for k, v in c.items()}}
    return result
