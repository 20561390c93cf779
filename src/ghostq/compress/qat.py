"""Quantization-aware training of a quantized student: plain QAT, or GQSD (distillation from the FP teacher).

Reuses the trainer's pieces: the data pipeline (DetectionDataset, DistributedSampler), the detection loss,
warmup + cosine (``lr_factor``), EMA, gradient clipping, DDP under torchrun (rank 0 evaluates), and
``evaluate_detector``. Quantizer scales (log2 domain) get no weight decay.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ghostq.compress.distill import FeatureTap, OSTLoss, distill_layer_names, feature_channels, per_image_loss
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.progress import LoopProgress
from ghostq.detect.data.prepare import DataSplits
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.distributed import DistInfo, all_reduce_mean, broadcast_buffers
from ghostq.detect.ema import ModelEMA
from ghostq.detect.inference import evaluate_detector, make_eval_loader
from ghostq.detect.losses.robust import logit_clip_from_config
from ghostq.detect.train import augment_from_config, build_loss_from_config, lr_factor


@dataclass
class QATResult:
    """The best student (EMA weights when EMA is on), its metrics and the training history."""

    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    step_seconds: float = 0.0


def make_train_loader(cfg: Config, splits: DataSplits, info: DistInfo, batch_size: int,
                      device: torch.device) -> tuple[DataLoader, DistributedSampler, DetectionDataset]:
    """The trainer's augmented, distributed training loader."""
    ds = DetectionDataset(splits.train, img_size=cfg.data.img_size, in_channels=cfg.data.in_channels, train=True,
                          augment=augment_from_config(cfg), seed=cfg.run.seed, cache_images=cfg.data.cache_images)
    batch = min(batch_size, max(1, len(ds) // info.world_size))
    sampler = DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.run.seed, drop_last=True)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True, num_workers=cfg.data.workers,
                        collate_fn=collate_detection, pin_memory=device.type == "cuda")
    return loader, sampler, ds


def qat_param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv / linear weights only; none on biases, norms and quantizer scales."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 and "_quant." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _targets_to(targets: Any, device: torch.device) -> Any:
    return type(targets)(*(t.to(device) for t in (targets.boxes, targets.labels, targets.mask)))


