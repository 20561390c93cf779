"""Class-incremental learning on NWPU VHR-10 (issue 14): ACIL vs fine-tuning vs joint training, phase by phase.

Protocol (`incremental_protocol.py`): the reference split (`runs/nwpu/split.json`); a base model trained with the
joint run's settings (416 px, 15 epochs) on the 5 base classes' images; then the other 5 classes in 1 phase and in
5 phases, each phase seeing only its own classes' train images with only its classes labelled. Methods:
(a) ACIL on the frozen base model; (b) gradient fine-tuning of the final classification conv on each phase's
data (same frozen features, the training loss); (c) the joint model `runs/nwpu/fp/best.pt` (all data, all
classes: the upper bound); (d) ACIL fitted once on all train data with all labels. mAP50 (COCO, pycocotools) on the
val split after each phase, over old / new / all classes learned so far; bytes of old data each method keeps.

    python benchmarks/incremental_protocol.py --train-base data.root=../shared/nwpu_vhr10    # base model
    python benchmarks/incremental.py data.root=../shared/nwpu_vhr10                         # rows, JSON, md, png

Rows are kept in runs/acil/bench/rows/*.json (a finished row is skipped); --export adds the ONNX check of the
5-phase model (FP32 and INT8 through ONNX Runtime vs its torch model, paired bootstrap).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by a test
from incremental_parts.bank import (  # noqa: E402
    Bank,
    count_images,
    detections,
    extract,
    finetune,
    linear_head_scores,
    phase_batches,
    widen,
)
from incremental_parts.report import write_report  # noqa: E402
from incremental_protocol import BASE, NEW, REPO, full_splits  # noqa: E402

from ghostq.core.atomic import atomic_write_json  # noqa: E402
from ghostq.detect.acil import AnalyticClassifier  # noqa: E402
from ghostq.detect.acil_checkpoint import apply_phase, start_incremental  # noqa: E402
from ghostq.detect.acil_head import PhaseStats, RowSampling, level_buffers, linear_outputs, phase_stats  # noqa: E402
from ghostq.detect.checkpoint import checkpoint_spec, load_detector  # noqa: E402
from ghostq.detect.evaluate import evaluate_coco  # noqa: E402
from ghostq.stages.config import load_config  # noqa: E402

ALL = BASE + NEW
SCHEDULES = {"1phase": (NEW,), "5phase": tuple((c,) for c in NEW)}
FT = {"epochs": 10, "lr": 1e-3, "seed": 0}


def ids(names: tuple[str, ...]) -> list[int]:
    return [ALL.index(n) for n in names]


class Bench:
    """The bank, the val ground truth and the row store of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        cfg = load_config(args.config, args.overrides)
        splits = full_splits(cfg, Path(args.reference) if args.reference else None)
        if tuple(splits.classes) != ALL:
            raise SystemExit(f"the config's classes {splits.classes} are not the protocol's {ALL}")
        self.out = Path(args.out)
        self.rows = self.out / "bench" / "rows"
        self.rows.mkdir(parents=True, exist_ok=True)
        self.base_path = self.out / "base" / "fp" / "best.pt"
        self.joint_path = Path(args.joint)
        self.model, self.payload = load_detector(self.base_path)
        self.spec = checkpoint_spec(self.payload)
        self.splits, self.gt = splits, splits.val_coco()
        self.args = args
        self._bank: Bank | None = None
        self._stats: dict[tuple, PhaseStats] = {}
        self.meta = {"split_sha256": json.loads(Path(args.reference).read_text())["sha256"] if args.reference
                     else None, "train_images": len(splits.train), "val_images": len(splits.val)}

    @property
    def bank(self) -> Bank:
        if self._bank is None:
            start = time.time()
            used = [r for r in self.splits.train if len(r.labels)]
            train, out = extract(self.model, used, self.spec)
            val, _ = extract(self.model, self.splits.val, self.spec)
            self._bank = Bank(train, val, out.points, out.strides)
            print(f"bank: {len(train)} train + {len(val)} val images in {time.time() - start:.0f} s", flush=True)
        return self._bank

    def stats(self, classes: tuple[str, ...], dim: int, sampling: RowSampling) -> PhaseStats:
        """A phase's sums (class-agnostic targets: they do not depend on the classifier, so every method and
        schedule that sees this phase shares them)."""
        key = (classes, dim, sampling.keep, sampling.seed)
        if key not in self._stats:
            start = time.time()
            buffers = level_buffers([p.in_channels for p in self.model.head.cls_preds], dim, 0)
            self._stats[key] = phase_stats(phase_batches(self.bank.train, ids(classes), self.bank), len(classes),
                                           buffers, sampling)
            print(f"stats {len(classes)} classes, buffer {dim}, keep {sampling.keep}: {time.time() - start:.0f} s",
                  flush=True)
        return self._stats[key]

    def row(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        path = self.rows / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        if self.args.deadline and time.strftime("%H:%M", time.gmtime()) >= self.args.deadline:
            print(f"row {name}: not started (past --deadline {self.args.deadline} UTC)", flush=True)
            return None
        start = time.time()
        value = make()
        value["seconds"] = round(time.time() - start, 1)
        atomic_write_json(path, value)
        print(f"row {name}: {time.time() - start:.0f} s", flush=True)
        return value

    def score(self, scores_of: Callable, known: tuple[str, ...], new_so_far: tuple[str, ...],
              keep_dets: str | None = None) -> dict[str, Any]:
        dets = detections(self.bank, scores_of, ids(known), self.spec)
        if keep_dets:
            atomic_write_json(self.rows / f"dets_{keep_dets}.json", dets)
        per = {k: v["AP50"] for k, v in evaluate_coco(self.gt, dets)["per_class"].items()}
        return summarize(per, known, new_so_far)


def summarize(per: dict[str, float | None], known: tuple[str, ...], new: tuple[str, ...]) -> dict[str, Any]:
    """mAP50 over old (base), new-so-far and all known classes, from per-class AP50."""
    def mean(names: tuple[str, ...]) -> float | None:
        vals = [per[n] or 0.0 for n in names]
        return float(np.mean(vals)) if vals else None
    return {"known": list(known), "old": mean(BASE), "new": mean(new), "all": mean(known),
            "per_class": {n: per[n] for n in known}}


def acil_scores(classifiers, buffers, gain: float) -> Callable:
    def scores(im) -> torch.Tensor:
        y = linear_outputs(im.feats, classifiers, buffers)
        return torch.from_numpy(1.0 / (1.0 + np.exp(-gain * (y - 0.5))))
    return scores


def acil_start(b: Bench, buffer_dim: int, sampling: RowSampling, gamma: float = 0.1):
    model = copy.deepcopy(b.model)
    return start_incremental(model, b.payload, buffer_dim=buffer_dim, gamma=gamma, sampling=sampling)


def fit(b: Bench, model, state, classes: tuple[str, ...]) -> PhaseStats:
    stats = b.stats(classes, state.buffer_dim, state.sampling)
    apply_phase(model, state, stats, classes, "nwpu train")
    return stats


def ablation(b: Bench, name: str, buffer_dim: int, keep: float, weight: float | None) -> dict[str, Any]:
    """Base fit of one variant, scored on the base classes."""
    model, _, state = acil_start(b, buffer_dim, RowSampling(keep, weight))
    stats = fit(b, model, state, BASE)
    res = b.score(acil_scores(state.classifiers, state.buffers(), state.gain), BASE, ())
    return {"variant": name, "buffer_dim": buffer_dim, "keep": keep,
            "background_weight": state.sampling.background_weight,
            "rows": stats.positives + stats.background, "positives": stats.positives,
            "mAP50_base": res["old"], "per_class": res["per_class"]}


def joint_same_rows(state, stats_all: list[PhaseStats], columns_all: list[list[int]]) -> list[AnalyticClassifier]:
    """Ridge on the union of the phases' rows in one solve (their sums added), per level."""
    out = []
    total = len(state.classes)
    for level in range(len(state.classifiers)):
        gram = sum(s.gram(level, state.sampling.background_weight) for s in stats_all)
        cross = np.zeros((gram.shape[0], total))
        for s, cols in zip(stats_all, columns_all, strict=True):
            cross[:, cols] += s.cross[level]
        clf = AnalyticClassifier.empty(gram.shape[0], state.gamma)
        clf.absorb(gram, cross)
        out.append(clf)
    return out


def acil_run(b: Bench, schedule: str, dim: int, sampling: RowSampling) -> dict[str, Any]:
    """(a): base fit, then the schedule's phases; per phase the scores, and the exactness check."""
    model, spec, state = acil_start(b, dim, sampling)
    phases, stats_all, columns_all, learned = [], [], [], ()
    stats_all.append(fit(b, model, state, BASE))
    columns_all.append(ids(BASE))
    phases.append({"phase": 0, "classes": list(BASE), "images": count_images(b.bank.train, ids(BASE)),
                   **b.score(acil_scores(state.classifiers, state.buffers(), state.gain), BASE, ())})
    for k, classes in enumerate(SCHEDULES[schedule], start=1):
        learned = learned + classes
        stats_all.append(fit(b, model, state, classes))
        columns_all.append(ids(classes))
        last = k == len(SCHEDULES[schedule])
        phases.append({"phase": k, "classes": list(classes), "images": count_images(b.bank.train, ids(classes)),
                       **b.score(acil_scores(state.classifiers, state.buffers(), state.gain), BASE + learned,
                                 learned, keep_dets=f"acil_{schedule}" if last else None)})
    joint = joint_same_rows(state, stats_all, columns_all)
    rel = max(float(np.linalg.norm(c.W - j.W) / np.linalg.norm(j.W)) for c, j in zip(state.classifiers, joint,
                                                                                       strict=True))
    np.save(b.rows / f"W_acil_{schedule}.npy", np.concatenate([c.W for c in state.classifiers]))
    from ghostq.detect.acil_checkpoint import save_incremental, spec_for

    save_incremental(b.out / f"acil_{schedule}.pt", model, spec_for(spec, state), state)
    return {"method": "acil", "schedule": schedule, "phases": phases, "buffer_dim": dim,
            "sampling": vars(sampling), "W_rel_diff_vs_joint_ridge_same_rows": rel,
            "kept_bytes": state.kept_bytes(), "checkpoint": str(b.out / f"acil_{schedule}.pt")}


def finetune_run(b: Bench, schedule: str) -> dict[str, Any]:
    """(b): the base model's own head, widened and fine-tuned by gradient descent on each phase's data."""
    ws = [p.weight.detach()[:, :, 0, 0].clone() for p in b.model.head.cls_preds]
    bs = [p.bias.detach().clone() for p in b.model.head.cls_preds]
    phases = [{"phase": 0, "classes": list(BASE), "images": count_images(b.bank.train, ids(BASE)),
               **b.score(linear_head_scores(ws, bs), BASE, ())}]
    learned = ()
    for k, classes in enumerate(SCHEDULES[schedule], start=1):
        learned = learned + classes
        ws, bs = widen(ws, bs, len(classes), seed=k)
        batches = list(phase_batches(b.bank.train, ids(classes), b.bank, global_ids=True))
        ws, bs = finetune(ws, bs, batches, len(BASE + learned), FT["epochs"], FT["lr"], FT["seed"])
        last = k == len(SCHEDULES[schedule])
        phases.append({"phase": k, "classes": list(classes), "images": count_images(b.bank.train, ids(classes)),
                       **b.score(linear_head_scores(ws, bs), BASE + learned, learned,
                                 keep_dets=f"finetune_{schedule}" if last else None)})
    return {"method": "finetune", "schedule": schedule, "phases": phases, "settings": FT, "kept_bytes": 0}


def joint_gradient(b: Bench) -> dict[str, Any]:
    """(c): the joint model's per-class AP50 (all data, all classes, trained end to end)."""
    from ghostq.detect.inference import make_eval_loader, predict_loader

    model, payload = load_detector(b.joint_path)
    spec = checkpoint_spec(payload)
    loader = make_eval_loader(b.splits.val, spec.img_size, spec.in_channels, workers=0)
    dets = predict_loader(model, loader, spec, torch.device("cpu"))
    atomic_write_json(b.rows / "dets_joint.json", dets)
    per = {k: v["AP50"] for k, v in evaluate_coco(b.gt, dets)["per_class"].items()}
    return {"method": "joint", "per_class": per, "kept_bytes": image_bytes(b)}


def acil_joint(b: Bench, dim: int, sampling: RowSampling) -> dict[str, Any]:
    """(d): ACIL fitted once on all train images with all labels (the base model's frozen features)."""
    model, _, state = acil_start(b, dim, sampling)
    fit(b, model, state, ALL)
    f = acil_scores(state.classifiers, state.buffers(), state.gain)
    dets = detections(b.bank, f, ids(ALL), b.spec)
    atomic_write_json(b.rows / "dets_acil_joint.json", dets)
    per = {k: v["AP50"] for k, v in evaluate_coco(b.gt, dets)["per_class"].items()}
    return {"method": "acil_joint", "per_class": per, "kept_bytes": image_bytes(b)}


def image_bytes(b: Bench) -> int:
    """What joint training keeps: every train image file and its annotation."""
    return int(sum(Path(r.path).stat().st_size + (Path(r.ann_path).stat().st_size if r.ann_path else 0)
                   for r in b.splits.train))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--out", default=str(REPO / "runs" / "acil"))
    parser.add_argument("--joint", default=str(REPO / "runs" / "nwpu" / "fp" / "best.pt"))
    parser.add_argument("--reference", default=str(REPO / "runs" / "nwpu" / "split.json"))
    parser.add_argument("--buffer-dim", type=int, default=1024)
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--background-weight", type=float, default=None, help="default 1/keep (unbiased)")
    parser.add_argument("--ablation", action="store_true", help="also the background / buffer / score variants")
    parser.add_argument("--more", action="store_true", help="with --ablation: also the variants needing own rows")
    parser.add_argument("--export", action="store_true", help="also the ONNX FP32 / INT8 check")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deadline", default="", help="HH:MM UTC: rows not started by then are left out")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "incremental.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b = Bench(args)
    sampling = RowSampling(args.keep, args.background_weight)
    rows: dict[str, Any] = {}
    for schedule in SCHEDULES:
        rows[f"acil_{schedule}"] = b.row(f"acil_{schedule}", lambda s=schedule: acil_run(b, s, args.buffer_dim,
                                                                                          sampling))
        rows[f"finetune_{schedule}"] = b.row(f"finetune_{schedule}", lambda s=schedule: finetune_run(b, s))
    rows["joint"] = b.row("joint", lambda: joint_gradient(b))
    rows["acil_joint"] = b.row("acil_joint", lambda: acil_joint(b, args.buffer_dim, sampling))
    rows = {k: v for k, v in rows.items() if v is not None}
    if all(k in rows for k in ("acil_1phase", "acil_5phase", "finetune_1phase", "finetune_5phase", "joint",
                               "acil_joint")):
        write_report(b, rows, Path(args.json))  # the main result first; export and ablation rows follow
    if args.export:
        from incremental_parts.export import export_check

        rows["export"] = b.row("export", lambda: export_check(b, b.out / "acil_5phase.pt", args.threads))
    if args.ablation:  # background weights reuse the default rows; --more: keep 0.02, buffer 512 (own rows)
        k, w, d = args.keep, sampling.background_weight, args.buffer_dim
        for name, dim, keep, weight in (
            ("default", d, k, w), ("background_weight_0.3", d, k, 0.3), ("background_weight_1", d, k, 1.0),
            ("background_weight_3", d, k, 3.0), *(("keep_0.02", d, 0.02, None), ("buffer_512", 512, k, w)) * args.more,
        ):
            rows[f"ablation_{name}"] = b.row(f"ablation_{name}", lambda n=name, dm=dim, kp=keep, wt=weight:
                                             ablation(b, n, dm, kp, wt))
    rows = {k: v for k, v in rows.items() if v is not None}
    if all(k in rows for k in ("acil_1phase", "acil_5phase", "finetune_1phase", "finetune_5phase", "joint",
                               "acil_joint")):
        write_report(b, rows, Path(args.json))


if __name__ == "__main__":
    main()
