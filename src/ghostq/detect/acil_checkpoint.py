"""Checkpoints of incrementally extended detectors: the model with its analytic head, and the `acil` entry that
lets the next phase continue (per level A and W in float64, gamma, the buffer seed and size, the row sampling, the
phases so far). Nothing of the old data is kept but these matrices.

    model, spec, state = start_incremental(*load_detector("fp/best.pt"), buffer_dim=1024)   # a plain model
    stats = fit_phase(model, spec, state, batches, ("airplane", "ship"))                     # base fit
    save_incremental("acil/phase0.pt", model, spec_for(spec, state), state)
    model, payload, spec, state = load_incremental("acil/phase0.pt")                        # later: a phase
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ghostq.core.errors import GhostqError
from ghostq.core.spec import AnalyticSpec, ModelSpec
from ghostq.detect.acil import AnalyticClassifier
from ghostq.detect.acil_head import (
    SCORE_GAIN,
    FeatureBatch,
    PhaseStats,
    RowSampling,
    absorb,
    empty_classifiers,
    install_head,
    level_buffers,
    phase_stats,
)

ACIL_KEY = "acil"


@dataclass
class AcilState:
    """What a phase needs of the earlier ones (saved as the checkpoint's `acil` entry)."""

    buffer_dim: int
    gamma: float
    seed: int
    feature_classes: int  # classes the frozen classification branch was trained with
    in_dims: list[int]  # feature width of each level
    sampling: RowSampling
    classifiers: list[AnalyticClassifier]
    classes: list[str] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    gain: float = SCORE_GAIN

    def buffers(self) -> list[np.ndarray]:
        """The fixed random buffers B_l, rebuilt from the seed."""
        return level_buffers(self.in_dims, self.buffer_dim, self.seed)

    def kept_bytes(self) -> int:
        """Bytes kept of the old data: A and W of every level (float64)."""
        return int(sum(c.A.nbytes + c.W.nbytes for c in self.classifiers))

    def to_payload(self) -> dict[str, Any]:
        """The `acil` checkpoint entry (tensors, numbers, strings, lists: loadable with weights_only=True)."""
        return {
            "buffer_dim": self.buffer_dim, "gamma": self.gamma, "seed": self.seed,
            "feature_classes": self.feature_classes, "in_dims": list(self.in_dims),
            "sampling": {"keep": self.sampling.keep, "background_weight": self.sampling.background_weight,
                         "seed": self.sampling.seed},
            "levels": [{"A": torch.from_numpy(c.A), "W": torch.from_numpy(c.W)} for c in self.classifiers],
            "classes": list(self.classes), "phases": list(self.phases), "gain": self.gain,
        }

    @classmethod
    def from_payload(cls, d: Any, source: str) -> AcilState:
        """Validate and rebuild; anything wrong is a one-line GhostqError naming `source`."""
        try:
            s = d["sampling"]
            levels = [AnalyticClassifier(float(d["gamma"]), _autocorrelation(lv), _matrix(lv["W"]))
                      for lv in d["levels"]]
            state = cls(int(d["buffer_dim"]), float(d["gamma"]), int(d["seed"]), int(d["feature_classes"]),
                        [int(v) for v in d["in_dims"]],
                        RowSampling(float(s["keep"]), float(s["background_weight"]), int(s["seed"])),
                        levels, [str(c) for c in d["classes"]], list(d.get("phases", [])),
                        float(d.get("gain", SCORE_GAIN)))
        except (KeyError, TypeError, ValueError) as err:
            raise GhostqError(f"{source}: bad '{ACIL_KEY}' entry ({type(err).__name__}: {err})") from None
        d_e = state.buffer_dim + 1
        for i, c in enumerate(levels):
            if c.A.shape != (d_e, d_e) or c.W.shape != (d_e, len(state.classes)):
                raise GhostqError(f"{source}: '{ACIL_KEY}' level {i}: A {list(c.A.shape)} and W {list(c.W.shape)} "
                                  f"do not fit a buffer of {state.buffer_dim} and {len(state.classes)} classes")
        if len(levels) != len(state.in_dims):
            raise GhostqError(f"{source}: '{ACIL_KEY}' has {len(levels)} levels for {len(state.in_dims)} widths")
        return state


def _autocorrelation(level: Mapping[str, Any]) -> np.ndarray:
    """A of a saved level; checkpoints written before A was kept hold R = A^-1 (inverted here, at its accuracy)."""
    if "A" in level:
        return _matrix(level["A"])
    return np.linalg.inv(_matrix(level["R"]))


def _matrix(t: Any) -> np.ndarray:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise TypeError("A and W must be 2-d tensors")
    a = t.double().numpy()
    if not np.isfinite(a).all():
        raise ValueError("A or W holds NaN/inf")
    return a


def start_incremental(model: nn.Module, payload: Mapping[str, Any], *, buffer_dim: int = 1024, gamma: float = 0.1,
                      seed: int = 0, sampling: RowSampling | None = None) -> tuple[nn.Module, ModelSpec, AcilState]:
    """A plain detector (as `load_detector` returns it) made ready for its base fit: no class learned yet."""
    spec = ModelSpec.from_dict(payload["spec"])
    if spec.analytic is not None:
        raise GhostqError("the model has an analytic head already: continue it with load_incremental")
    if spec.head != "sigmoid":
        raise GhostqError(f"ACIL needs a sigmoid head (the model has a {spec.head} head)")
    in_dims = [int(p.in_channels) for p in model.head.cls_preds]
    state = AcilState(buffer_dim, gamma, seed, spec.num_classes, in_dims, sampling or RowSampling(),
                      empty_classifiers(len(in_dims), buffer_dim, gamma))
    return model, spec, state


def add_classes(state: AcilState, classes: Sequence[str]) -> list[int]:
    """The column of each of `classes` among the known ones (a new name is appended)."""
    known = {c.lower(): i for i, c in enumerate(state.classes)}
    columns = []
    for name in classes:
        if name.lower() not in known:
            known[name.lower()] = len(state.classes)
            state.classes.append(name)
        columns.append(known[name.lower()])
    return columns


def fit_phase(model: nn.Module, state: AcilState, batches: Iterable[FeatureBatch], classes: Sequence[str],
              source: str = "") -> PhaseStats:
    """Absorb one phase (GT labels index `classes`, new names appended to the known ones) and write the head."""
    stats = phase_stats(batches, len(classes), state.buffers(), state.sampling)
    apply_phase(model, state, stats, classes, source)
    return stats


def apply_phase(model: nn.Module, state: AcilState, stats: PhaseStats, classes: Sequence[str],
                source: str = "") -> None:
    """Absorb a phase's sums (`phase_stats` with this state's buffers and sampling) and write the head."""
    if stats.images == 0:
        raise GhostqError(f"{source or 'phase'}: no images to fit the classes {list(classes)} on")
    absorb(state.classifiers, stats, add_classes(state, classes), state.sampling.background_weight)
    install_head(model, state.classifiers, state.buffers(), state.gain)
    state.phases.append({"classes": list(classes), "images": stats.images, "positives": stats.positives,
                         "background_rows": stats.background, "source": source})


def spec_for(spec: ModelSpec, state: AcilState) -> ModelSpec:
    """The spec of the extended model: its classes, the analytic head, sigmoid scores without LogitClip."""
    return replace(spec, classes=tuple(state.classes), logit_clip=None,
                   analytic=AnalyticSpec(state.buffer_dim, state.feature_classes, state.gamma, state.seed))


def save_incremental(path: str | Path, model: nn.Module, spec: ModelSpec, state: AcilState,
                     config: Mapping[str, Any] | None = None) -> Path:
    """Write the extended model (atomic; plain data)."""
    from ghostq.detect.checkpoint import save_checkpoint

    payload: dict[str, Any] = {"model": model.state_dict(), "classes": list(spec.classes), "spec": spec.to_dict(),
                               ACIL_KEY: state.to_payload()}
    if config is not None:
        payload["config"] = dict(config)
    return save_checkpoint(path, payload)


def load_incremental(path: str | Path) -> tuple[nn.Module, dict[str, Any], ModelSpec, AcilState]:
    """An extended model and its ACIL state, validated (`load_detector` rebuilds the analytic head)."""
    from ghostq.detect.checkpoint import checkpoint_spec, load_detector

    model, payload = load_detector(path)
    if ACIL_KEY not in payload:
        raise GhostqError(f"{path}: no '{ACIL_KEY}' entry: not an incrementally extended model (fit its base first)")
    state = AcilState.from_payload(payload[ACIL_KEY], str(path))
    spec = checkpoint_spec(payload)
    if list(spec.classes) != state.classes:
        raise GhostqError(f"{path}: its spec names classes {list(spec.classes)}, its '{ACIL_KEY}' entry "
                          f"{state.classes}")
    return model, payload, spec, state