def train_quantized(cfg: Config, ccfg: CompressConfig, student: nn.Module, teacher: nn.Module | None,
                    splits: DataSplits, info: DistInfo, device: torch.device, distill: bool,
                    max_steps: int | None = None, show_progress: bool = True) -> QATResult:
    """QAT (``distill=False``) or GQSD (``distill=True``, teacher required) for ``ccfg.epochs`` epochs."""
    nc = len(splits.classes)
    loss_fn = build_loss_from_config(cfg, nc)
    loader, sampler, ds = make_train_loader(cfg, splits, info, ccfg.batch_size or cfg.train.batch_size, device)
    student = student.to(device).train()
    net: nn.Module = student
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
    ost, tap_s, tap_t = None, None, None
    if distill:
        if teacher is None:
            raise GhostqError("GQSD needs the full-precision teacher")
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        names = distill_layer_names(student, ccfg.distill.layers)
        example = torch.zeros(1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size, device=device)
        d = ccfg.distill
        ost = OSTLoss(feature_channels(teacher, names, example), d.scm, d.proj_dim, d.tau, d.open_target,
                      d.open_weight).to(device)
        tap_s, tap_t = FeatureTap(student, names), FeatureTap(teacher, names)
    opt_cfg = cfg.train
    groups = qat_param_groups([student] + ([ost] if ost is not None else []), opt_cfg.weight_decay)
    if opt_cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=ccfg.lr, momentum=opt_cfg.momentum, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=ccfg.lr, betas=(opt_cfg.momentum, 0.999))
    steps = len(loader)
    total = ccfg.epochs * steps
    warmup = round(ccfg.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, opt_cfg.min_lr_ratio))
    # a QAT run is short: cap the EMA window at about a tenth of the run (decay <= 1 - 10 / steps)
    decay = min(cfg.train.ema_decay, 1.0 - 10.0 / max(total, 20))
    ema = ModelEMA(student, decay, ramp=max(10.0, total / 10)) if ccfg.ema else None
    val_loader = make_eval_loader(splits.val, cfg.data.img_size, cfg.data.in_channels,
                                  batch_size=max(1, loader.batch_size or 1), cache_images=cfg.data.cache_images)
    val_gt = splits.val_coco()
    best_map, best_state, best_row, history = -1.0, None, {}, []
    train_s, n_steps, step_s = 0.0, 0, 0.0
    # the switch's open share, averaged over windows of about a quarter epoch (metrics.json "switch")
    trace_every, open_trace, window = max(1, steps // 4), [], []
    progress = LoopProgress("compress", ccfg.epochs, steps, enabled=show_progress and info.is_main)
    try:
        progress.__enter__()
        for epoch in range(ccfg.epochs):
            net.train()
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            sums: dict[str, float] = {}
            done = 0
            progress.begin_epoch(epoch)
            t0 = time.time()
            for step, (images, targets, _m) in enumerate(loader):
                if max_steps is not None and n_steps >= max_steps:
                    break
                ts = time.perf_counter()
                images, targets = images.to(device, non_blocking=True), _targets_to(targets, device)
                out = net(images)
                det, parts = loss_fn(out, targets)
                loss = det
                if distill:
                    with torch.no_grad():
                        out_t = teacher(images)
                    gate = None
                    if ccfg.distill.scm == "gt":
                        gate = (per_image_loss(loss_fn, out_t, targets)
                                < per_image_loss(loss_fn, out, targets)).float()
                    kd, kparts = ost(tap_s.features, tap_t.features, gate)
                    loss = ccfg.distill.w_det * det + ccfg.distill.w_kd * kd
                    parts = {**parts, **kparts}
                if not torch.isfinite(loss):
                    raise GhostqError(f"non-finite QAT loss at epoch {epoch + 1} step {step + 1}; "
                                      "lower compress.lr (nothing was written for this stage)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if ost is not None and info.enabled:
                    for p in ost.parameters():
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= info.world_size
                if cfg.train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(student.parameters(), cfg.train.grad_clip)
                optimizer.step()
                sched.step()
                if ema is not None:
                    ema.update(student)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                dt = time.perf_counter() - ts
                if n_steps >= 1:  # the first step carries one-off costs
                    step_s += dt
                n_steps += 1
                done += 1
                if "switch_on" in parts:
                    window.append(float(parts["switch_on"]))
                    if len(window) == trace_every:
                        open_trace.append({"step": n_steps, "open": round(sum(window) / len(window), 4)})
                        window.clear()
                for k, v in {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}.items():
                    sums[k] = sums.get(k, 0.0) + v
                progress.step(images.shape[0] * info.world_size, _shown(sums, done))
            train_s += time.time() - t0
            progress.end_epoch(_shown(sums, max(1, done)))
            row = {"epoch": epoch + 1, **{k: all_reduce_mean(v / max(1, done), info, device) for k, v in sums.items()}}
            last = epoch + 1 == ccfg.epochs or (max_steps is not None and n_steps >= max_steps)
            if (epoch + 1) % ccfg.val_every == 0 or last:
                if info.enabled:
                    broadcast_buffers(student, info)
                if info.is_main:
                    model = ema.module if ema is not None else student
                    clip = logit_clip_from_config(cfg, cfg.model.head)
                    m = evaluate_detector(model, val_loader, val_gt, cfg.eval, device, clip)
                    row.update(mAP50=m["mAP50"], mAP50_95=m["mAP50_95"])
                    progress.print(f"compress epoch {epoch + 1}: loss {row.get('loss', 0):.4f} "
                                   f"val mAP50 {m['mAP50']:.4f} mAP50:95 {m['mAP50_95']:.4f}")
                    if m["mAP50"] > best_map:
                        best_map, best_row = m["mAP50"], row
                        best_state = copy.deepcopy(model.state_dict())
            history.append(row)
            if last:
                break
    finally:
        progress.__exit__(None, None, None)
        for tap in (tap_s, tap_t):
            if tap is not None:
                tap.remove()
    final = ema.module if ema is not None else student
    if best_state is not None:
        final.load_state_dict(best_state)
    metrics = {"mAP50": best_row.get("mAP50"), "mAP50_95": best_row.get("mAP50_95"),
               "best_epoch": best_row.get("epoch"), "train_seconds": round(train_s, 2)}
    if distill:
        if window:
            open_trace.append({"step": n_steps, "open": round(sum(window) / len(window), 4)})
        metrics["switch"] = {"scm": ccfg.distill.scm, "open_per_epoch": [r.get("switch_on") for r in history],
                             "open_trace": open_trace}
    return QATResult(final.eval(), metrics, history, train_s, step_s / max(1, n_steps - 1))


def _shown(sums: dict[str, float], steps: int) -> dict[str, float]:
    """The loss terms a progress line shows: running means over the epoch's steps so far."""
    return {k: v / steps for k, v in sums.items() if k != "num_fg"}


def fp_step_seconds(cfg: Config, model: nn.Module, splits: DataSplits, device: torch.device,
                    batch_size: int, steps: int = 6) -> float:
    """Mean seconds of the trainer's FP step (forward, loss, backward, clipping, AdamW, EMA) on the same data:
    the baseline of the QAT step time."""
    model = copy.deepcopy(model).to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    loss_fn = build_loss_from_config(cfg, len(splits.classes))
    loader, _s, _d = make_train_loader(cfg, splits, DistInfo(), batch_size, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ema = ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema else None
    times = []
    for i, (images, targets, _m) in enumerate(loader):
        if i > steps:
            break
        ts = time.perf_counter()
        loss, _ = loss_fn(model(images.to(device)), _targets_to(targets, device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - ts)
    return sum(times) / max(1, len(times))
