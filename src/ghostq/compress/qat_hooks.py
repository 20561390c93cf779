"""GQSD as hooks of the detector's Trainer: the frozen FP teacher's forward, the OST term, its switch, the weights.

The loop itself is `ghostq.detect.trainer.Trainer`; this supplies its `TrainHooks.extra_loss` (student loss =
w_det * det + w_kd * OST, see `ghostq.compress.distill`); `ghostq.compress.qat` wires it in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ghostq.compress.distill import FeatureTap, OSTLoss, distill_layer_names, feature_channels, per_image_loss
from ghostq.core.compress_config import DistillConfig
from ghostq.detect.train_hooks import Step


class DistillHook:
    """`extra_loss` of GQSD: distil the teacher's attention into the student on paired layers, through the switch.

    Build it before the Trainer (its OST parameters join the optimizer), `attach` it to the trained model after
    (so the EMA copy carries no feature taps), `close` it when the loop ends.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, d: DistillConfig, example: torch.Tensor,
                 device: torch.device) -> None:
        self.d, self.teacher = d, teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.names = distill_layer_names(student, d.layers)
        channels = feature_channels(self.teacher, self.names, example.to(device))
        self.ost = OSTLoss(channels, d.scm, d.proj_dim, d.tau, d.open_target, d.open_weight).to(device)
        self.taps: list[FeatureTap] = []
        self.steps, self.trace_every = 0, 1
        self.open_trace: list[dict[str, Any]] = []
        self.window: list[float] = []

    def attach(self, student: nn.Module, steps_per_epoch: int) -> None:
        """Tap the paired layers of the student being trained and of the teacher."""
        self.taps = [FeatureTap(student, self.names), FeatureTap(self.teacher, self.names)]
        self.trace_every = max(1, steps_per_epoch // 4)  # the open share over about a quarter epoch

    def __call__(self, step: Step) -> tuple[torch.Tensor, dict[str, Any]]:
        with torch.no_grad():
            out_t = self.teacher(step.images)
        gate = None
        if self.d.scm == "gt":
            gate = (per_image_loss(step.loss_fn, out_t, step.targets)
                    < per_image_loss(step.loss_fn, step.out, step.targets)).float()
        kd, kparts = self.ost(self.taps[0].features, self.taps[1].features, gate)
        self.steps += 1
        self.window.append(float(kparts["switch_on"]))
        if len(self.window) == self.trace_every:
            self._flush()
        return self.d.w_det * step.loss + self.d.w_kd * kd, {**step.parts, **kparts}

    def _flush(self) -> None:
        if self.window:
            self.open_trace.append({"step": self.steps, "open": round(sum(self.window) / len(self.window), 4)})
            self.window.clear()

    def switch_report(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """metrics.json "switch": the mode, the open share per epoch and over windows of about a quarter epoch."""
        self._flush()
        return {"scm": self.d.scm, "open_per_epoch": [r.get("switch_on") for r in history],
                "open_trace": self.open_trace}

    def close(self) -> None:
        for tap in self.taps:
            tap.remove()
        self.taps = []
