"""Training throughput (images/s) of the demo detector: data pipeline + forward + loss + backward + step.

Runs on CPU, and on CUDA too when a GPU is present (with AMP, as `ghostq train` does). Writes JSON:
`{"results": [{"device", "amp", "batch_size", "img_size", "backbone", "images_per_s", "step_ms", ...}]}`.

    python benchmarks/train_speed.py --json benchmarks/results/train_speed.json [--steps 20] [--config ...]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ghostq.core.atomic import atomic_write_json
from ghostq.core.config import load_config
from ghostq.core.runs import package_versions
from ghostq.detect.builders import (
    augment_from_config,
    build_loss_from_config,
    build_model_from_config,
    make_optimizer,
)
from ghostq.detect.data.prepare import prepare_data
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection

REPO = Path(__file__).resolve().parents[1]


def measure(cfg, splits, device: torch.device, steps: int, warmup: int) -> dict:
    """Time `steps` full training steps after `warmup` untimed ones."""
    torch.manual_seed(0)
    model = build_model_from_config(cfg, len(splits.classes)).to(device).train()
    loss_fn = build_loss_from_config(cfg, len(splits.classes))
    opt = make_optimizer(model, cfg)
    amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    ds = DetectionDataset(
        splits.train,
        img_size=cfg.data.img_size,
        in_channels=cfg.data.in_channels,
        train=True,
        augment=augment_from_config(cfg),
        seed=0,
    )
    loader = DataLoader(
        ds, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True, collate_fn=collate_detection
    )
    it, done, t0 = iter(loader), 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        try:
            images, targets, _ = next(it)
        except StopIteration:
            ds.set_epoch(step)
            it = iter(loader)
            images, targets, _ = next(it)
        images = images.to(device)
        targets = type(targets)(targets.boxes.to(device), targets.labels.to(device), targets.mask.to(device))
        with torch.autocast(device.type, enabled=amp):
            out = model(images)
        loss, _ = loss_fn(out, targets)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if step >= warmup:
            done += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": str(device),
        "amp": amp,
        "batch_size": cfg.train.batch_size,
        "img_size": cfg.data.img_size,
        "backbone": cfg.model.backbone,
        "strides": cfg.model.strides,
        "steps": steps,
        "images_per_s": round(done / seconds, 3),
        "step_ms": round(1000 * seconds / steps, 2),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    parser.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    splits = prepare_data(cfg)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = [measure(cfg, splits, d, args.steps, args.warmup) for d in devices]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **package_versions(),
    }
    atomic_write_json(args.json, {"results": results, "machine": machine})
    for r in results:
        print(
            f"{r['device']}: {r['images_per_s']} images/s ({r['step_ms']} ms/step, batch {r['batch_size']})"
        )


if __name__ == "__main__":
    main()
