"""Label noise on NWPU VHR-10: do the robust losses help a detector? Method x noise rows on the reference split.

Every row trains the detector from scratch (the same seed and recipe) on a seeded subset of the train split of
``runs/nwpu/split.json`` (``--images`` images with objects) whose labels get one kind of noise
(``ghostq.detect.data.noise.add_label_noise``, every change recorded): symmetric class flips, look-alike flips
(tennis <-> basketball court, baseball diamond <-> ground track field, ship <-> harbor / vehicle), missing boxes,
box jitter; val stays clean. The final weights (EMA) are scored once on the whole clean val split (no checkpoint
selection on clean data): mAP50, mAP50:95, and each method's difference against its own baseline under the same
noise (paired bootstrap over val images, 1,000 draws, seed 0), also the default (varifocal) against clean labels.

Methods (``METHODS``): the default varifocal, BCE (sigmoid head), CE (softmax C+1 head), each robust loss on the
head its paper uses (GCE q 0.7, SCE alpha 0.1 / beta 1, NCE+RCE 1 / 1, LogitNorm tau 0.04, LogitClip with its
bound), ODNL and Open-sampling with real open-set objects: textured crops of the train split's negative images
(``ghostq.detect.data.negative_crops``; no target class in them).

    python benchmarks/robust_nwpu_noise.py data.root=../shared/nwpu_vhr10 [--plan sym40,clean] [--deadline 09:10]

Rows run in the plan's order (``PLANS``) and are kept in ``--work`` (a finished row is skipped on a rerun; rows
not started by ``--deadline`` are listed as not run); each bootstrap interval is computed as soon as its two rows
exist and kept there too. Results: ``benchmarks/results/robust_nwpu_noise.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robust_nwpu import load_split, machine, noisy_train_subset  # noqa: E402  (the shared split check, next to this file)

from ghostq.core.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ghostq.core.runs import package_versions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OPEN_SET = "loss.open_set={method: %s, eta: %s, per_image: 3, source: CROPS}"
METHODS: dict[str, tuple[list[str], str | None]] = {  # overrides, baseline method (None: the default itself)
    "varifocal": (["model.head=sigmoid", "loss.cls=varifocal"], None),
    "bce": (["model.head=sigmoid", "loss.cls=bce"], "varifocal"),
    "ce": (["model.head=softmax", "loss.cls=ce"], "varifocal"),
    "bce+logitclip": (["model.head=sigmoid", "loss.cls=bce", "loss.logit_clip={p: inf, bound: 4.0}"], "bce"),
    "ce+logitclip": (["model.head=softmax", "loss.cls=ce", "loss.logit_clip={p: 2, bound: 5.0}"], "ce"),
    "ce+logitclip_b2": (["model.head=softmax", "loss.cls=ce", "loss.logit_clip={p: 2, bound: 2.0}"], "ce"),
    "ce+logitclip_b10": (["model.head=softmax", "loss.cls=ce", "loss.logit_clip={p: 2, bound: 10.0}"], "ce"),
    "logitnorm": (["model.head=softmax", "loss.cls=logitnorm", "loss.logitnorm_tau=0.04"], "ce"),
    "gce": (["model.head=softmax", "loss.cls=gce"], "ce"),
    "sce": (["model.head=softmax", "loss.cls=sce"], "ce"),
    "nce_rce": (["model.head=softmax", "loss.cls=nce_rce"], "ce"),
    "odnl": (["model.head=sigmoid", "loss.cls=bce", OPEN_SET % ("odnl", 0.5)], "bce"),
    "open_sampling": (["model.head=sigmoid", "loss.cls=bce", OPEN_SET % ("open_sampling", 1.0)], "bce"),
    "gce_q0.4": (["model.head=softmax", "loss.cls=gce", "loss.cls_params={q: 0.4}"], "ce"),
    "gce_q0.9": (["model.head=softmax", "loss.cls=gce", "loss.cls_params={q: 0.9}"], "ce"),
    "sce_a1": (["model.head=softmax", "loss.cls=sce", "loss.cls_params={alpha: 1.0}"], "ce"),
    "nce_rce_b0.1": (["model.head=softmax", "loss.cls=nce_rce", "loss.cls_params={beta: 0.1}"], "ce"),
    "logitnorm_t0.01": (["model.head=softmax", "loss.cls=logitnorm", "loss.logitnorm_tau=0.01"], "ce"),
    "odnl_eta1": (["model.head=sigmoid", "loss.cls=bce", OPEN_SET % ("odnl", 1.0)], "bce"),
    "open_sampling_eta0.5": (["model.head=sigmoid", "loss.cls=bce", OPEN_SET % ("open_sampling", 0.5)], "bce"),
    "varifocal+open_sampling_eta0.5": (["model.head=sigmoid", "loss.cls=varifocal",
                                        OPEN_SET % ("open_sampling", 0.5)], "varifocal"),
}
NOISES: dict[str, tuple[str, float]] = {  # name -> (kind, rate); "clean": no noise
    "clean": ("none", 0.0), "sym20": ("symmetric", 0.2), "sym40": ("symmetric", 0.4),
    "asym40": ("asymmetric", 0.4), "drop30": ("drop", 0.3), "jitter": ("jitter", 1.0),
}
SWEEP = ("ce+logitclip_b2", "ce+logitclip_b10", "gce_q0.4", "gce_q0.9", "sce_a1", "nce_rce_b0.1", "logitnorm_t0.01",
         "odnl_eta1", "open_sampling_eta0.5")  # one sweep of each method's key parameter (rows beside its default)
ALL_METHODS = ("varifocal", "ce", "gce", "sce", "nce_rce", "bce", "odnl", "logitnorm", "ce+logitclip", "open_sampling",
               "bce+logitclip")  # run order: the default and the softmax losses first (their baseline is ce)
PLANS: dict[str, list[tuple[str, str]]] = {  # (noise, method) in run order
    "sym40": [("sym40", m) for m in ALL_METHODS],
    "clean": [("clean", "varifocal"), ("clean", "ce")],
    "drop30": [("drop30", m) for m in ("varifocal", "ce", "gce", "sce")],
    "asym40": [("asym40", m) for m in ("varifocal", "ce", "ce+logitclip", "gce", "sce")],
    "params": [("sym40", m) for m in SWEEP],
    "sym20": [("sym20", m) for m in ("varifocal", "ce", "gce", "sce")],
    "jitter": [("jitter", m) for m in ("varifocal", "ce")],
    "transfer": [("sym40", "varifocal+open_sampling_eta0.5")],  # the one sweep win, on the default loss
}


def train_row(noise: str, method: str, args, work: Path) -> dict[str, Any]:
    """Train one (noise, method) row from scratch and score its final EMA weights on clean val; kept in work."""
    import torch

    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.ood_eval import coco_dets, predict_with_ood
    from ghostq.detect.trainer import Trainer

    name = f"{noise}__{method.replace('+', '_')}"
    path = work / f"{name}.json"
    if path.is_file():
        row = json.loads(path.read_text())
        kept = (row["epochs"], row["img_size"], row["train_images"])
        if kept != (args.epochs, args.img, args.images):
            wanted = (args.epochs, args.img, args.images)
            raise SystemExit(f"{path}: trained with (epochs, img, images) = {kept}, not {wanted}; "
                             "use another --work or delete the row")
        return row
    torch.set_num_threads(args.threads)
    crops = work / "negative_crops"
    overrides = [*args.overrides, f"run.root={work}", f"run.name={name}", f"data.img_size={args.img}",
                 f"train.epochs={args.epochs}", f"train.val_every={args.epochs}", f"train.threads={args.threads}",
                 "train.device=cpu", *(o.replace("CROPS", str(crops)) for o in METHODS[method][0])]
    cfg, splits, split = load_split(args.config, overrides, Path(args.run))
    if cfg.loss.open_set is not None and not crops.is_dir():
        from ghostq.detect.data.negative_crops import negative_crops

        negative_crops([r for r in splits.train if r.num_objects == 0], crops, seed=cfg.run.seed)
    kind, rate = NOISES[noise]
    _, train, record = noisy_train_subset(splits, args.images, kind, rate, cfg.run.seed)
    trainer = Trainer(cfg, replace(splits, train=train), DistInfo(), torch.device("cpu"), save=False)
    t0, losses = time.time(), []
    for epoch in range(args.epochs):
        stats = trainer.train_one_epoch(epoch)
        losses.append(round(float(stats["loss"]), 4))
        print(f"{name} epoch {epoch + 1}/{args.epochs}: loss {losses[-1]:.3f} ({time.time() - t0:.0f} s)",
              flush=True)
    model = trainer.ema.module if trainer.ema is not None else trainer.model
    dets = coco_dets(predict_with_ood(model, trainer.spec, splits.val))
    dets_path = work / f"{name}.dets.json"
    atomic_write_json(dets_path, dets)
    from ghostq.detect.evaluate import evaluate_coco

    m = evaluate_coco(splits.val_coco(), dets)
    row = {"noise": noise, "method": method, "overrides": METHODS[method][0], "noise_record": record,
           "train_images": len(train), "epochs": args.epochs, "img_size": args.img, "losses": losses,
           "mAP50": m["mAP50"], "mAP50_95": m["mAP50_95"], "per_class": {k: v["AP50"] for k, v in
                                                                       m["per_class"].items()},
           "dets": str(dets_path), "train_s": round(time.time() - t0, 1), "split_sha256": split["sha256"]}
    atomic_write_json(path, row)
    print(f"{name}: mAP50 {100 * m['mAP50']:.1f} mAP50:95 {100 * m['mAP50_95']:.1f} ({row['train_s']:.0f} s)",
          flush=True)
    return row


def pairs_for(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(label, baseline row, row): each method minus its baseline under the same noise, each noise minus clean."""
    pairs = []
    for key, row in rows.items():
        base = METHODS[row["method"]][1]
        if base is not None and f"{row['noise']}__{base.replace('+', '_')}" in rows:
            pairs.append((f"{row['noise']}: {row['method']} - {base}", f"{row['noise']}__{base.replace('+', '_')}",
                          key))
        if row["noise"] != "clean" and f"clean__{row['method'].replace('+', '_')}" in rows:
            pairs.append((f"{row['method']}: {row['noise']} - clean", f"clean__{row['method'].replace('+', '_')}",
                          key))
    return pairs


