"""Robust losses on real data (NWPU VHR-10, the recorded split of runs/nwpu): OOD rejection on the 120 real
negative images (the memorisation curve: ``robust_nwpu_memo.py``).

Per detection, do the OOD scores (MSP, energy; and 1 - confidence for reference) separate detections on negative
images (no target class in them) from true positives on val images? Rows: the reference model
(``runs/nwpu/fp/best.pt``) and models fine-tuned from it for ``--ft-epochs`` epochs at the same input size with the
default loss (the control), LogitNorm, LogitClip and ODNL (its open-set objects: textured crops of the 91 train-
split negative images, ``ghostq.detect.data.negative_crops``; only the 29 val negatives are unseen by it). At each
model's operating threshold (best F1 on val): AUROC and FPR at 95% TPR (ID = val true positives, OOD = detections
on negative images: the 29 val negatives, unseen in training, and all 120), false positives per negative image, val
mAP; paired bootstrap intervals over images (1,000 draws, seed 0) for each difference against its baseline.

    python benchmarks/robust_nwpu.py data.root=../shared/nwpu_vhr10 [--ft-epochs 3] [--rows default,...]

Work files (fine-tuned checkpoints, detections) go to ``--work``/ood (runs/robust_nwpu_E); a finished row's
files are kept and reused on a rerun. Results: ``benchmarks/results/robust_nwpu_ood.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.runs import package_versions
from ghostq.detect.ood_metrics import auroc, f1_threshold, fpr_at_tpr, true_positive_flags

REPO = Path(__file__).resolve().parents[1]
SCORES = ("msp", "energy", "conf")
FIXED = (0.25, 0.05)  # further thresholds: the deployed graph's default, and a low one (more negatives scored)
LOW = "0.05"  # conf: 1 - detection score, the detector's own confidence as OOD score
FT_ROWS: dict[str, list[str]] = {  # fine-tuned from the reference model (sigmoid head, as the default)
    "ft_default": [],
    "ft_logitnorm": ["loss.cls=logitnorm", "loss.logitnorm_tau=0.04"],
    "ft_logitclip": ["loss.logit_clip={p: inf, bound: 4.0}"],
    "ft_odnl": ["loss.open_set={method: odnl, eta: 0.5, per_image: 3, source: CROPS}"],  # crops of train negatives
}
BASELINE = {"ft_default": "default", "ft_logitnorm": "ft_default", "ft_logitclip": "ft_default",
            "ft_odnl": "ft_default"}


def load_split(config: str, overrides: list[str], run: Path):
    """The config, its splits, and the split record, checked against ``run/split.json``."""
    from ghostq.detect.data.prepare import prepare_data, split_record
    from ghostq.stages.config import load_config

    cfg = load_config(config, overrides)
    splits = prepare_data(cfg)
    split = split_record(splits, cfg.run.seed, cfg.data.val_frac)
    recorded = json.loads((run / "split.json").read_text())
    if recorded["sha256"] != split["sha256"]:
        raise SystemExit(f"{run}/split.json differs from the split of {config}: not the same run")
    return cfg, splits, split


def noisy_train_subset(splits, images: int, kind: str, rate: float, seed: int):
    """A seeded subset of the train records with objects, and the same records with label noise (kind "none":
    unchanged), and the noise summary; shared by the noise benchmarks so their rows train on the same images."""
    from ghostq.core.records import Dataset
    from ghostq.detect.data.noise import add_record_noise

    pool = [r for r in splits.train if r.num_objects]
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), size=min(images, len(pool)), replace=False))
    clean = [pool[int(i)] for i in pick]
    if kind == "none":
        return clean, clean, {"kind": "none", "changed": 0}
    noisy, record = add_record_noise(Dataset(splits.format, splits.root, splits.classes, clean), kind, rate, seed)
    return clean, noisy, record


def machine() -> dict[str, Any]:
    """Where it ran."""
    import os

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


def fine_tune(name: str, args, work: Path) -> Path:
    """``work/<name>.pt``: the reference model trained ``--ft-epochs`` more epochs with the row's loss."""
    import torch

    from ghostq.detect.checkpoint import load_detector, save_checkpoint
    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.trainer import Trainer

    path = work / f"{name}.pt"
    if path.is_file():
        return path
    e = args.ft_epochs
    overrides = [*args.overrides, f"run.root={work}", f"run.name={name}", f"train.epochs={e}",
                 f"train.val_every={e}", f"train.lr={args.ft_lr}", "train.warmup_epochs=0.25",
                 f"train.threads={args.threads}", "train.device=cpu", *FT_ROWS[name]]
    crops = work / "negative_crops"
    overrides = [o.replace("CROPS", str(crops)) for o in overrides]
    cfg, splits, _ = load_split(args.config, overrides, Path(args.run))
    if cfg.loss.open_set is not None and not crops.is_dir():
        from ghostq.detect.data.negative_crops import negative_crops

        negative_crops([r for r in splits.train if r.num_objects == 0], crops, seed=cfg.run.seed)
    model, _ = load_detector(Path(args.run) / "fp" / "best.pt")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    trainer = Trainer(cfg, splits, DistInfo(), torch.device("cpu"), model=model.train(), save=False)
    summary = trainer.fit(None, show_progress=True)
    best = trainer.best_model()
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"), "classes": list(splits.classes),
                           "spec": trainer.spec.to_dict(), "model": best.state_dict(), "epoch": e - 1,
                           "metrics": {**summary["history"][-1], "seconds": round(time.time() - t0, 1)}})
    return path


