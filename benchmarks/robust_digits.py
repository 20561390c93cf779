"""Robust losses under label noise on real data: scikit-learn's 1,797 handwritten digits (8 x 8), a small CNN.

Train labels get symmetric (20/40/60%, to a uniformly random other class) or asymmetric (40%: 7->1, 2->7,
5<->6, 3->8, Patrini et al.) noise; the test set is clean. Methods use ghostq's loss code:
``ce``, ``ce+logitclip`` (p=2, bound d), ``logitnorm`` (tau 0.04), ``gce`` (q 0.7), ``sce`` (0.1, 1),
``nce_rce`` (1, 1), ``ce+odnl`` (open-set images: 8 x 8 grey crops of scikit-learn's two sample photos,
labels drawn uniformly at every step, weight eta). Accuracy of the final model (no early stopping on clean
data: the point is what the loss does by itself).

    python benchmarks/robust_digits.py [--quick] --json benchmarks/results/robust_digits.json

``--quick``: one seed, symmetric 40% only (under 3 minutes on one CPU thread). Writes JSON
``{"results": [{"method", "noise", "rate", "acc_mean", "acc_std", "seeds"}], ...}`` and a markdown table
next to it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghostq.detect.losses.open_set import OpenSetLabeler
from ghostq.detect.losses.robust import LogitClip, LogitNorm, softmax_gce, softmax_nce_rce, softmax_sce

METHODS = ("ce", "ce+logitclip", "logitnorm", "gce", "sce", "nce_rce", "ce+odnl")
ASYM = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
NUM_CLASSES = 10


def load_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=seed)


def noisy_labels(y: np.ndarray, kind: str, rate: float, rng: np.random.Generator) -> np.ndarray:
    y = y.copy()
    pick = rng.random(len(y)) < rate
    for i in np.nonzero(pick)[0]:
        if kind == "symmetric":
            y[i] = (y[i] + rng.integers(1, NUM_CLASSES)) % NUM_CLASSES
        elif y[i] in ASYM:
            y[i] = ASYM[int(y[i])]
    return y


def open_set_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` 8 x 8 grey crops (32 x 32 px, averaged 4 x 4) of scikit-learn's sample photos, in [0, 1]."""
    from sklearn.datasets import load_sample_images

    photos = [im.mean(-1) / 255.0 for im in load_sample_images().images]
    out = np.empty((n, 1, 8, 8), np.float32)
    for i in range(n):
        p = photos[int(rng.integers(len(photos)))]
        y0, x0 = rng.integers(0, p.shape[0] - 32), rng.integers(0, p.shape[1] - 32)
        crop = p[y0 : y0 + 32, x0 : x0 + 32].reshape(8, 4, 8, 4).mean((1, 3))
        crop = (crop - crop.min()) / max(crop.max() - crop.min(), 1e-6)  # stretch like the digits' ink
        out[i, 0] = crop if rng.random() < 0.5 else 1.0 - crop
    return out


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_loss(method: str, clip_bound: float, tau: float):
    """loss(logits, labels) -> scalar for the in-distribution batch."""
    clip, norm = LogitClip(clip_bound, p=2), LogitNorm(tau)

    def onehot(y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, NUM_CLASSES).float()

    table = {
        "ce": lambda z, y: F.cross_entropy(z, y),
        "ce+odnl": lambda z, y: F.cross_entropy(z, y),
        "ce+logitclip": lambda z, y: F.cross_entropy(clip(z), y),
        "logitnorm": lambda z, y: F.cross_entropy(norm(z), y),
        "gce": lambda z, y: softmax_gce(z, onehot(y)).mean(),
        "sce": lambda z, y: softmax_sce(z, onehot(y)).mean(),
        "nce_rce": lambda z, y: softmax_nce_rce(z, onehot(y)).mean(),
    }
    return table[method]


def run_one(method: str, kind: str, rate: float, seed: int, data, args) -> float:
    x_tr, x_te, y_tr, y_te = data
    rng = np.random.default_rng(1000 * seed + int(rate * 100) + (7 if kind == "asymmetric" else 0))
    y_noisy = noisy_labels(y_tr, kind, rate, rng)
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = int(np.ceil(len(x_tr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    loss_fn = make_loss(method, args.clip_bound, args.tau)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_noisy).long()
    odnl = OpenSetLabeler(NUM_CLASSES, "odnl", args.odnl_eta, generator=torch.Generator().manual_seed(seed))
    open_pool = torch.from_numpy(open_set_images(4000, rng)) if method == "ce+odnl" else None
    for _epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), args.batch):
            idx = perm[i : i + args.batch]
            xb = xt[idx] + 0.05 * torch.randn_like(xt[idx])
            loss = loss_fn(model(xb), yt[idx])
            if open_pool is not None:  # ODNL: fresh uniform labels for the open-set batch at every step
                xo = open_pool[torch.randint(0, len(open_pool), (len(idx),))]
                labels, weights = odnl.draw(len(idx))
                loss = loss + (weights * F.cross_entropy(model(xo), labels, reduction="none")).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_te)).argmax(-1).numpy()
    return float((pred == y_te).mean())


def markdown(rows: list[dict]) -> str:
    settings = sorted({(r["noise"], r["rate"]) for r in rows}, key=lambda s: (s[0] != "symmetric", s[1]))
    head = "| method | " + " | ".join(f"{k} {int(r * 100)}%" for k, r in settings) + " |"
    lines = [head, "|---" * (len(settings) + 1) + "|"]
    for m in METHODS:
        cells = []
        for k, r in settings:
            hit = [x for x in rows if x["method"] == m and x["noise"] == k and x["rate"] == r]
            cells.append(f"{100 * hit[0]['acc_mean']:.1f} ± {100 * hit[0]['acc_std']:.1f}" if hit else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, symmetric 40%% only")
    parser.add_argument("--json", default="benchmarks/results/robust_digits.json")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--clip-bound", type=float, default=1.0, help="LogitClip d = 1/tau (p=2)")
    parser.add_argument("--tau", type=float, default=0.04, help="LogitNorm temperature")
    parser.add_argument("--odnl-eta", type=float, default=1.0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = [("symmetric", 0.4)] if args.quick else [
        ("symmetric", 0.2), ("symmetric", 0.4), ("symmetric", 0.6), ("asymmetric", 0.4)
    ]  # fmt: skip
    seeds = [0] if args.quick else list(range(args.seeds))
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {', '.join(METHODS)}")
    data = load_split(0)
    rows, t0 = [], time.time()
    for kind, rate in settings:
        for m in methods:
            accs = [run_one(m, kind, rate, s, data, args) for s in seeds]
            rows.append({
                "method": m, "noise": kind, "rate": rate, "acc_mean": float(np.mean(accs)),
                "acc_std": float(np.std(accs)), "seeds": seeds, "accs": accs,
            })  # fmt: skip
            print(f"{kind} {rate:.0%} {m:>13}: {np.mean(accs):.4f} ± {np.std(accs):.4f}  ({time.time() - t0:.0f}s)")
    out = {
        "results": rows,
        "setup": {
            "data": "sklearn load_digits, 1347 train / 450 test (stratified, random_state 0), test clean",
            "model": "3-conv CNN + 2 FC, SGD nesterov 0.9, OneCycle, weight decay 5e-4",
            **{k: v for k, v in vars(args).items() if k not in ("json", "methods")},
        },
        "seconds": round(time.time() - t0, 1),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(
        "Clean test accuracy (%) on sklearn digits, mean ± std over seeds "
        f"{seeds}, train labels noisy.\n\n" + markdown(rows),
        encoding="utf-8",
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
