"""NWPU VHR-10 compression rows: every method of `benchmarks/compress.py` applied to the NWPU run's FP detector,
scored on the recorded val split with AP by object size, model size and paired bootstrap intervals.

Rows (in this order, so a CPU budget runs the key ones first): PTQ W8A8, QAT W4A8 (uniform), QAT W8A8, GHOST rule,
GHOST at the W4 size with the gumbel and off switches. Each is made by the compress library exactly as the run's
own GHOST row (`compress_detector` with the config's `compress` section: epochs, lr, calibration), from
`<run>/fp/best.pt`, into `<out>/<row>/` (best.pt, bits.json, metrics.json, identity.json, val_dets.json, row.json).
The run's FP32 (`fp/best.pt`) and GHOST at the W4 size with the gt switch (`ghost/best.pt`) are scored the same
way as reference rows (and checked against `benchmarks/results/nwpu.json`). A finished row is skipped on a rerun;
a row made from another checkpoint, split or setting stops the run (`--force` redoes it).

Differences (1,000 paired draws, seed 0): every row - FP32, and GHOST at the W4 size - QAT W4A8.

    python benchmarks/nwpu_compress.py data.root=../shared/nwpu_vhr10 --budget-min 25
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_path, atomic_write_json, atomic_write_text
from ghostq.core.config import Config
from ghostq.core.runs import package_versions, sha256_file
from ghostq.detect.bootstrap import SEED, coco_map, coco_matches, paired_bootstrap
from ghostq.detect.data.prepare import DataSplits, prepare_data, split_record
from ghostq.detect.evaluate import evaluate_coco, load_ground_truth
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from nwpu import torch_dets  # noqa: E402  (the same scoring as benchmarks/nwpu.py)

from compress import rows_to_run  # noqa: E402  (the method definitions of benchmarks/compress.py)

ORDER = ("ptq_w8a8", "qat_w4a8", "qat_w8a8", "ghost_rule", "ghost_w4budget_gumbel", "ghost_w4budget_off")
REFERENCE = {"fp32": "fp/best.pt", "ghost_w4budget": "ghost/best.pt"}  # rows of the NWPU run itself
NWPU_JSON_ROW = {"fp32": "fp32_torch", "ghost_w4budget": "ghost_torch"}
SUMMARY = ("mAP50", "mAP50_95", "by_size", "size_mb", "avg_weight_bits", "train_s", "compress_s", "identity")
W4_PAIRS = (("qat_w4a8", "ghost_w4budget"), ("qat_w4a8", "ghost_w4budget_gumbel"),
            ("qat_w4a8", "ghost_w4budget_off"))


def compress_rows() -> list[tuple[str, dict[str, Any]]]:
    """(row, CompressConfig fields) of the rows this benchmark makes, in ORDER (ghost_w4budget is the run's own)."""
    fields = dict(rows_to_run(quick=True))
    return [(name, fields[name]) for name in ORDER]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def row_config(cfg: Config, fields: dict[str, Any]) -> Config:
    """The run's config with `fields` laid over its `compress` section (same epochs, lr, calibration as GHOST)."""
    from ghostq.core.compress_config import CompressConfig

    ccfg = CompressConfig(**_merge(cfg.compress.model_dump(mode="json"), fields))
    return cfg.model_copy(update={"compress": ccfg})


def expected_seconds(name: str, walls: dict[str, float], prior_s: float = 0.0) -> float:
    """Guess of a row's wall-clock: the longest QAT / GHOST row so far (x1.5 for the first GHOST row, as
    distillation adds a teacher forward); `prior_s` before any trained row, 0 for PTQ."""
    trained = {k: v for k, v in walls.items() if not k.startswith("ptq")}
    if name.startswith("ptq"):
        return 0.0
    if not trained:
        return prior_s
    factor = 1.5 if name.startswith("ghost") and not any(k.startswith("ghost") for k in trained) else 1.0
    return factor * max(trained.values())


def _check_identity(path: Path, identity: dict[str, Any], force: bool) -> bool:
    """True when `path` holds this identity; False when absent (or --force); stops when it holds another."""
    if not path.is_file() or force:
        return False
    old = json.loads(path.read_text())
    old = old.get("identity", old)  # row.json nests it; identity.json is it
    changed = sorted(k for k in identity if old.get(k) != identity[k])
    if changed:
        raise SystemExit(f"{path}: this row was made with another {', '.join(changed)}; --force redoes it "
                         f"(or choose another --out)")
    return True


def score_row(name: str, checkpoint: Path, splits: DataSplits, row_dir: Path, identity: dict[str, Any],
              shape: tuple[int, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """Detections of `checkpoint` on val (val_dets.json), COCO scores with AP by size, size / BOPs (row.json)."""
    from ghostq.cli.eval_commands import load_model
    from ghostq.compress.cost import model_cost

    t0 = time.time()
    dets = torch_dets(checkpoint, splits.val)
    atomic_write_json(row_dir / "val_dets.json", dets)
    cost = model_cost(load_model(checkpoint)[0].cpu(), shape)
    row = {"row": name, "source": str(checkpoint), "identity": identity, "dets": str(row_dir / "val_dets.json"),
           "size_mb": cost.size_mb, "bops_g": cost.bops_g, "avg_weight_bits": cost.avg_weight_bits,
           "score_s": round(time.time() - t0, 1), **extra, **evaluate_coco(splits.val_coco(), dets)}
    atomic_write_json(row_dir / "row.json", row)
    return row


def make_row(cfg_row: Config, fp: Any, spec: Any, splits: DataSplits, source: Path, row_dir: Path,
             max_steps: int | None) -> dict[str, Any]:
    """Compress the FP detector as `cfg_row.compress` says and write `<row_dir>/best.pt` etc.; the train facts."""
    import torch

    from ghostq.compress.pipeline import compress_detector, write_compressed
    from ghostq.detect.distributed import DistInfo
    from ghostq.export.scale_groups_trace import trace_scale_groups

    t0 = time.time()
    torch.manual_seed(cfg_row.run.seed)
    done = compress_detector(cfg_row, fp, spec, splits, DistInfo(), torch.device("cpu"), trace_scale_groups,
                             source=source, max_steps=max_steps, show_progress=True)
    write_compressed(row_dir, cfg_row, spec, done)
    m = done.metrics
    return {"method": cfg_row.compress.method, "compress_s": round(time.time() - t0, 1),
            "train_s": round(m.get("train_seconds") or 0.0, 1), "step_time_ratio": m.get("step_time_ratio"),
            "best_epoch": m.get("best_epoch"), "fp_in_compress": m.get("fp")}


def run_rows(cfg: Config, run: Path, out: Path, names: list[str] | None = None, *, max_steps: int | None = None,
             budget_s: float | None = None, prior_s: float = 0.0, force: bool = False,
             on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Score the reference rows and make + score each compression row (skipping finished ones, stopping before a
    row expected to overrun `budget_s`; `on_row(rows)` after each new one); {"rows", "not_run", "split",
    "source_sha256", "wall_s"}."""
    from ghostq.detect.checkpoint import checkpoint_spec, load_detector

    t_start = time.time()
    splits = prepare_data(cfg)
    split = split_record(splits, cfg.run.seed, cfg.data.val_frac)
    recorded = json.loads((run / "split.json").read_text())
    if recorded.get("sha256") != split["sha256"]:
        raise SystemExit(f"{run / 'split.json'}: differs from the split of this config (not the same run)")
    shape = (1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size)
    source = run / REFERENCE["fp32"]
    if not source.is_file():
        raise SystemExit(f"{source}: no FP checkpoint (train the run first: ghostq run configs/nwpu.yaml)")
    source_sha = sha256_file(source)
    rows: dict[str, Any] = {}
    for name, rel in REFERENCE.items():
        path = run / rel
        if not path.is_file():
            print(f"{name}: {path} absent, row left out", flush=True)
            continue
        identity = {"source_sha256": sha256_file(path), "split_sha256": split["sha256"]}
        row_dir = out / name
        if _check_identity(row_dir / "row.json", identity, force) and (row_dir / "val_dets.json").is_file():
            rows[name] = json.loads((row_dir / "row.json").read_text())
            continue
        metrics = path.parent / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.is_file() else {}
        extra = {"method": "fp32" if name == "fp32" else "ghost", "train_s": round(m.get("train_seconds") or 0, 1),
                 "step_time_ratio": m.get("step_time_ratio") if name != "fp32" else 1.0}
        rows[name] = score_row(name, path, splits, row_dir, identity, shape, extra)
        print(f"{name}: mAP50 {rows[name]['mAP50']:.4f} size {rows[name]['size_mb']:.3f} MB", flush=True)
    fp = spec = None
    walls: dict[str, float] = {}
    not_run: dict[str, str] = {}
    for name, fields in compress_rows():
        if names is not None and name not in names:
            continue
        cfg_row = row_config(cfg, fields)
        identity = {"source_sha256": source_sha, "split_sha256": split["sha256"], "max_steps": max_steps,
                    "compress": cfg_row.compress.model_dump(mode="json")}
        row_dir = out / name
        if _check_identity(row_dir / "row.json", identity, force) and (row_dir / "val_dets.json").is_file():
            rows[name] = json.loads((row_dir / "row.json").read_text())
            print(f"{name}: finished before, kept", flush=True)
            continue
        made = _check_identity(row_dir / "identity.json", identity, force) and (row_dir / "best.pt").is_file()
        elapsed, guess = time.time() - t_start, expected_seconds(name, walls, prior_s)
        if not made and budget_s is not None and elapsed + guess > budget_s:
            not_run[name] = f"budget: {elapsed / 60:.1f} min used, about {guess / 60:.1f} more needed"
            print(f"{name}: not run ({not_run[name]})", flush=True)
            continue
        t0 = time.time()
        if made:
            facts = json.loads((row_dir / "identity.json").read_text())["facts"]
        else:
            if fp is None:
                fp, payload = load_detector(source)
                spec = checkpoint_spec(payload)
            facts = make_row(cfg_row, fp, spec, splits, source, row_dir, max_steps)
            atomic_write_json(row_dir / "identity.json", {**identity, "facts": facts})
            walls[name] = time.time() - t0
        rows[name] = score_row(name, row_dir / "best.pt", splits, row_dir, identity, shape, facts)
        print(f"{name}: mAP50 {rows[name]['mAP50']:.4f} size {rows[name]['size_mb']:.3f} MB "
              f"({time.time() - t0:.0f} s)", flush=True)
        if on_row is not None:
            on_row(rows)
    return {"rows": rows, "not_run": not_run, "split": {k: split[k] for k in ("sha256", "seed", "val_frac")},
            "source_sha256": source_sha, "wall_s": round(time.time() - t_start, 1)}


def differences(gt: Any, rows: dict[str, Any], draws: int) -> dict[str, Any]:
    """Paired bootstrap intervals: each row - fp32, and each GHOST row at the W4 size - qat_w4a8.

    The same figures as `map_difference` for each pair (a test checks it), with each row's matches computed once
    and each row's AP on a draw reused across pairs and metrics (every pair sees the same draws: same seed)."""
    pairs = [("fp32", name) for name in rows if name != "fp32" and "fp32" in rows]
    pairs += [(a, b) for a, b in W4_PAIRS if a in rows and b in rows]
    truth = load_ground_truth(gt)
    matches = {name: coco_matches(truth, rows[name]["dets"]) for name in {n for pair in pairs for n in pair}}
    cache: dict[tuple[str, bytes], dict[str, float]] = {}

    def stat(name: str, metric: str) -> Callable[[Any], float]:
        def value(weights: Any) -> float:
            key = (name, weights.tobytes())
            if key not in cache:
                cache[key] = coco_map(matches[name], weights)
            return cache[key][metric]
        return value

    n = len(truth.image_ids)
    return {f"{b} - {a}": {m: {"metric": m, **paired_bootstrap(stat(a, m), stat(b, m), n, draws, SEED)}
                           for m in ("mAP50", "mAP50_95")} for a, b in pairs}


def goals(diffs: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's compression goals, each with the figures it is judged on (None where a row is missing)."""

    def d(key: str) -> dict[str, Any] | None:
        return diffs.get(key, {}).get("mAP50")

    out: dict[str, Any] = {}
    g = d("ghost_w4budget - fp32")
    out["ghost_w4_within_1.5pt_of_fp32"] = None if g is None else {
        "diff": g["diff"], "ci": g["ci"], "met": g["diff"] >= -0.015, "ci_above_-1.5pt": g["ci"][0] >= -0.015}
    g = d("ghost_w4budget - qat_w4a8")
    out["ghost_w4_above_qat_w4a8_beyond_ci"] = None if g is None else {
        "diff": g["diff"], "ci": g["ci"], "met": g["ci"][0] > 0}
    for row in ("ptq_w8a8", "qat_w8a8"):
        g = d(f"{row} - fp32")
        out[f"{row}_within_0.5pt_of_fp32"] = None if g is None else {
            "diff": g["diff"], "ci": g["ci"], "met": g["diff"] >= -0.005, "ci_above_-0.5pt": g["ci"][0] >= -0.005}
    return out


def nwpu_json_check(rows: dict[str, Any], path: Path) -> dict[str, Any]:
    """Whether the reference rows score as in benchmarks/results/nwpu.json (same checkpoints, same split)."""
    if not path.is_file():
        return {"found": False}
    other = json.loads(path.read_text()).get("rows", {})
    out: dict[str, Any] = {"found": True}
    for name, key in NWPU_JSON_ROW.items():
        if name in rows and key in other:
            out[name] = {"nwpu_json_mAP50": other[key]["mAP50"], "here_mAP50": rows[name]["mAP50"],
                         "agrees": abs(other[key]["mAP50"] - rows[name]["mAP50"]) < 1e-9}
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _ci(d: dict[str, Any]) -> str:
    return f"{100 * d['diff']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"


def markdown(result: dict[str, Any]) -> str:
    """The README tables: each row's scores, size and its difference to FP32; GHOST vs QAT W4A8; the goals."""
    rows, diffs = result["rows"], result["differences"]
    small = next(iter(rows.values()), {}).get("by_size", {}).get("small", {})
    lines = [f"| row | avg W bits | size MB | mAP50 | mAP50:95 | AP50 small (n={small.get('num_gt', '?')}) | "
             "mAP50 - FP32 (95% CI) | mAP50:95 - FP32 (95% CI) | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        d = diffs.get(f"{name} - fp32")
        cells = [_ci(d["mAP50"]), _ci(d["mAP50_95"])] if d else ["", ""]
        lines.append(f"| {name} | {r['avg_weight_bits']:.2f} | {r['size_mb']:.3f} | {_pct(r['mAP50'])} | "
                     f"{_pct(r['mAP50_95'])} | {_pct(r['by_size']['small']['AP50'])} | {cells[0]} | {cells[1]} | "
                     f"{r.get('train_s', 0):.0f} |")
    w4 = [(k, v) for k, v in diffs.items() if k.endswith("- qat_w4a8")]
    if w4:
        lines += ["", "| difference at the W4A8 size | mAP50 (95% CI) | mAP50:95 (95% CI) |", "|---|---|---|"]
        lines += [f"| {k} | {_ci(v['mAP50'])} | {_ci(v['mAP50_95'])} |" for k, v in w4]
    lines += ["", "Goals (mAP50, points):"]
    for k, g in result["goals"].items():
        lines.append(f"- {k}: " + ("not measured" if g is None else f"{_ci(g)} -> {'met' if g['met'] else 'missed'}"))
    for k, why in result["not_run"].items():
        lines.append(f"- {k}: not run ({why})")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Size (MB, log) vs mAP50 and mAP50:95; bars: the 95% CI of the difference to FP32, drawn on each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    rows, diffs = result["rows"], result["differences"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^v<>PX*"
    for ax, metric, label in zip(axes, ("mAP50", "mAP50_95"), ("val mAP50 (%)", "val mAP50:95 (%)"), strict=True):
        for i, (name, r) in enumerate(rows.items()):
            y = 100 * r[metric]
            d = diffs.get(f"{name} - fp32", {}).get(metric)
            err = None if d is None else [[max(0.0, 100 * (d["diff"] - d["ci"][0]))],
                                          [max(0.0, 100 * (d["ci"][1] - d["diff"]))]]
            ax.errorbar(r["size_mb"], y, yerr=err, fmt=markers[i % len(markers)], capsize=3, label=name)
        if "fp32" in rows and metric == "mAP50":
            ax.axhline(100 * rows["fp32"][metric] - 1.5, ls="--", lw=0.8, color="grey", label="FP32 - 1.5 pt")
        ax.set_xscale("log")
        ax.set_xticks([1, 1.5, 2, 3, 4, 6, 8, 12, 16])
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("model size (MB, log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle("NWPU VHR-10 val: compression rows (bars: 95% CI of the difference to FP32)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "nwpu"), help="the NWPU run (fp/, ghost/, split.json)")
    parser.add_argument("--out", default=str(REPO / "runs" / "nwpu_compress"), help="one folder per row")
    parser.add_argument("--only", default=None, help=f"comma-separated rows of {','.join(ORDER)}")
    parser.add_argument("--budget-min", type=float, default=None, help="start no row expected to end past this")
    parser.add_argument("--deadline", default=None, help="UTC HH:MM: start no row expected to end past it")
    parser.add_argument("--prior-min", type=float, default=8.0, help="guess for the first QAT row (minutes)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap QAT steps per row (smoke runs)")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--force", action="store_true", help="redo rows made with other settings")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "nwpu_compress.json"))
    parser.add_argument("--nwpu-json", default=str(REPO / "benchmarks" / "results" / "nwpu.json"))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else None
    if names and set(names) - set(ORDER):
        raise SystemExit(f"--only: unknown rows {sorted(set(names) - set(ORDER))}; rows are {', '.join(ORDER)}")
    cfg = load_config(args.config, args.overrides)
    budget = None if args.budget_min is None else 60 * args.budget_min
    if args.deadline:
        now = datetime.now(timezone.utc)
        hh, mm = (int(v) for v in args.deadline.split(":"))
        left = (now.replace(hour=hh, minute=mm, second=0, microsecond=0) - now).total_seconds()
        budget = left if budget is None else min(budget, left)
    out = Path(args.json)

    def partial(rows: dict[str, Any]) -> None:  # a run cut off midway still leaves its finished rows' scores
        atomic_write_json(out, {"partial": True, "rows": {k: {m: v.get(m) for m in SUMMARY} for k, v in rows.items()},
                                "versions": package_versions()})

    done = run_rows(cfg, Path(args.run), Path(args.out), names, max_steps=args.max_steps, budget_s=budget,
                    prior_s=60 * args.prior_min, force=args.force, on_row=partial)
    t0 = time.time()
    diffs = differences(prepare_data(cfg).val_coco(), done["rows"], args.draws)
    import platform

    import torch

    result = {**done, "differences": diffs, "goals": goals(diffs), "bootstrap_s": round(time.time() - t0, 1),
              "nwpu_json": nwpu_json_check(done["rows"], Path(args.nwpu_json)),
              "settings": {"config": args.config, "overrides": args.overrides, "run": args.run, "out": args.out,
                           "max_steps": args.max_steps, "budget_min": args.budget_min,
                           "deadline_utc": args.deadline, "budget_s": budget, "draws": args.draws,
                           "bootstrap_seed": 0, "compress": cfg.compress.model_dump(mode="json")},
              "machine": {"platform": platform.platform(), "processor": platform.machine(),
                          "torch_threads": torch.get_num_threads()},
              "versions": package_versions()}
    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    plot(result, out.with_suffix(".png"))
    print(markdown(result), flush=True)


if __name__ == "__main__":
    main()
