"""The memorisation curve on NWPU VHR-10: CE vs CE + LogitClip under symmetric class flips, epoch by epoch.

Both methods train from scratch (softmax C+1 head, the same seed and recipe) on a seeded subset of the train
split of runs/nwpu/split.json (images with objects), whose labels get ``--rate`` symmetric class flips
(``ghostq.detect.data.noise``, every change recorded); val stays clean. After every epoch the evaluated model
(EMA) predicts the (unaugmented) train images, and each flipped object's answer is counted
(``ghostq.detect.memorisation``: predicted as its noisy class = memorised, its true class, another class, missed);
every ``--val-every`` epochs and at the end, clean-val mAP50. The final clean-val mAP difference comes with a
paired bootstrap interval (1,000 draws, seed 0).

    python benchmarks/robust_nwpu_memo.py data.root=../shared/nwpu_vhr10 [--img 256 --images 192 --epochs 30]

Per-method rows (with the per-epoch history) go to ``--work``/memo and are skipped when finished (the methods
train in turn, epoch by epoch; ``--report`` writes the results of a stopped run from its rows so far); results:
``benchmarks/results/robust_nwpu_memo.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robust_nwpu import load_split, machine, noisy_train_subset  # noqa: E402  (the shared split check, next to this file)

from ghostq.core.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ghostq.core.runs import package_versions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS: dict[str, list[str]] = {
    "ce": ["model.head=softmax", "loss.cls=ce"],
    "ce+logitclip": ["model.head=softmax", "loss.cls=ce", "loss.logit_clip={p: 2, bound: 5.0}"],
}


def method_epochs(name: str, args, work: Path) -> Iterator[dict[str, Any]]:
    """Train one method, yielding its row after every epoch (history so far, written to ``work/<name>.json``);
    the last row holds the final val detections and ``done``. A finished row is yielded at once."""
    import torch

    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.inference import make_eval_loader
    from ghostq.detect.memorisation import NoisyObjects, memorisation_shares
    from ghostq.detect.ood_eval import coco_dets, predict_with_ood
    from ghostq.detect.trainer import Trainer

    path = work / f"{name.replace('+', '_')}.json"
    if path.is_file() and json.loads(path.read_text()).get("done"):
        yield json.loads(path.read_text())
        return
    torch.set_num_threads(args.threads)
    overrides = [*args.overrides, f"run.root={work}", f"run.name={name.replace('+', '_')}",
                 f"data.img_size={args.img}", f"train.epochs={args.epochs}", f"train.val_every={args.epochs}",
                 f"train.threads={args.threads}", "train.device=cpu", *METHODS[name]]
    cfg, splits, split = load_split(args.config, overrides, Path(args.run))
    clean, flipped, noise = noisy_train_subset(splits, args.images, args.kind, args.rate, cfg.run.seed)
    objects = [NoisyObjects(c.boxes, c.labels, f.labels) for c, f in zip(clean, flipped, strict=True)]
    trainer = Trainer(cfg, replace(splits, train=flipped), DistInfo(), torch.device("cpu"), save=False)
    loader = make_eval_loader(flipped, cfg.data.img_size, cfg.data.in_channels, batch_size=16)
    row: dict[str, Any] = {"method": name, "loss": cfg.model_dump(mode="json")["loss"], "head": cfg.model.head,
                           "noise": noise, "history": [], "split_sha256": split["sha256"]}
    own = 0.0  # this method's own seconds (the methods run in turn)
    for epoch in range(args.epochs):
        ts = time.time()
        stats = trainer.train_one_epoch(epoch)
        model = trainer.ema.module if trainer.ema is not None else trainer.model
        dets = predict_with_ood(model, trainer.spec, loader)
        shares = memorisation_shares(objects, [(d.boxes, d.scores, d.labels) for d in dets])
        h = {"epoch": epoch + 1, "loss": stats["loss"], "flipped": shares["flipped"], "clean": shares["clean"]}
        if (epoch + 1) % args.val_every == 0 or epoch + 1 == args.epochs:
            m = trainer.evaluate()
            h.update(val_mAP50=m["mAP50"], val_mAP50_95=m["mAP50_95"])
        own += time.time() - ts
        h["elapsed_s"] = round(own, 1)
        row["history"].append(h)
        print(f"{name} epoch {epoch + 1}: memorised {shares['flipped']['noisy']:.3f} true "
              f"{shares['flipped']['true']:.3f} missed {shares['flipped']['missed']:.3f} "
              f"val mAP50 {h.get('val_mAP50', float('nan')):.3f} ({h['elapsed_s']} s)", flush=True)
        atomic_write_json(path, row)  # progress so far (not done: a rerun starts the method again)
        if epoch + 1 < args.epochs:
            yield row
    model = trainer.ema.module if trainer.ema is not None else trainer.model
    row["val_dets"] = coco_dets(predict_with_ood(model, trainer.spec, splits.val))
    row.update(done=True, seconds=round(own, 1), train_images=len(flipped))
    atomic_write_json(path, row)
    yield row


def markdown(result: dict[str, Any]) -> str:
    """Per epoch: memorised / true / missed shares of the flipped train objects and clean-val mAP50, per method."""
    names = list(result["rows"])
    head = "| epoch | " + " | ".join(f"{n}: memorised / true / missed (%) | {n}: val mAP50" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]
    for k in range(max(len(r["history"]) for r in result["rows"].values())):
        cells = []
        for n in names:
            hist = result["rows"][n]["history"]
            if k >= len(hist):
                cells += ["", ""]
                continue
            f = hist[k]["flipped"]
            cells.append(f"{100 * f['noisy']:.1f} / {100 * f['true']:.1f} / {100 * f['missed']:.1f}")
            cells.append(f"{100 * hist[k]['val_mAP50']:.1f}" if "val_mAP50" in hist[k] else "")
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    for name, d in result["differences"].items():
        lines.append(f"\nFinal clean-val mAP50, {name}: {100 * d['diff']:+.1f} "
                     f"[{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] (paired bootstrap, 95%).")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Memorised / true-class shares of the flipped train objects and clean-val mAP50 per epoch, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, row), colour in zip(result["rows"].items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        hist = row["history"]
        ep = [h["epoch"] for h in hist]
        ax1.plot(ep, [100 * h["flipped"]["noisy"] for h in hist], "-", color=colour, label=f"{name}: noisy class")
        ax1.plot(ep, [100 * h["flipped"]["true"] for h in hist], "--", color=colour, label=f"{name}: true class")
        val = [(h["epoch"], 100 * h["val_mAP50"]) for h in hist if "val_mAP50" in h]
        ax2.plot([v[0] for v in val], [v[1] for v in val], "o-", color=colour, label=name)
    ax1.set(xlabel="epoch", ylabel="% of flipped train objects", title="predicted as ... (flipped labels)")
    ax2.set(xlabel="epoch", ylabel="clean-val mAP50 (%)", title="clean val")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "nwpu"), help="the reference run (its split)")
    parser.add_argument("--work", default=str(REPO / "runs" / "robust_nwpu_E" / "memo"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "robust_nwpu_memo.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--img", type=int, default=256, help="input size")
    parser.add_argument("--images", type=int, default=192, help="train images (with objects) used")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--val-every", type=int, default=3, help="clean-val mAP every N epochs")
    parser.add_argument("--kind", default="symmetric", choices=("symmetric", "asymmetric", "pairflip"),
                        help="class flips (the curve counts flipped objects)")
    parser.add_argument("--rate", type=float, default=0.4)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--report", action="store_true", help="write the results from the rows so far, no training")
    args = parser.parse_args()
    t0 = time.time()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    rows: dict[str, Any] = {}
    if args.report:  # what the rows hold so far (a stopped run's partial curves)
        for m in methods:
            path = work / f"{m.replace('+', '_')}.json"
            if path.is_file():
                rows[m] = json.loads(path.read_text())
    else:  # the methods in turn, epoch by epoch, so that a stopped run leaves curves of equal length
        running = {m: method_epochs(m, args, work) for m in methods}
        while running:
            for m in list(running):
                try:
                    rows[m] = next(running[m])
                except StopIteration:
                    del running[m]
    diffs = {}
    if all(rows.get(m, {}).get("done") for m in ("ce", "ce+logitclip")):
        from ghostq.detect.bootstrap import map_difference

        cfg, splits, _ = load_split(args.config, args.overrides, Path(args.run))
        gt = splits.val_coco()
        diffs["ce+logitclip - ce"] = map_difference(gt, rows["ce"]["val_dets"], rows["ce+logitclip"]["val_dets"],
                                                    "mAP50", draws=args.draws)
    result = {"rows": {k: {kk: vv for kk, vv in r.items() if kk != "val_dets"} for k, r in rows.items()},
              "differences": diffs,
              "partial": not all(r.get("done") for r in rows.values()),
              "setup": {"img_size": args.img, "train_images": args.images, "epochs": args.epochs,
                        "noise": f"{args.kind} class flips {args.rate} on train only, val clean",
                        "threads": args.threads, "draws": args.draws, "bootstrap_seed": 0},
              "machine": machine(), "versions": package_versions(), "wall_s": round(time.time() - t0, 1)}
    atomic_write_json(args.json, result)
    atomic_write_text(Path(args.json).with_suffix(".md"), markdown(result))
    plot(result, Path(args.json).with_suffix(".png"))
    print(markdown(result))


if __name__ == "__main__":
    main()
