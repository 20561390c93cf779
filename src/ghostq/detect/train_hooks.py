"""The training loop's extension points: a stage's schedule and the hooks it adds (teacher, loss terms, groups)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ghostq.core.config import TrainConfig


@dataclass(frozen=True)
class Schedule:
    """How long and how fast a run trains: the `train` section, or a stage's own values (QAT's `compress`)."""

    section: str  # the config section the values come from: names the progress lines and the advice on errors
    epochs: int
    lr: float
    warmup_epochs: float
    batch_size: int
    val_every: int
    ema: bool
    ema_decay: float
    ema_run_share: float | None = None  # cap the EMA window at this share of the run's steps (short QAT runs)
    amp: bool = True  # mixed precision on CUDA
    max_steps: int | None = None  # stop (and validate) after this many steps in all
    time_steps: bool = False  # synchronise CUDA after each step so `step_seconds` is the step's own time

    @classmethod
    def of_train(cls, t: TrainConfig) -> Schedule:
        """The full-precision schedule of the `train` section."""
        return cls("train", t.epochs, t.lr, t.warmup_epochs, t.batch_size, t.val_every, t.ema, t.ema_decay,
                   amp=t.amp)


@dataclass
class Step:
    """One training step as a hook sees it: the batch, the model's output, the detection loss and its parts."""

    images: torch.Tensor
    targets: Any
    out: Any
    loss: torch.Tensor
    parts: dict[str, Any]
    loss_fn: nn.Module


@dataclass
class TrainHooks:
    """What a stage adds to the loop. `extra_loss`: the step's total loss and parts (a teacher forward, a
    distillation term, its gate); `param_groups`: the optimizer's groups for the model (parameters outside the
    model, e.g. a distillation head, are averaged across ranks under DDP)."""

    extra_loss: Callable[[Step], tuple[torch.Tensor, dict[str, Any]]] | None = None
    param_groups: Callable[[nn.Module, float], list[dict[str, Any]]] | None = None
