"""Quantization-aware training of a quantized student through the detector's Trainer: plain QAT, or GQSD.

No loop of its own: the Trainer brings the data pipeline (open-set pastes and class counts included), the
detection loss, warmup + cosine, EMA, clipping, DDP and evaluation with the model's LogitClip; this sets the
`compress` section's schedule, the optimizer groups (quantizer scales without weight decay) and, for GQSD, the
distillation hook (`ghostq.compress.qat_hooks`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.detect.data.prepare import DataSplits
from ghostq.detect.distributed import DistInfo
from ghostq.detect.train_hooks import Schedule, TrainHooks
from ghostq.detect.trainer import Trainer


@dataclass
class QATResult:
    """The best student (EMA weights when EMA is on), its metrics and the training history."""

    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    step_seconds: float = 0.0


def qat_param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv / linear weights only; none on biases, norms and quantizer scales."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 and "_quant." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def qat_schedule(cfg: Config, ccfg: CompressConfig, max_steps: int | None) -> Schedule:
    """The `compress` section's schedule; the EMA window is capped at about a tenth of the (short) run."""
    return Schedule("compress", ccfg.epochs, ccfg.lr, ccfg.warmup_epochs, ccfg.batch_size or cfg.train.batch_size,
                    ccfg.val_every, ccfg.ema, cfg.train.ema_decay, ema_run_share=0.1, amp=False,
                    max_steps=max_steps, time_steps=True)


def train_quantized(cfg: Config, ccfg: CompressConfig, student: nn.Module, teacher: nn.Module | None,
                    splits: DataSplits, info: DistInfo, device: torch.device, distill: bool,
                    max_steps: int | None = None, show_progress: bool = True) -> QATResult:
    """QAT (``distill=False``) or GQSD (``distill=True``, teacher required) for ``ccfg.epochs`` epochs."""
    from ghostq.compress.qat_hooks import DistillHook

    hook = None
    if distill:
        if teacher is None:
            raise GhostqError("GQSD needs the full-precision teacher")
        example = torch.zeros(1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size)
        hook = DistillHook(student.to(device), teacher, ccfg.distill, example, device)
    extra = [hook.ost] if hook is not None else []
    hooks = TrainHooks(extra_loss=hook, param_groups=lambda model, wd: qat_param_groups([model, *extra], wd))
    trainer = Trainer(cfg, splits, info, device, model=student, schedule=qat_schedule(cfg, ccfg, max_steps),
                      hooks=hooks, save=False)
    try:
        if hook is not None:
            hook.attach(trainer.model, trainer.steps_per_epoch)
        summary = trainer.fit(None, show_progress)
    finally:
        if hook is not None:
            hook.close()
    metrics = {k: summary[k] for k in ("mAP50", "mAP50_95", "best_epoch", "train_seconds")}
    if hook is not None:
        metrics["switch"] = hook.switch_report(trainer.history)
    return QATResult(trainer.best_model(), metrics, trainer.history, trainer.train_seconds, trainer.step_seconds)


def fp_step_seconds(cfg: Config, model: nn.Module, splits: DataSplits, device: torch.device,
                    batch_size: int, steps: int = 6) -> float:
    """Mean seconds of the Trainer's FP step (forward, loss, backward, clipping, AdamW, EMA) on the same data, at
    full precision like the QAT step: the baseline of the QAT step time."""
    model = copy.deepcopy(model).train()
    for p in model.parameters():
        p.requires_grad_(True)
    t = cfg.train
    schedule = Schedule("train", 1, 1e-6, 0.0, batch_size, 1, t.ema, t.ema_decay, amp=False, max_steps=steps + 1,
                        time_steps=True)
    trainer = Trainer(cfg, splits, DistInfo(), device, model=model, schedule=schedule, save=False)
    trainer.train_one_epoch(0)
    return trainer.step_seconds