def row_detections(name: str, ckpt: Path, splits, work: Path, threads: int) -> dict[str, Any]:
    """Detections with OOD scores on val and on the train negatives (kept in ``work/dets_<name>.json``)."""
    import torch

    from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint, load_detector
    from ghostq.detect.ood_eval import ImageOodDetections, predict_with_ood

    path = work / f"dets_{name}.json"
    if path.is_file():
        d = json.loads(path.read_text())
    else:
        torch.set_num_threads(threads)
        model, _ = load_detector(ckpt)
        spec = checkpoint_spec(load_checkpoint(ckpt))
        train_neg = [r for r in splits.train if r.num_objects == 0]
        t0 = time.time()
        d = {"source": str(ckpt), "val": [x.to_json() for x in predict_with_ood(model, spec, splits.val)],
             "train_neg": [x.to_json() for x in predict_with_ood(model, spec, train_neg)]}
        d["seconds"] = round(time.time() - t0, 1)
        atomic_write_json(path, d)
    return {"source": d["source"], "val": [ImageOodDetections.from_json(x) for x in d["val"]],
            "train_neg": [ImageOodDetections.from_json(x) for x in d["train_neg"]]}


def ood_row(dets: dict[str, Any], splits, fixed: float | None = None) -> tuple:
    """Operating threshold (best F1 on val, or ``fixed``), per-image ID / OOD score lists, and the row's AUROC /
    FPR95 / FP per image."""
    val, recs = dets["val"], splits.val
    tp = [true_positive_flags(d.boxes, d.scores, d.labels, r.boxes, r.labels) for d, r in zip(val, recs,
                                                                                             strict=True)]
    num_gt = sum(r.num_objects for r in recs)
    thr, f1 = f1_threshold(np.concatenate([d.scores for d in val]), np.concatenate(tp), num_gt)
    if fixed is not None:
        thr, f1 = fixed, None

    def values(d, keep):
        return {"msp": d.msp[keep], "energy": d.energy[keep], "conf": 1.0 - d.scores[keep]}

    id_imgs = [values(d, (d.scores >= thr) & t) for d, r, t in zip(val, recs, tp, strict=True) if r.num_objects]
    neg_val = [values(d, d.scores >= thr) for d, r in zip(val, recs, strict=True) if r.num_objects == 0]
    neg_all = neg_val + [values(d, d.scores >= thr) for d in dets["train_neg"]]
    row: dict[str, Any] = {"threshold": thr, "f1": f1, "id_detections": int(sum(x["msp"].size for x in id_imgs))}
    for label, negs in (("val_negatives", neg_val), ("all_negatives", neg_all)):
        n = int(sum(x["msp"].size for x in negs))
        r = {"images": len(negs), "detections": n, "fp_per_image": n / len(negs)}
        for s in SCORES:
            a = np.concatenate([x[s] for x in id_imgs])
            b = np.concatenate([x[s] for x in negs]) if n else np.zeros(0)
            ok = n and a.size
            r[s] = {"auroc": auroc(a, b), "fpr95": fpr_at_tpr(a, b)} if ok else {"auroc": None, "fpr95": None}
        row[label] = r
    return row, id_imgs, neg_val, neg_all