def differences(rows: dict[str, dict[str, Any]], gt: dict[str, Any], work: Path) -> dict[str, Any]:
    """The paired bootstrap of every pair in `pairs_for`, each kept in `work` (a rerun or a later row reuses it)."""
    from ghostq.detect.bootstrap import map_differences

    out = {}
    for label, a, b in pairs_for(rows):
        path = work / f"diff__{a}__{b}.json"
        dets = [Path(rows[k]["dets"]) for k in (a, b)]
        if not path.is_file() or any(d.stat().st_mtime > path.stat().st_mtime for d in dets):  # a row re-trained
            print(f"bootstrap {label}", flush=True)
            atomic_write_json(path, map_differences(gt, rows[a]["dets"], rows[b]["dets"]))
        out[label] = json.loads(path.read_text())
    return out


def markdown(result: dict[str, Any]) -> str:
    """Rows (mAP per noise x method) and the differences with their intervals."""
    lines = ["| noise | method | mAP50 | mAP50:95 | changed labels | train s |", "|---|---|---|---|---|---|"]
    for r in result["rows"].values():
        lines.append(f"| {r['noise']} | {r['method']} | {100 * r['mAP50']:.1f} | {100 * r['mAP50_95']:.1f} | "
                     f"{r['noise_record'].get('changed', 0)} | {r['train_s']:.0f} |")
    lines += ["", "| difference | mAP50 [95% CI] | mAP50:95 [95% CI] |", "|---|---|---|"]
    for label, d in result["differences"].items():
        cells = [f"{100 * d[m]['diff']:+.1f} [{100 * d[m]['ci'][0]:+.1f}, {100 * d[m]['ci'][1]:+.1f}]"
                 + (" *" if d[m]["significant"] else "") for m in ("mAP50", "mAP50_95")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if result["not_run"]:
        lines.append(f"\nNot run (deadline): {', '.join(f'{n}/{m}' for n, m in result['not_run'])}.")
    lines.append("\n`*`: the 95% paired bootstrap interval excludes 0.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "nwpu"), help="the reference run (its split.json)")
    parser.add_argument("--plan", default=",".join(PLANS), help=f"comma-separated plans of {', '.join(PLANS)}")
    parser.add_argument("--img", type=int, default=256)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deadline", default="", help="HH:MM UTC: rows not started by then are left out")
    parser.add_argument("--work", default=str(REPO / "runs" / "robust_nwpu_noise"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "robust_nwpu_noise.json"))
    args = parser.parse_args()
    unknown = set(args.plan.split(",")) - set(PLANS)
    if unknown:
        raise SystemExit(f"--plan: unknown {sorted(unknown)}; plans are {', '.join(PLANS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    todo = list(dict.fromkeys(p for plan in args.plan.split(",") for p in PLANS[plan]))
    start = time.time()
    cfg, splits, split = load_split(args.config, list(args.overrides), Path(args.run))
    gt = splits.val_coco()
    rows: dict[str, Any] = {}
    not_run = []
    for noise, method in todo:
        now = datetime.now(timezone.utc).strftime("%H:%M")
        done = (work / f"{noise}__{method.replace('+', '_')}.json").is_file()
        if args.deadline and now >= args.deadline and not done:
            not_run.append((noise, method))
            continue
        rows[f"{noise}__{method.replace('+', '_')}"] = train_row(noise, method, args, work)
        differences(rows, gt, work)  # this row's intervals now, so the end of a long run only gathers them
    result = {"setup": {"img_size": args.img, "train_images": args.images, "epochs": args.epochs,
                        "threads": args.threads, "val_images": len(splits.val), "draws": 1000, "bootstrap_seed": 0,
                        "split_sha256": split["sha256"], "noises": NOISES, "methods": METHODS},
              "rows": rows, "differences": differences(rows, gt, work), "not_run": not_run,
              "machine": machine(), "versions": package_versions(), "wall_s": round(time.time() - start, 1)}
    atomic_write_json(args.json, result)
    atomic_write_text(Path(args.json).with_suffix(".md"), markdown(result))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
