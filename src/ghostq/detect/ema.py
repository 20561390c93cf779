"""Exponential moving average of model weights (YOLOv5/timm style, decay ramped over the first updates)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """EMA copy of a model: ema = d * ema + (1 - d) * model, d = decay * (1 - exp(-updates / 2000))."""

    def __init__(
        self, model: nn.Module, decay: float = 0.999, ramp: float = 2000.0, updates: int = 0
    ) -> None:
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, updates

    def _current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average; buffers (BN statistics) are averaged too."""
        self.updates += 1
        d = self._current_decay()
        src = _unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(src[name].detach(), alpha=1.0 - d)
            else:
                value.copy_(src[name])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
