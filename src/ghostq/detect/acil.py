"""Analytic class-incremental learning (ACIL; Zhuang et al., NeurIPS 2022), the closed-form part, in float64.

Features x (frozen extractor) pass a fixed random buffer, x_E = ReLU(x B), and the classifier is ridge
regression on one-hot targets:

    W = (X_E^T X_E + gamma I)^-1 X_E^T Y                                  (joint solution)

Phase k brings new classes with new data only. The paper keeps R = (sum_j X_E,j^T X_E,j + gamma I)^-1 and applies
recursive least squares (Woodbury). We keep the autocorrelation itself, A = sum_j X_E,j^T X_E,j + gamma I (the
paper's alternative; the same d_E x d_E bytes), and W; widen W with zero columns for the new classes; then

    A' = A + X^T X,    W' = A'^-1 (A W + X^T Y)           (A W = the old phases' X^T Y, so W' is the joint W)

which equals the joint solution on all phases' data: nothing of the old data but A and W is kept. Why not R: on
real detector features A is ill-conditioned (cond 1e7-2e9 on NWPU: gamma 0.1 against eigenvalues up to 2e8), and
the Woodbury update subtracts nearly equal matrices; measured there, W by Woodbury was 1e-6-1e-4 (relative) away
from an iteratively refined solve, W by solving A to 1e-10. Sample weights s (the detector's background sub-
sampling) enter as rows scaled by sqrt(s). Numpy only: the detector side lives in `acil_head`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
    """A = autocorrelation + gamma I, and W = A^-1 X^T Y, updated phase by phase (`absorb`, `fit_phase`)."""

    gamma: float
    A: np.ndarray  # (d_E, d_E)
    W: np.ndarray  # (d_E, C)

    @classmethod
    def empty(cls, buffer_dim: int, gamma: float = 0.1) -> AnalyticClassifier:
        """Before any data: A = gamma I, W with no class columns."""
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        return cls(gamma, gamma * np.eye(buffer_dim), np.zeros((buffer_dim, 0)))

    @property
    def num_classes(self) -> int:
        return self.W.shape[1]

    def fit_phase(self, xe: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        """Absorb one phase: rows `xe` (N, d_E), targets `y` (N, C_total >= current C; new classes appended)."""
        xe, y = _weighted(np.asarray(xe, np.float64), np.asarray(y, np.float64), sample_weight)
        if xe.shape[1] != self.A.shape[0]:
            raise ValueError(f"features have {xe.shape[1]} dimensions, the buffer {self.A.shape[0]}")
        self.absorb(xe.T @ xe, xe.T @ y)

    def absorb(self, gram: np.ndarray, cross: np.ndarray) -> None:
        """Absorb one phase given only its sums G = X^T S X and X^T S Y (rows streamed, never stored):
        A' = A + G, W' = A'^-1 (A W + X^T S Y), W widened with zero columns first."""
        gram, cross = np.asarray(gram, np.float64), np.asarray(cross, np.float64)
        d = self.A.shape[0]
        if gram.shape != (d, d) or cross.shape[0] != d:
            raise ValueError(f"sums of shapes {gram.shape} and {cross.shape} for a buffer of {d} dimensions")
        if cross.shape[1] < self.num_classes:
            raise ValueError(f"targets have {cross.shape[1]} columns, the classifier already has {self.num_classes}")
        w = np.pad(self.W, ((0, 0), (0, cross.shape[1] - self.num_classes)))
        a = self.A + gram
        self.W = np.linalg.solve(a, self.A @ w + cross)
        self.A = a

    def to_dict(self) -> dict[str, Any]:
        """The state to save (numpy arrays; the checkpoint writer converts them to tensors)."""
        return {"gamma": self.gamma, "A": self.A, "W": self.W}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnalyticClassifier:
        """Inverse of `to_dict`."""
        return cls(float(d["gamma"]), np.asarray(d["A"], np.float64), np.asarray(d["W"], np.float64))