def paired_ood_bootstrap(a, b, draws: int, seed: int = 0,
                         labels: tuple[str, ...] = ("val_negatives", "all_negatives")) -> dict[str, Any]:
    """B - A of AUROC / FPR95 / FP per image, resampling ID images and negative images (paired), 95% CI."""
    out: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    for label in labels:
        ids_a, ids_b, neg_a, neg_b = a[0], b[0], a[1][label], b[1][label]
        picks = [(rng.integers(len(ids_a), size=len(ids_a)), rng.integers(len(neg_a), size=len(neg_a)))
                 for _ in range(draws)]
        res: dict[str, Any] = {}
        for s in SCORES:
            vals: dict[str, list[float]] = {"auroc": [], "fpr95": []}
            for pi, pn in picks:
                ida, idb = np.concatenate([ids_a[i][s] for i in pi]), np.concatenate([ids_b[i][s] for i in pi])
                nga, ngb = np.concatenate([neg_a[i][s] for i in pn]), np.concatenate([neg_b[i][s] for i in pn])
                if min(ida.size, idb.size, nga.size, ngb.size) == 0:  # a draw without negative detections
                    continue
                vals["auroc"].append(auroc(idb, ngb) - auroc(ida, nga))
                vals["fpr95"].append(fpr_at_tpr(idb, ngb) - fpr_at_tpr(ida, nga))
            for metric, v in vals.items():
                ci = [float(x) for x in np.percentile(v, [2.5, 97.5])] if v else None
                res[f"{s}_{metric}"] = {"ci": ci, "draws_used": len(v)}
        fps = [sum(neg_b[i]["msp"].size for i in pn) / len(pn) - sum(neg_a[i]["msp"].size for i in pn) / len(pn)
               for _, pn in picks]
        res["fp_per_image"] = {"ci": [float(np.percentile(fps, 2.5)), float(np.percentile(fps, 97.5))]}
        out[label] = res
    return out


def run_ood(args) -> None:
    from ghostq.detect.bootstrap import map_difference
    from ghostq.detect.evaluate import evaluate_coco
    from ghostq.detect.ood_eval import coco_dets

    run, work = Path(args.run), Path(args.work) / "ood"
    work.mkdir(parents=True, exist_ok=True)
    cfg, splits, split = load_split(args.config, args.overrides, run)
    gt = splits.val_coco()
    rows, keep, low, coco = {}, {}, {}, {}
    for name in args.rows.split(","):
        t0 = time.time()
        ckpt = run / "fp" / "best.pt" if name == "default" else fine_tune(name, args, work)
        dets = row_detections(name, ckpt, splits, work, args.threads)
        row, id_imgs, neg_val, neg_all = ood_row(dets, splits)
        coco[name] = coco_dets(dets["val"])
        m = evaluate_coco(gt, coco[name])
        rows[name] = {"checkpoint": str(ckpt), "mAP50": m["mAP50"], "mAP50_95": m["mAP50_95"], **row,
                      "seconds": round(time.time() - t0, 1)}
        keep[name] = (id_imgs, {"val_negatives": neg_val, "all_negatives": neg_all})
        rows[name]["fixed"] = {}
        for t in FIXED:
            r_t, i_t, v_t, a_t = ood_row(dets, splits, t)
            rows[name]["fixed"][str(t)] = r_t
            if str(t) == LOW:
                low[name] = (i_t, {"val_negatives": v_t, "all_negatives": a_t})
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "checkpoint"})[:400], flush=True)
    diffs = {}
    for name, base in BASELINE.items():
        if name in rows and base in rows:
            diffs[f"{name} - {base}"] = {
                "mAP50": map_difference(gt, coco[base], coco[name], "mAP50", draws=args.draws),
                **paired_ood_bootstrap(keep[base], keep[name], args.draws),
                f"at_{LOW}": paired_ood_bootstrap(low[base], low[name], args.draws, labels=("all_negatives",)),
            }
    result = {"rows": rows, "differences": diffs, "split": {k: split[k] for k in ("sha256", "seed", "val_frac")},
              "setup": {"ft_epochs": args.ft_epochs, "ft_lr": args.ft_lr, "img_size": cfg.data.img_size,
                        "threads": args.threads, "draws": args.draws, "bootstrap_seed": 0,
                        "ft_rows": FT_ROWS},
              "machine": machine(), "versions": package_versions(), "wall_s": round(time.time() - T0, 1)}
    out = Path(args.json or REPO / "benchmarks" / "results" / "robust_nwpu_ood.json")
    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), ood_markdown(result))
    print(ood_markdown(result))


