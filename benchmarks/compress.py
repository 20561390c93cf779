"""Compression benchmark: one trained FP detector, every method on the same data and budget.

Rows: fp32, ptq_w8a8, qat_w8a8, qat_w4a8 (uniform), ghost_rule (k-means rule, T = 0.1), ghost_w4budget (GHOST
at the size of uniform W4A8; default switch gt), ghost_w4budget with the other switch modes, and with a larger
w_kd. Each row:
{"method", "mAP50", "mAP50_95", "size_mb", "bops_g", "avg_weight_bits", "train_s", "step_time_ratio"}
(mAP as fractions; step_time_ratio = mean QAT step / mean FP training step on the same batches).
Writes JSON, a markdown table (--md) and a size-vs-mAP chart (--png).

    python benchmarks/compress.py --quick --json benchmarks/results/compress.json
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ghostq.compress.cost import model_cost
from ghostq.compress.pipeline import build_student, choose_bits
from ghostq.compress.ptq import calibrate
from ghostq.compress.qat import fp_step_seconds, train_quantized
from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import load_config
from ghostq.core.runs import package_versions
from ghostq.detect.checkpoint import checkpoint_spec, load_detector
from ghostq.detect.data.prepare import prepare_data
from ghostq.detect.distributed import DistInfo
from ghostq.detect.inference import evaluate_detector, make_eval_loader
from ghostq.export.scale_groups_trace import trace_scale_groups

REPO = Path(__file__).resolve().parents[1]


def rows_to_run(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    """(row name, CompressConfig fields) of every compressed row."""
    budget = {"mode": "budget", "budget": "size_mb", "target_uniform_bits": 4}
    rows = [
        ("ptq_w8a8", {"method": "ptq", "weight_bits": 8}),
        ("qat_w8a8", {"method": "qat", "weight_bits": 8}),
        ("qat_w4a8", {"method": "qat", "weight_bits": 4}),
        ("ghost_rule", {"method": "ghost", "hq": {"mode": "rule", "threshold": 0.1}}),
        ("ghost_w4budget", {"method": "ghost", "hq": budget}),
        ("ghost_w4budget_gumbel", {"method": "ghost", "hq": budget, "distill": {"scm": "gumbel"}}),
        ("ghost_w4budget_off", {"method": "ghost", "hq": budget, "distill": {"scm": "off"}}),
        # On the demo model (320 px) the OST distance is ~2e-4 per layer, so GHOST's w_kd = 400 makes the OST term
        # ~0.5 against w_det * det ~ 3; this row checks a 100x larger weight (OST dominating)
        ("ghost_w4budget_kd4e4", {"method": "ghost", "hq": budget, "distill": {"w_kd": 4e4}}),
    ]
    return rows[:-1] if quick else rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("--source", default=str(REPO / "runs" / "demo" / "fp" / "best.pt"), help="trained FP checkpoint")
    ap.add_argument("--quick", action="store_true", help="8 QAT steps per row (under 10 minutes on 2 CPU cores)")
    ap.add_argument("--epochs", type=int, default=None, help="QAT epochs per row (default: 1 quick, 6 full)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap QAT steps per row")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--only", default=None, help="comma-separated row names")
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", default=None)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    epochs = args.epochs or (1 if args.quick else 6)
    if args.quick and args.max_steps is None:
        args.max_steps = 8
    cfg = load_config(args.config)
    threads = torch.get_num_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="ghostq-bench-"))
    source = work / "fp.pt"
    shutil.copyfile(args.source, source)  # a fixed copy: the run folder may be retrained meanwhile
    fp, payload = load_detector(source)
    splits = prepare_data(cfg)
    shape = (1, cfg.data.in_channels, cfg.data.img_size, cfg.data.img_size)
    val = make_eval_loader(splits.val, cfg.data.img_size, cfg.data.in_channels, cache_images=True)
    calib_loader = make_eval_loader(splits.train, cfg.data.img_size, cfg.data.in_channels, batch_size=16)
    spec = checkpoint_spec(payload)  # every row is scored as the FP model is (its LogitClip included)
    fp_m = evaluate_detector(fp, val, splits.val_coco(), spec, device)
    fp_cost = model_cost(fp, shape)
    rows = [{"method": "fp32", "mAP50": fp_m["mAP50"], "mAP50_95": fp_m["mAP50_95"], "size_mb": fp_cost.size_mb,
             "bops_g": fp_cost.bops_g, "avg_weight_bits": fp_cost.avg_weight_bits, "train_s": 0.0,
             "step_time_ratio": 1.0}]
    print(f"fp32: mAP50 {fp_m['mAP50']:.4f}", flush=True)
    fp_step = fp_step_seconds(cfg, fp, splits, device, cfg.train.batch_size)
    only = set(args.only.split(",")) if args.only else None
    bits_json = {}
    for name, fields in rows_to_run(args.quick):
        if only and name not in only:
            continue
        t0 = time.time()
        ccfg = CompressConfig(epochs=epochs, lr=args.lr, ptq={"batches": 4}, **fields)
        from ghostq.compress.fold_bn import fold_bn

        hq = choose_bits(fold_bn(copy.deepcopy(fp).eval()), ccfg, shape)
        bits_json[name] = hq["json"]
        student, _ = build_student(fp, ccfg, hq["bits"], shape, trace_scale_groups)
        calibrate(student, calib_loader, ccfg.ptq.batches, ccfg.weight_scale_init, device)
        torch.manual_seed(0)
        if ccfg.method == "ptq":
            m = evaluate_detector(student, val, splits.val_coco(), spec, device)
            model, train_s, ratio = student, 0.0, None
        else:
            res = train_quantized(cfg, ccfg, student, fp, splits, DistInfo(), device, distill=ccfg.method == "ghost",
                                  max_steps=args.max_steps, show_progress=False)
            m, model, train_s = res.metrics, res.model, res.train_seconds
            # paired with an FP measurement taken right after, so both see the same machine load
            fp_now = fp_step_seconds(cfg, fp, splits, device, cfg.train.batch_size, steps=4)
            ratio = res.step_seconds / fp_now
        cost = model_cost(model.cpu(), shape)
        row = {"method": name, "mAP50": m["mAP50"], "mAP50_95": m["mAP50_95"], "size_mb": cost.size_mb,
               "bops_g": cost.bops_g, "avg_weight_bits": cost.avg_weight_bits, "train_s": round(train_s, 1),
               "step_time_ratio": None if ratio is None else round(ratio, 3)}
        rows.append(row)
        print(f"{name}: mAP50 {row['mAP50']:.4f} size {row['size_mb']:.3f} MB avg bits {row['avg_weight_bits']:.2f} "
              f"step x{row['step_time_ratio']} ({time.time() - t0:.0f} s)", flush=True)
        result = {"rows": rows, "settings": {"config": args.config, "source": args.source, "epochs": epochs,
                                             "max_steps": args.max_steps, "lr": args.lr, "quick": args.quick,
                                             "device": str(device), "threads": threads,
                                             "fp_step_s": round(fp_step, 4)},
                  "bits": {k: {"avg_weight_bits": v["avg_weight_bits"], "size_mb": v["size_mb"],
                               "widths": sorted({lay["bits"] for lay in v["layers"].values()})}
                           for k, v in bits_json.items()},
                  "versions": package_versions()}
        atomic_write_json(args.json, result)  # after every row: a partial run still leaves its numbers
    if args.md:
        atomic_write_text(args.md, markdown(rows, result["settings"]))
    if args.png:
        plot(rows, args.png)
    shutil.rmtree(work, ignore_errors=True)


def markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The README table."""
    lines = ["| method | mAP50 | mAP50:95 | size MB | GBOPs | avg W bits | train s | step time x FP |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r["step_time_ratio"] is None else f"{r['step_time_ratio']:.2f}"
        lines.append(f"| {r['method']} | {100 * r['mAP50']:.1f} | {100 * r['mAP50_95']:.1f} | {r['size_mb']:.3f} | "
                     f"{r['bops_g']:.1f} | {r['avg_weight_bits']:.2f} | {r['train_s']:.0f} | {ratio} |")
    lines.append("")
    lines.append(f"QAT epochs per row: {settings['epochs']} (max steps {settings['max_steps']}), lr {settings['lr']}, "
                 f"{settings['device']}, {settings['threads']} thread(s); FP step {settings['fp_step_s']} s.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Size (MB) vs mAP50 scatter, one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    markers = "osD^v<>PX*"
    for i, r in enumerate(rows):  # methods of the same size overlap in x: a legend, not labels
        ax.scatter(r["size_mb"], 100 * r["mAP50"], marker=markers[i % len(markers)], s=40, label=r["method"])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("model size (MB, log)")
    ax.set_ylabel("val mAP50 (%)")
    ax.set_title("ghostq compression on the demo set")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
