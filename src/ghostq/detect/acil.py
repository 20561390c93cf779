"""Analytic class-incremental learning (ACIL; Zhuang et al., NeurIPS 2022), the closed-form part, in float64.

Features x (frozen extractor) pass a fixed random buffer, x_E = ReLU(x B), and the classifier is ridge
regression on one-hot targets:

    W = (X_E^T X_E + gamma I)^-1 X_E^T Y                                  (joint solution)

Phase k brings new classes with new data only. With R = (sum_j X_E,j^T X_E,j + gamma I)^-1 kept from the earlier
phases, widen W with zero columns for the new classes and apply recursive least squares (Woodbury):

    R <- R - R X^T (I + X R X^T)^-1 X R
    W <- W + R X^T (Y - X W)

which equals the joint solution on all phases' data: nothing of the old data but R (d_E x d_E) and W is kept.
Sample weights s (for the background sub-sampling of a detector) enter as rows scaled by sqrt(s).
Numpy only: the detector side (features, targets, the head as two 1x1 convs) lives in `acil_head`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 1024  # rows per Woodbury step: inverts a CHUNK x CHUNK matrix


def random_buffer(in_dim: int, buffer_dim: int, seed: int) -> np.ndarray:
    """The fixed buffer projection B (in_dim x buffer_dim), N(0, 1/in_dim), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((in_dim, buffer_dim)) / np.sqrt(in_dim)


def expand(x: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """x_E = ReLU(x B) in float64."""
    return np.maximum(np.asarray(x, np.float64) @ buffer, 0.0)


def _weighted(xe: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if sample_weight is None:
        return xe, y
    s = np.sqrt(np.asarray(sample_weight, np.float64))[:, None]
    return xe * s, y * s


def ridge(xe: np.ndarray, y: np.ndarray, gamma: float, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Joint ridge solution W = (X^T X + gamma I)^-1 X^T Y (the reference every phase sequence must equal)."""
    xe, y = _weighted(np.asarray(xe, np.float64), np.asarray(y, np.float64), sample_weight)
    a = xe.T @ xe + gamma * np.eye(xe.shape[1])
    return np.linalg.solve(a, xe.T @ y)


@dataclass
class AnalyticClassifier:
    """R = (autocorrelation + gamma I)^-1 and W, updated phase by phase (`fit_phase`)."""

    gamma: float
    R: np.ndarray  # (d_E, d_E)
    W: np.ndarray  # (d_E, C)

    @classmethod
    def empty(cls, buffer_dim: int, gamma: float = 0.1) -> AnalyticClassifier:
        """Before any data: R = I / gamma, W with no class columns."""
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        return cls(gamma, np.eye(buffer_dim) / gamma, np.zeros((buffer_dim, 0)))

    @property
    def num_classes(self) -> int:
        return self.W.shape[1]

    def fit_phase(self, xe: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        """Absorb one phase: rows `xe` (N, d_E), targets `y` (N, C_total >= current C; new classes appended)."""
        xe, y = _weighted(np.asarray(xe, np.float64), np.asarray(y, np.float64), sample_weight)
        if y.shape[1] < self.num_classes:
            raise ValueError(f"targets have {y.shape[1]} columns, the classifier already has {self.num_classes}")
        if xe.shape[1] != self.R.shape[0]:
            raise ValueError(f"features have {xe.shape[1]} dimensions, the buffer {self.R.shape[0]}")
        self.W = np.pad(self.W, ((0, 0), (0, y.shape[1] - self.num_classes)))
        for start in range(0, len(xe), CHUNK):
            x, t = xe[start : start + CHUNK], y[start : start + CHUNK]
            rx = self.R @ x.T  # (d_E, n)
            k = np.linalg.solve(np.eye(len(x)) + x @ rx, rx.T)  # (I + X R X^T)^-1 X R, (n, d_E)
            self.R = self.R - rx @ k
            self.R = (self.R + self.R.T) / 2  # keep it symmetric against rounding drift
            self.W = self.W + self.R @ x.T @ (t - x @ self.W)

    def absorb(self, gram: np.ndarray, cross: np.ndarray) -> None:
        """Absorb one phase given only its sums G = X^T S X and X^T S Y (rows streamed, never stored):

            R <- R - R (I + G R)^-1 G R          ((A + G)^-1 with A = R^-1, no inverse of R taken)
            W <- W + R (X^T S Y - G W)           (W widened with zero columns first)

        the same result as `fit_phase` on those rows, at d_E^3 per phase instead of d_E^2 per row."""
        gram, cross = np.asarray(gram, np.float64), np.asarray(cross, np.float64)
        d = self.R.shape[0]
        if gram.shape != (d, d) or cross.shape[0] != d:
            raise ValueError(f"sums of shapes {gram.shape} and {cross.shape} for a buffer of {d} dimensions")
        if cross.shape[1] < self.num_classes:
            raise ValueError(f"targets have {cross.shape[1]} columns, the classifier already has {self.num_classes}")
        self.W = np.pad(self.W, ((0, 0), (0, cross.shape[1] - self.num_classes)))
        gr = gram @ self.R
        self.R = self.R - self.R @ np.linalg.solve(np.eye(d) + gr, gr)
        self.R = (self.R + self.R.T) / 2
        self.W = self.W + self.R @ (cross - gram @ self.W)

    def to_dict(self) -> dict[str, Any]:
        """The state to save (numpy arrays; the checkpoint writer converts them to tensors)."""
        return {"gamma": self.gamma, "R": self.R, "W": self.W}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnalyticClassifier:
        """Inverse of `to_dict`."""
        return cls(float(d["gamma"]), np.asarray(d["R"], np.float64), np.asarray(d["W"], np.float64))