def ood_markdown(result: dict[str, Any]) -> str:
    """The README tables of the OOD part."""
    st = result["setup"]
    lines = [f"NWPU VHR-10, split sha256 {result['split']['sha256'][:12]}..., {st['img_size']} px; ft_* rows: "
             f"{st['ft_epochs']} more epochs from runs/nwpu/fp/best.pt at lr {st['ft_lr']}; paired bootstrap "
             f"{st['draws']} draws, seed {st['bootstrap_seed']}; {st['threads']} threads.", "",
"| model | mAP50 | threshold (best F1) | TP on val | FP / neg. image (val 29; all 120) | "
             "AUROC MSP | AUROC energy | AUROC 1-conf | FPR95 MSP | FPR95 energy | FPR95 1-conf |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        v, a = r["val_negatives"], r["all_negatives"]

        def pair(metric: str, s: str, v=v, a=a) -> str:
            return f"{_pct(v[s][metric])} / {_pct(a[s][metric])}"

        lines.append(f"| {name} | {100 * r['mAP50']:.1f} | {r['threshold']:.3f} | {r['id_detections']} | "
                     f"{v['fp_per_image']:.2f}; {a['fp_per_image']:.2f} | "
                     + " | ".join(pair(m, s) for m in ("auroc", "fpr95") for s in SCORES) + " |")
    lines += ["", "AUROC / FPR95 cells: val negatives (29, unseen in training) / all 120 negatives.", "",
              "| difference | mAP50 | AUROC MSP (all 120) | AUROC energy (all 120) | FPR95 MSP (all 120) | "
              "FP / neg. image (all 120) |", "|---|---|---|---|---|---|"]
    for name, d in result["differences"].items():
        a, b = name.split(" - ")
        ra, rb = result["rows"][a]["all_negatives"], result["rows"][b]["all_negatives"]

        def cell(key: str, value: float, d=d, scale: float = 100.0) -> str:
            ci, k = d["all_negatives"][key]["ci"], 1 if scale > 1 else 2
            return f"{scale * value:+.{k}f} [{scale * ci[0]:+.{k}f}, {scale * ci[1]:+.{k}f}]" if ci else "n/a"

        def delta(s: str, m: str, ra=ra, rb=rb) -> float:
            return (ra[s][m] or 0.0) - (rb[s][m] or 0.0)

        mp = d["mAP50"]
        lines.append(f"| {name} | {100 * mp['diff']:+.1f} [{100 * mp['ci'][0]:+.1f}, {100 * mp['ci'][1]:+.1f}] | "
                     f"{cell('msp_auroc', delta('msp', 'auroc'))} | {cell('energy_auroc', delta('energy', 'auroc'))} | "
                     f"{cell('msp_fpr95', delta('msp', 'fpr95'))} | "
                     f"{cell('fp_per_image', ra['fp_per_image'] - rb['fp_per_image'], scale=1.0)} |")
    for t in FIXED:
        lines += ["", f"At score threshold {t} (all 120 negatives):", "",
                  "| model | TP on val | FP / neg. image | AUROC MSP | AUROC energy | AUROC 1-conf | FPR95 MSP | "
                  "FPR95 energy | FPR95 1-conf |", "|---|---|---|---|---|---|---|---|---|"]
        for name, r in result["rows"].items():
            a = r["fixed"][str(t)]["all_negatives"]
            lines.append(f"| {name} | {r['fixed'][str(t)]['id_detections']} | {a['fp_per_image']:.2f} | "
                         + " | ".join(_pct(a[s][m]) for m in ("auroc", "fpr95") for s in SCORES) + " |")
    lines += ["", f"Differences at score threshold {LOW} (all 120 negatives, paired bootstrap 95%):", "",
              "| difference | AUROC MSP | AUROC energy | FPR95 MSP | FPR95 energy | FP / neg. image |",
              "|---|---|---|---|---|---|"]
    for name, d in result["differences"].items():
        a, b = name.split(" - ")
        ra = result["rows"][a]["fixed"][LOW]["all_negatives"]
        rb = result["rows"][b]["fixed"][LOW]["all_negatives"]
        boot = d[f"at_{LOW}"]["all_negatives"]

        def cell2(key: str, value: float, boot=boot, scale: float = 100.0) -> str:
            ci, k = boot[key]["ci"], 1 if scale > 1 else 2
            return f"{scale * value:+.{k}f} [{scale * ci[0]:+.{k}f}, {scale * ci[1]:+.{k}f}]" if ci else "n/a"

        lines.append(f"| {name} | " + " | ".join(
            cell2(f"{s}_{m}", (ra[s][m] or 0.0) - (rb[s][m] or 0.0)) for m, s in
            (("auroc", "msp"), ("auroc", "energy"), ("fpr95", "msp"), ("fpr95", "energy")))
            + f" | {cell2('fp_per_image', ra['fp_per_image'] - rb['fp_per_image'], scale=1.0)} |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


T0 = time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "nwpu"), help="the reference run (split, best.pt)")
    parser.add_argument("--work", default=str(REPO / "runs" / "robust_nwpu_E"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--rows", default="default,ft_default,ft_logitnorm,ft_logitclip")
    parser.add_argument("--ft-epochs", type=int, default=3)
    parser.add_argument("--ft-lr", type=float, default=0.0005)
    run_ood(parser.parse_args())


if __name__ == "__main__":
    main()
