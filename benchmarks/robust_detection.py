"""Robust classification losses for the detector under class-flip noise: the synthetic aerial set.

Train labels get 40% symmetric class-flip noise (``ghostq.detect.data.noise.add_label_noise`` on the train
split's COCO dict; boxes are kept), validation stays clean. Each method trains the same detector with the
ghostq trainer from the same seed, and the final weights (EMA) are scored once on clean val: mAP50 and
mAP50:95 (no checkpoint selection on clean data).

Methods (config ``loss`` / ``model.head``):
- ``varifocal``: the default (sigmoid head); ``bce``: plain BCE (sigmoid head);
- ``bce+logitclip``: BCE on LogitClip'd logits, p = inf (sigmoid head);
- ``ce``: softmax C+1 head; ``ce+logitclip``: CE on LogitClip'd logits, p = 2 (softmax head);
- ``logitnorm``: CE on LogitNorm'd logits (softmax head, tau 0.04);
- ``bce+odnl``: BCE + ODNL, synthetic distractor patches pasted 3 per image, eta 0.5 (sigmoid head).

    python benchmarks/robust_detection.py [--quick] --json benchmarks/results/robust_detection.json

``--quick``: 80 images of 160 px (64 train), 30 epochs (1-2 minutes per method on one CPU thread). Writes JSON
``{"results": [{"method", "mAP50", "mAP50_95", ...}], "setup": {...}}`` and a markdown table (``.md``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ghostq.core.config import Config, load_config
from ghostq.core.records import Dataset
from ghostq.detect.data.coco_json import dataset_to_coco
from ghostq.detect.data.noise import add_label_noise
from ghostq.detect.data.prepare import prepare_data
from ghostq.detect.distributed import DistInfo
from ghostq.detect.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

METHODS: dict[str, list[str]] = {
    "varifocal": ["model.head=sigmoid", "loss.cls=varifocal"],
    "bce": ["model.head=sigmoid", "loss.cls=bce"],
    "bce+logitclip": ["model.head=sigmoid", "loss.cls=bce", "loss.logit_clip={p: inf, bound: 4.0}"],
    "ce": ["model.head=softmax", "loss.cls=ce"],
    "ce+logitclip": ["model.head=softmax", "loss.cls=ce", "loss.logit_clip={p: 2, bound: 5.0}"],
    "logitnorm": ["model.head=softmax", "loss.cls=logitnorm", "loss.logitnorm_tau=0.04"],
    "bce+odnl": ["model.head=sigmoid", "loss.cls=bce", "loss.open_set={method: odnl, eta: 0.5, per_image: 3}"],
}


def noisy_splits(splits, rate: float, seed: int):
    """The splits with symmetric class-flip noise on the train records (val untouched), and the noise record."""
    coco = dataset_to_coco(Dataset(splits.format, splits.root, splits.classes, splits.train))
    noisy, changes = add_label_noise(coco, "symmetric", rate, seed)
    by_image: dict[int, list[int]] = {}
    for ann in noisy["annotations"]:  # flips keep every annotation, in record order
        by_image.setdefault(int(ann["image_id"]), []).append(int(ann["category_id"]) - 1)
    train = []
    for image_id, rec in enumerate(splits.train, start=1):
        labels = np.asarray(by_image.get(image_id, []), np.int64)
        assert len(labels) == rec.num_objects
        train.append(replace(rec, labels=labels))
    return replace(splits, train=train), {"changed": len(changes), "objects": len(coco["annotations"])}


def run_method(name: str, base: list[str], root: Path, rate: float, seed: int) -> dict:
    overrides = [*base, f"run.root={root}", f"run.name={name.replace('+', '_')}", *METHODS[name]]
    cfg: Config = load_config(REPO / "configs" / "smoke.yaml", overrides)
    splits, noise = noisy_splits(prepare_data(cfg), rate, seed)
    t0 = time.time()
    trainer = Trainer(cfg, splits, DistInfo(), torch.device("cpu"))
    summary = trainer.fit(None, show_progress=False)
    return {
        "method": name,
        "mAP50": summary["mAP50"],
        "mAP50_95": summary["mAP50_95"],
        "head": cfg.model.head,
        "loss": cfg.model_dump(mode="json")["loss"],
        "final_train_loss": summary["history"][-1]["loss"],
        "seconds": round(time.time() - t0, 1),
        "noise": {"kind": "symmetric", "rate": rate, **noise},
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| method | head | mAP50 | mAP50:95 |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['head']} | {100 * r['mAP50']:.1f} | {100 * r['mAP50_95']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny set, few epochs")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "robust_detection.json"))
    parser.add_argument("--rate", type=float, default=0.4, help="symmetric class-flip rate on train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        images, size, epochs, batch = 80, 160, 30, 8
    else:
        images, size, epochs, batch = 240, 320, 40, 16
    base = [
        f"data.synthetic.images={images}", f"data.synthetic.size={size}", f"data.img_size={size}",
        f"train.epochs={epochs}", f"train.batch_size={batch}", f"train.val_every={epochs}",
        f"train.threads={args.threads}", "train.warmup_epochs=1", f"run.seed={args.seed}", "train.device=cpu",
    ]  # fmt: skip
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {', '.join(METHODS)}")
    rows, t0 = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp)
        for m in methods:
            rows.append(run_method(m, base, root, args.rate, args.seed))
            r = rows[-1]
            print(f"{m:>14}: mAP50 {r['mAP50']:.4f}  mAP50:95 {r['mAP50_95']:.4f}  ({r['seconds']}s)", flush=True)
    out = {
        "results": rows,
        "setup": {
            "data": f"synthetic, {images} images of {size} px, 20% val (clean)",
            "noise": f"symmetric class flips, rate {args.rate}, on train only",
            "train": f"csp_n, {epochs} epochs, batch {batch}, AdamW, EMA; final weights scored once",
            "quick": args.quick,
            "seed": args.seed,
            "threads": args.threads,
        },
        "seconds": round(time.time() - t0, 1),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(
        f"Clean-val mAP (%) on the synthetic set, {args.rate:.0%} symmetric class-flip noise on train "
        f"({'quick' if args.quick else 'full'} run: {images} images of {size} px, {epochs} epochs, seed "
        f"{args.seed}).\n\n" + markdown(rows),
        encoding="utf-8",
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
