"""The one training loop: epochs, validation, checkpoints (used by ghostq.stages.train and ghostq.compress.qat).

FP training and QAT / GQSD share it; what a stage adds (a teacher, extra loss terms, a switch gate, its own
optimizer groups, a shorter schedule) comes in through `TrainHooks` and `Schedule`, the way ModelOpt's
``mtq.quantize(model, cfg, forward_loop)`` leaves the loop to its caller.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ghostq.core.atomic import atomic_write_json
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.progress import LoopProgress
from ghostq.core.runs import RunDir
from ghostq.core.spec import spec_from_config
from ghostq.detect.builders import (
    augment_from_config,
    build_loss_from_config,
    build_model_from_config,
    lr_factor,
    make_optimizer,
)
from ghostq.detect.checkpoint import load_checkpoint, load_state_checked, require_training_state, save_checkpoint
from ghostq.detect.data.prepare import DataSplits
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.distributed import DistInfo, all_reduce_mean, broadcast_buffers
from ghostq.detect.ema import ModelEMA
from ghostq.detect.inference import evaluate_detector, make_eval_loader
from ghostq.detect.train_hooks import Schedule, Step, TrainHooks


class Trainer:
    """State of one training run; `fit` runs the epochs.

    `model`: the model to train (default: the config's detector, freshly seeded); `save`: write the best and last
    checkpoints, metrics.json and curves.png to <run>/fp, or (False) keep the best state in memory (`best_model`)
    and write nothing (QAT: its stage writes the quantized checkpoint).
    """

    def __init__(self, cfg: Config, splits: DataSplits, info: DistInfo, device: torch.device, *,
                 model: nn.Module | None = None, schedule: Schedule | None = None, hooks: TrainHooks | None = None,
                 save: bool = True) -> None:
        self.cfg, self.splits, self.info, self.device = cfg, splits, info, device
        self.sched = schedule or Schedule.of_train(cfg.train)
        self.hooks = hooks or TrainHooks()
        self.run = RunDir(cfg.run_dir)
        self.fp_dir, self.save = self.run.path / "fp", save
        self.spec = spec_from_config(cfg, splits.classes)
        nc = len(splits.classes)
        if model is None:
            torch.manual_seed(cfg.run.seed)
            model = build_model_from_config(cfg, nc)
        self.model = model.to(device)
        counts = [int(sum(int((r.labels == c).sum()) for r in splits.train)) for c in range(nc)]
        self.loss_fn = build_loss_from_config(cfg, nc, counts)
        self.train_ds = DetectionDataset(
            splits.train,
            img_size=cfg.data.img_size,
            in_channels=cfg.data.in_channels,
            train=True,
            augment=augment_from_config(cfg),
            seed=cfg.run.seed,
            cache_images=cfg.data.cache_images,
        )
        collate = collate_detection
        if cfg.loss.open_set is not None:  # paste open-set objects (ODNL / Open-sampling)
            from ghostq.detect.data.open_set_paste import (
                OpenSetPasteDataset,
                collate_open_set,
                load_patch_bank,
            )

            patches, native = load_patch_bank(cfg.loss.open_set.source, seed=cfg.run.seed)
            self.train_ds = OpenSetPasteDataset(self.train_ds, patches, cfg.loss.open_set.per_image, native)
            collate = collate_open_set
        batch = min(self.sched.batch_size, max(1, len(self.train_ds) // info.world_size))
        self.sampler = DistributedSampler(
            self.train_ds,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=cfg.run.seed,
            drop_last=True,
        )
        self.loader = DataLoader(
            self.train_ds,
            batch_size=batch,
            sampler=self.sampler,
            drop_last=True,
            num_workers=cfg.data.workers,
            collate_fn=collate,
            persistent_workers=cfg.data.workers > 0,
            pin_memory=device.type == "cuda",
        )
        self.val_loader = make_eval_loader(
            splits.val,
            cfg.data.img_size,
            cfg.data.in_channels,
            batch_size=max(1, batch),
            workers=cfg.data.workers,
            cache_images=cfg.data.cache_images,
        )
        self.val_gt = splits.val_coco()
        self.net: nn.Module = self.model
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        groups = None if self.hooks.param_groups is None else self.hooks.param_groups(self.model,
                                                                                      cfg.train.weight_decay)
        self.optimizer = make_optimizer(self.model, cfg, groups, self.sched.lr)
        own = {id(p) for p in self.model.parameters()}
        self.outside = [p for g in self.optimizer.param_groups for p in g["params"] if id(p) not in own]
        self.steps_per_epoch = len(self.loader)
        total = self.sched.epochs * self.steps_per_epoch
        warmup = round(self.sched.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, warmup, cfg.train.min_lr_ratio)
        )
        self.use_amp = self.sched.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ema = self._make_ema(total) if self.sched.ema else None
        self.start_epoch, self.best_map, self.history = 0, -1.0, []
        self.train_seconds, self.images_seen = 0.0, 0
        self.steps_done, self.timed_seconds, self.timed_steps = 0, 0.0, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _make_ema(self, total: int) -> ModelEMA:
        share = self.sched.ema_run_share
        if share is None:
            return ModelEMA(self.model, self.sched.ema_decay)
        decay = min(self.sched.ema_decay, 1.0 - 1.0 / (share * max(total, 20)))
        return ModelEMA(self.model, decay, ramp=max(10.0, share * total))

    @property
    def step_seconds(self) -> float:
        """Mean seconds of a training step, the run's first step (one-off costs) left out."""
        return self.timed_seconds / max(1, self.timed_steps)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def best_model(self) -> nn.Module:
        """The evaluated model (EMA weights when EMA is on) holding the best validated state, in eval mode."""
        model = self._eval_model()
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model.eval()

    def _common(self) -> dict[str, Any]:
        return {"config": self.cfg.model_dump(mode="json"), "classes": list(self.splits.classes),
                "spec": self.spec.to_dict()}

    def save_last(self, epoch: int) -> None:
        payload = {
            **self._common(),
            "model": self.model.state_dict(),
            "epoch": epoch,
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "best_map50": self.best_map,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "images_seen": self.images_seen,
        }
        save_checkpoint(self.fp_dir / "last.pt", payload)

    def load_last(self) -> None:
        path = self.fp_dir / "last.pt"
        state = load_checkpoint(path, map_location=self.device)
        require_training_state(path, state)
        saved = {k: state["config"].get(k) for k in ("data", "model", "loss")}
        now = {k: self.cfg.model_dump(mode="json")[k] for k in ("data", "model", "loss")}
        if saved != now:
            changed = [k for k in saved if saved[k] != now[k]]
            raise GhostqError(
                f"{path}: cannot resume: config sections {changed} differ from the checkpoint's"
            )
        load_state_checked(path, self.model, state["model"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.start_epoch = int(state["epoch"]) + 1
        self.best_map = float(state["best_map50"])
        self.history = list(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.images_seen = int(state.get("images_seen", 0))

    # -- loop -----------------------------------------------------------------------------------------------
    def _out_of_steps(self) -> bool:
        return self.sched.max_steps is not None and self.steps_done >= self.sched.max_steps

    def train_one_epoch(self, epoch: int, progress: LoopProgress | None = None) -> dict[str, float]:
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        sums: dict[str, float] = {}
        done = 0
        if progress is not None:
            progress.begin_epoch(epoch)
        t0 = time.time()
        for step, (images, targets, _metas) in enumerate(self.loader):
            if self._out_of_steps():
                break
            ts = time.perf_counter()
            loss, parts = self.train_step(images, targets, epoch, step)
            if self.sched.time_steps and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if self.steps_done >= 1:  # the run's first step carries one-off costs
                self.timed_seconds += time.perf_counter() - ts
                self.timed_steps += 1
            self.steps_done += 1
            done += 1
            self.images_seen += images.shape[0] * self.info.world_size
            parts = {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if progress is not None:
                progress.step(images.shape[0] * self.info.world_size, _shown(sums, done))
        self.train_seconds += time.time() - t0
        n = max(1, done)
        means = {k: all_reduce_mean(v / n, self.info, self.device) for k, v in sums.items()}
        means["lr"] = self.optimizer.param_groups[0]["lr"]
        if progress is not None:
            progress.end_epoch(_shown(sums, n))
        return means

    def train_step(self, images: torch.Tensor, targets: Any, epoch: int, step: int) -> tuple[torch.Tensor, dict]:
        """Forward, loss (+ the hooks' terms), backward, clipping, optimizer, schedule and EMA for one batch."""
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            out = self.net(images)
        out = _to_float(out)
        loss, parts = self.loss_fn(out, targets)
        if self.hooks.extra_loss is not None:
            loss, parts = self.hooks.extra_loss(Step(images, targets, out, loss, parts, self.loss_fn))
        self._check_finite(loss, parts, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.info.enabled:  # DDP averages the model's gradients; parameters outside it are averaged here
            for p in self.outside:
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.info.world_size
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss, parts

    def _last_good(self) -> str:
        if not self.save:
            return "nothing was written for this stage"
        last = self.fp_dir / "last.pt"
        return f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"

    def _advice(self) -> str:
        return f"Lower {self.sched.section}.lr or raise {self.sched.section}.warmup_epochs."

    def _check_finite(self, loss: torch.Tensor, parts: dict, epoch: int, step: int) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
        if self.info.enabled:
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            raise GhostqError(
                f"non-finite loss at epoch {epoch + 1} step {step + 1} "
                f"(parts: { ({k: float(v) for k, v in parts.items()}) }); stopped, {self._last_good()}. "
                f"{self._advice()}"
            )

    def evaluate(self) -> dict[str, Any]:
        """COCO mAP of the evaluated model on the val split, scored by the spec's inference head (its LogitClip)."""
        return evaluate_detector(self._eval_model(), self.val_loader, self.val_gt, self.spec, self.device)

    def fit(self, stop_after: int | None, show_progress: bool) -> dict[str, Any]:
        epochs, name = self.sched.epochs, self.sched.section
        last_epoch = epochs if stop_after is None else min(epochs, self.start_epoch + stop_after)
        with LoopProgress(
            name, epochs, self.steps_per_epoch, start_epoch=self.start_epoch, stop_epoch=last_epoch,
            enabled=show_progress and self.info.is_main,
        ) as progress:
            for epoch in range(self.start_epoch, last_epoch):
                row = {"epoch": epoch + 1, **self.train_one_epoch(epoch, progress)}
                final = epoch + 1 == epochs or self._out_of_steps()
                if (epoch + 1) % self.sched.val_every == 0 or final:
                    if self.info.enabled:
                        broadcast_buffers(self.model, self.info)
                    if self.info.is_main:
                        m = self.evaluate()
                        row.update(mAP50=m["mAP50"], mAP50_95=m["mAP50_95"])
                        progress.print(_val_line(name, row))
                self.history.append(row)
                if self.info.is_main:
                    self._keep(epoch, row)
                if final:
                    break
        if self.info.enabled:
            broadcast_buffers(self.model, self.info)
            if self.ema is not None:
                broadcast_buffers(self.ema.module, self.info)
        return self._summary()

    def _keep(self, epoch: int, row: dict[str, Any]) -> None:
        """The epoch's files (`save`), or the best state in memory."""
        if self.save:
            self._write_epoch(epoch, row)
        elif row.get("mAP50", -1.0) > self.best_map:
            self.best_map = row["mAP50"]
            self.best_state = copy.deepcopy(self._eval_model().state_dict())

    def _write_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        kept = self._last_good()  # before this epoch's saves
        try:
            if row.get("mAP50", -1.0) > self.best_map:
                save_checkpoint(
                    self.fp_dir / "best.pt",
                    {**self._common(), "model": self._eval_model().state_dict(), "epoch": epoch, "metrics": row},
                )
                self.best_map = row["mAP50"]
            self.save_last(epoch)
        except GhostqError as err:  # non-finite weights: stop, the files of the last good epoch stay
            raise GhostqError(f"{err}; training stopped after epoch {epoch + 1}, {kept}. {self._advice()}") from None
        atomic_write_json(self.fp_dir / "metrics.json", json_safe(self._summary()))
        from ghostq.detect.curves import plot_training_curves

        plot_training_curves(self.history, self.fp_dir / "curves.png")

    def _summary(self) -> dict[str, Any]:
        evals = [r for r in self.history if "mAP50" in r]
        best = max(evals, key=lambda r: r["mAP50"]) if evals else {}
        return {
            "mAP50": best.get("mAP50"),
            "mAP50_95": best.get("mAP50_95"),
            "best_epoch": best.get("epoch"),
            "epochs_done": len(self.history),
            "train_seconds": round(self.train_seconds, 2),
            "images_per_s": round(self.images_seen / self.train_seconds, 3) if self.train_seconds else None,
            "classes": list(self.splits.classes),
            "num_train": len(self.splits.train),
            "num_val": len(self.splits.val),
            "history": self.history,
        }


def _val_line(section: str, row: dict[str, Any]) -> str:
    """The line printed after a validation (a stage's own loop also shows the epoch's mean loss)."""
    scores = f"val mAP50 {row['mAP50']:.4f} mAP50:95 {row['mAP50_95']:.4f}"
    if section == "train":
        return f"epoch {row['epoch']}: {scores}"
    return f"{section} epoch {row['epoch']}: loss {row.get('loss', 0.0):.4f} {scores}"


def _shown(sums: dict[str, float], steps: int) -> dict[str, float]:
    """The loss terms a progress line shows: running means (the positives' count is no loss term)."""
    return {k: v / steps for k, v in sums.items() if k != "num_fg"}


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN / inf float replaced by None: JSON has no NaN, and a metric that is not a number is none."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _to_float(out: Any) -> Any:
    """Losses run in float32 even when the forward ran under autocast."""
    from ghostq.detect.models.output import DetectorOutput

    return DetectorOutput(out.cls_logits.float(), out.boxes.float(), out.points, out.strides, out.head_type)

