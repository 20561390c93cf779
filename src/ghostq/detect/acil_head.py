"""ACIL for the detector: the frozen model's classification features, targets, background sampling, the fit, and
the head written back as two 1x1 convs per level (`ghostq.detect.models.analytic_pred`).

Samples are anchor points. Per level l (the head's levels have their own classification branches), the feature x
of a point is the input of the level's final classification conv (the output of its classification branch), and
x_E = [ReLU(x B_l), 1] with a fixed random buffer B_l (seed + l) and a constant for the intercept. Targets come
from the training assignment (task-aligned, centre prior) made class-agnostic: every GT's score is taken as 1, so
a point's target depends on the frozen box branch and the boxes only, never on the classifier being fitted (the
phases stay exact). Positives get the one-hot row of their class, every other point is background (all zeros).

Background: an image of 416 px has 3,549 points and a few dozen positives. Every positive is kept; a background
point is kept with probability `keep` (a fixed seed per image file name, so a point's draw is the same in every
phase) and weighted `background_weight` (default 1/keep). The ridge output y (about 1 on a class, 0 on background)
becomes the logit g (y - 1/2), g = 2 ln 9999, of the head's sigmoid: y = 0 scores 1e-4, y = 1/2 scores 0.5, y = 1
scores 0.9999; the ranking AP needs is that of y (monotone); scores are bounded in (0, 1) in torch and in the
exported graph. With g = 2 ln 99 (y = 0 -> 0.01) every background point passes the evaluation threshold 0.001 and
NMS sorts ~3,000 candidates per image (measured 2.7 s per image here); with 2 ln 9999 a candidate needs y > 0.125.

Each phase adds the Gram matrix X_E^T S X_E and X_E^T S Y of its rows (S: the sample weights) through
`AnalyticClassifier.absorb`; only A (autocorrelation + gamma I) and W per level are kept (the checkpoint's
`acil` entry).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostq.detect.acil import AnalyticClassifier, random_buffer
from ghostq.detect.losses.assign import TaskAlignedAssigner
from ghostq.detect.models.analytic_pred import install_analytic_preds
from ghostq.detect.models.output import Targets

SCORE_GAIN = 2.0 * math.log(9999.0)  # logit = SCORE_GAIN * (y - 1/2): y = 0 -> 1e-4, y = 1 -> 0.9999


@dataclass(frozen=True)
class RowSampling:
    """Which anchor points become rows: every positive, background with probability `keep` and weight
    `background_weight`, drawn per image from (`seed`, crc32 of the file name). The default weight 1/keep makes
    the kept points stand for all background (an unbiased Gram; NWPU base classes: 57.8 mAP50 vs 44.7 at 1)."""

    keep: float = 0.1
    background_weight: float | None = None  # None: 1 / keep
    seed: int = 0

    def __post_init__(self) -> None:
        if self.background_weight is None and 0.0 < self.keep <= 1.0:
            object.__setattr__(self, "background_weight", 1.0 / self.keep)
        if not 0.0 < self.keep <= 1.0 or self.background_weight is None or self.background_weight <= 0:
            raise ValueError(f"need 0 < keep <= 1 and background_weight > 0, got {self.keep}, "
                             f"{self.background_weight}")


@dataclass
class FeatureBatch:
    """What the fit needs of a batch: per level features [B, HW_l, c], boxes [B, N, 4], points, strides, GT."""

    feats: list[torch.Tensor]
    boxes: torch.Tensor
    points: torch.Tensor
    strides: torch.Tensor
    targets: Targets
    file_names: list[str]


@dataclass
class PhaseStats:
    """Sums over one phase's rows, per level: X^T X of the positives and of the kept background (apart, so the
    background weight is a choice made after the pass), X^T Y (background targets are 0), and counts."""

    gram_fg: list[np.ndarray]
    gram_bg: list[np.ndarray]
    cross: list[np.ndarray]
    positives: int = 0
    background: int = 0
    images: int = 0

    def gram(self, level: int, background_weight: float) -> np.ndarray:
        """X_E^T S X_E of one level with background rows weighted `background_weight`."""
        return self.gram_fg[level] + background_weight * self.gram_bg[level]


@torch.no_grad()
def capture_features(model: nn.Module, images: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """One forward pass: the input of every level's final classification conv as [B, HW_l, c], and the output."""
    seen: list[torch.Tensor] = []
    hooks = [p.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for p in model.head.cls_preds]
    try:
        out = model(images)
    finally:
        for h in hooks:
            h.remove()
    return [f.flatten(2).transpose(1, 2).float() for f in seen], out


def model_batches(model: nn.Module, loader: Iterable) -> Iterator[FeatureBatch]:
    """`FeatureBatch`es of a frozen model over a loader of (images, Targets, metas) (eval mode, no grad)."""
    model.eval()
    for images, targets, metas in loader:
        feats, out = capture_features(model, images)
        yield FeatureBatch(feats, out.boxes.float(), out.points, out.strides, targets,
                           [str(m["file_name"]) for m in metas])


def assign_labels(batch: FeatureBatch, num_classes: int) -> torch.Tensor:
    """[B, N] class id of each point's GT (0..num_classes-1), num_classes for background: the training
    assignment with every class score taken as 1 (class-agnostic: it depends on the boxes only)."""
    b, n = batch.boxes.shape[:2]
    assigner = TaskAlignedAssigner(max(1, num_classes))
    t = batch.targets
    ones = torch.ones(b, n, max(1, num_classes))
    a = assigner(ones, batch.boxes, batch.points, batch.strides, t.boxes, t.labels, t.mask)
    return torch.where(a.fg_mask, a.labels, num_classes)


