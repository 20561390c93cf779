"""JSON + markdown + chart of the incremental benchmark (benchmarks/results/incremental.*), with paired bootstrap
intervals (1000 draws, seed 0) for the final all-class mAP50 differences."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_path, atomic_write_json, atomic_write_text
from ghostq.core.runs import package_versions
from ghostq.deploy.machine import machine_info
from ghostq.detect.bootstrap import map_difference

PAIRS = (  # (A, B): B - A is reported
    ("joint", "acil_5phase"), ("acil_joint", "acil_5phase"), ("finetune_5phase", "acil_5phase"),
    ("acil_1phase", "acil_5phase"), ("joint", "acil_joint"), ("finetune_1phase", "acil_1phase"),
)


def _fixed(row: dict[str, Any], known: list[str], base: tuple[str, ...], new: list[str]) -> dict[str, Any]:
    per = row["per_class"]
    def mean(names):
        return float(np.mean([per[n] or 0.0 for n in names])) if names else None
    return {"old": mean(list(base)), "new": mean(new), "all": mean(known)}


def curves(rows: dict[str, Any], schedule: str) -> dict[str, list[dict[str, Any]]]:
    """mAP50 old / new / all per phase of each method on one schedule ((c) and (d) on the same class sets)."""
    from incremental_protocol import BASE

    a, b = rows[f"acil_{schedule}"]["phases"], rows[f"finetune_{schedule}"]["phases"]
    out: dict[str, list[dict[str, Any]]] = {"(a) ACIL": [], "(b) fine-tune": [], "(c) joint": [],
                                            "(d) ACIL joint": []}
    for pa, pb in zip(a, b, strict=True):
        new = [c for c in pa["known"] if c not in BASE]
        out["(a) ACIL"].append({k: pa[k] for k in ("old", "new", "all")})
        out["(b) fine-tune"].append({k: pb[k] for k in ("old", "new", "all")})
        out["(c) joint"].append(_fixed(rows["joint"], pa["known"], BASE, new))
        out["(d) ACIL joint"].append(_fixed(rows["acil_joint"], pa["known"], BASE, new))
    return out


def write_report(bench: Any, rows: dict[str, Any], json_path: Path) -> None:
    """Write incremental.json / .md / .png next to `json_path`."""
    gt = bench.gt
    diffs = []
    for a, b in PAIRS:
        da, db = bench.rows / f"dets_{a}.json", bench.rows / f"dets_{b}.json"
        if da.is_file() and db.is_file():
            diffs.append({"A": a, "B": b, **map_difference(gt, str(da), str(db), "mAP50", 1000, 0)})
    result = {
        "benchmark": "incremental", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(), "versions": package_versions(), "seed": 0, **bench.meta,
        "base_model": str(bench.base_path), "joint_model": str(bench.joint_path),
        "curves": {s: curves(rows, s) for s in ("1phase", "5phase")}, "bootstrap_mAP50": diffs, "rows": rows,
    }
    atomic_write_json(json_path, result)
    atomic_write_text(json_path.with_suffix(".md"), markdown(result))
    chart(result, json_path.with_suffix(".png"))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(result: dict[str, Any]) -> str:
    """Tables: mAP50 per phase per method, bytes kept, bootstrap intervals, ablation, export."""
    rows = result["rows"]
    lines = ["# Class-incremental learning on NWPU VHR-10 (mAP50 %, val split)", ""]
    for s, cur in result["curves"].items():
        lines += [f"## {s}: old / new / all after each phase", "",
                  "| method | " + " | ".join(f"phase {k}" for k in range(len(cur["(a) ACIL"]))) + " |",
                  "|---|" + "---|" * len(cur["(a) ACIL"])]
        for name, pts in cur.items():
            lines.append(f"| {name} | " + " | ".join(f"{_pct(p['old'])} / {_pct(p['new'])} / {_pct(p['all'])}"
                                                    for p in pts) + " |")
        lines.append("")
    lines += ["## bytes of old data kept", "", "| method | bytes |", "|---|---|"]
    for key in ("acil_5phase", "finetune_5phase", "joint", "acil_joint"):
        if key in rows:
            lines.append(f"| {key} | {rows[key]['kept_bytes']:,} |")
    lines += ["", "## paired bootstrap, all-class mAP50 (B - A, 95% interval, 1000 draws)", "",
              "| A | B | A | B | B - A | interval |", "|---|---|---|---|---|---|"]
    for d in result["bootstrap_mAP50"]:
        lines.append(f"| {d['A']} | {d['B']} | {_pct(d['a'])} | "
                     f"{_pct(d['b'])} | {100 * d['diff']:+.1f} | [{100 * d['ci'][0]:+.1f}, "
                     f"{100 * d['ci'][1]:+.1f}] |")
    abl = [v for k, v in rows.items() if k.startswith("ablation_")]
    if abl:
        lines += ["", "## ACIL base fit variants (base classes, mAP50 %)", "",
                  "| variant | buffer | keep | bg weight | rows | mAP50 |", "|---|---|---|---|---|---|"]
        for v in abl:
            lines.append(f"| {v['variant']} | {v['buffer_dim']} | {v['keep']} | {v['background_weight']:.3g} | "
                         f"{v['rows']:,} | {_pct(v['mAP50_base'])} |")
    for key in ("acil_1phase", "acil_5phase"):
        if key in rows:
            lines.append(f"\n{key}: W relative difference vs joint ridge on the same rows: "
                         f"{rows[key]['W_rel_diff_vs_joint_ridge_same_rows']:.2e}")
    if "export" in rows:
        e = rows["export"]
        lines += ["", "## exported 5-phase model (ONNX Runtime CPU) vs its torch model, mAP50 %", "",
                  "| file | mAP50 | torch | diff | interval |", "|---|---|---|---|---|"]
        for f in e["files"]:
            lines.append(f"| {f['file']} | {_pct(f['mAP50'])} | {_pct(e['torch_mAP50'])} | "
                         f"{100 * f['diff']['diff']:+.2f} | [{100 * f['diff']['ci'][0]:+.2f}, "
                         f"{100 * f['diff']['ci'][1]:+.2f}] |")
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    """mAP50 (all known classes, solid; old classes, dashed) per phase for (a)-(d), one panel per schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (s, cur) in zip(axes, result["curves"].items(), strict=True):
        for (name, pts), color in zip(cur.items(), ("C0", "C3", "C2", "C1"), strict=True):
            x = range(len(pts))
            ax.plot(x, [100 * p["all"] for p in pts], "-o", color=color, label=f"{name} all")
            ax.plot(x, [100 * p["old"] for p in pts], "--", color=color, alpha=0.6, label=f"{name} old")
        ax.set_title(f"NWPU VHR-10, 5 base classes + 5 new in {s}")
        ax.set_xlabel("phase")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP50 (%)")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