def sample_points(file_name: str, fg: np.ndarray, sampling: RowSampling) -> np.ndarray:
    """Indices of the points kept as rows: every positive, and the background points of the seeded draw."""
    rng = np.random.default_rng([sampling.seed, zlib.crc32(file_name.encode("utf-8"))])
    return np.flatnonzero(fg | (rng.random(len(fg)) < sampling.keep))


def expand_rows(x: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """x_E = [ReLU(x B), 1] in float64 (the constant column is the classifier's bias)."""
    xe = np.maximum(np.asarray(x, np.float64) @ buffer, 0.0)
    return np.concatenate([xe, np.ones((len(xe), 1))], axis=1)


def level_buffers(in_dims: Sequence[int], buffer_dim: int, seed: int) -> list[np.ndarray]:
    """The fixed buffer B_l of each level, reproducible from `seed` (level l draws from seed + l)."""
    return [random_buffer(c, buffer_dim, seed + level) for level, c in enumerate(in_dims)]


def phase_stats(batches: Iterable[FeatureBatch], num_classes: int, buffers: Sequence[np.ndarray],
                sampling: RowSampling) -> PhaseStats:
    """Sum X_E^T X_E (positives, background apart) and X_E^T Y over the rows of `batches` (GT labels
    0..num_classes-1: the phase's own classes; `absorb` places them among the known ones)."""
    d, levels = buffers[0].shape[1] + 1, len(buffers)
    stats = PhaseStats([np.zeros((d, d)) for _ in buffers], [np.zeros((d, d)) for _ in buffers],
                       [np.zeros((d, num_classes)) for _ in buffers])
    for batch in batches:
        labels = assign_labels(batch, num_classes).numpy()
        bounds = np.cumsum([0, *[f.shape[1] for f in batch.feats]])
        rows: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(levels)]  # (features, labels)
        for i, name in enumerate(batch.file_names):
            fg = labels[i] < num_classes
            idx = sample_points(name, fg, sampling)
            stats.positives += int(fg.sum())
            stats.background += int(len(idx) - fg.sum())
            stats.images += 1
            for level in range(levels):
                sel = idx[(idx >= bounds[level]) & (idx < bounds[level + 1])]
                rows[level].append((batch.feats[level][i, sel - bounds[level]].numpy(), labels[i, sel]))
        for level, buffer in enumerate(buffers):  # one product per level and batch
            lab = np.concatenate([r[1] for r in rows[level]])
            if not len(lab):
                continue
            xe = expand_rows(np.concatenate([r[0] for r in rows[level]]), buffer)
            pos = lab < num_classes
            xp, xb = xe[pos], xe[~pos]
            stats.gram_fg[level] += xp.T @ xp
            stats.gram_bg[level] += xb.T @ xb
            stats.cross[level] += xp.T @ np.eye(num_classes)[lab[pos]]
    return stats


def empty_classifiers(levels: int, buffer_dim: int, gamma: float) -> list[AnalyticClassifier]:
    """One analytic classifier per level before any phase (buffer_dim + 1 inputs: the constant included)."""
    return [AnalyticClassifier.empty(buffer_dim + 1, gamma) for _ in range(levels)]


def absorb(classifiers: Sequence[AnalyticClassifier], stats: PhaseStats, columns: Sequence[int],
           background_weight: float) -> None:
    """Add one phase to every level's classifier: its class j is column `columns[j]` (new columns appended)."""
    total = max(classifiers[0].num_classes, max(columns) + 1)
    for level, clf in enumerate(classifiers):
        cross = np.zeros((stats.cross[level].shape[0], total))
        cross[:, list(columns)] = stats.cross[level]
        clf.absorb(stats.gram(level, background_weight), cross)


@torch.no_grad()
def install_head(model: nn.Module, classifiers: Sequence[AnalyticClassifier], buffers: Sequence[np.ndarray],
                 gain: float = SCORE_GAIN) -> nn.Module:
    """Write buffers and ridge solutions into the model as two 1x1 convs per level (float32; the score mapping
    folded into the classifier: logit = gain (y - 1/2)); returns the model."""
    num_classes = classifiers[0].num_classes
    install_analytic_preds(model, buffers[0].shape[1], num_classes)
    for pred, clf, buffer in zip(model.head.cls_preds, classifiers, buffers, strict=True):
        pred.buffer.weight.copy_(torch.from_numpy(buffer.T.copy()).float()[:, :, None, None])
        w = clf.W
        pred.classifier.weight.copy_(torch.from_numpy(gain * w[:-1].T.copy()).float()[:, :, None, None])
        pred.classifier.bias.copy_(torch.from_numpy(gain * (w[-1] - 0.5)).float())
    return model.eval()


def linear_outputs(feats: Sequence[torch.Tensor], classifiers: Sequence[AnalyticClassifier],
                   buffers: Sequence[np.ndarray]) -> np.ndarray:
    """The ridge outputs y [N, C] (float64) of one image's per-level features [HW_l, c], levels concatenated."""
    return np.concatenate([expand_rows(f.numpy(), b) @ clf.W for f, clf, b in zip(feats, classifiers, buffers,
                                                                                 strict=True)])
