"""`runs/<name>/report.md` and its PNGs, built only from the JSON artifacts of the run (no torch).

Rows: the FP32 PyTorch model, each exported ONNX file (FP32, FP16, INT8 for TensorRT, INT8 for CPUs) and the
GHOST-compressed PyTorch model; columns: mAP50, mAP50:95, size, BOPs and p50 / p99 latency per backend. What
cannot be measured on this machine (TensorRT engines without TensorRT) says why instead of a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_path, atomic_write_text
from ghostq.core.writable import require_writable_file

TRT_MISSING = "not measured (TensorRT absent)"
TRT_NOTE = ("TensorRT: not installed on this machine (it needs an NVIDIA GPU), so no engine was built or timed here; "
            "`export/trtexec.sh` builds and times the engines on the target (e.g. a Jetson).")


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def collect_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per model variant with its accuracy, cost and latency (None where not measured)."""
    fp = _read(run_dir / "fp" / "metrics.json") or {}
    ghost = _read(run_dir / "ghost" / "metrics.json") or {}
    verify = (_read(run_dir / "export" / "verify.json") or {}).get("files", {})
    bench = _read(run_dir / "bench" / "ort_cpu.json") or {}
    cost = ghost.get("cost", {})
    fp_cost, q_cost = cost.get("fp32", {}), cost.get("quantized", {})
    rows = [{"name": "FP32 (PyTorch)", "file": "fp/best.pt", "mAP50": fp.get("mAP50"), "mAP50_95": fp.get("mAP50_95"),
             "size_mb": fp_cost.get("size_mb"), "bops_g": fp_cost.get("bops_g")}]
    fp16_size = fp_cost.get("size_mb") / 2 if fp_cost.get("size_mb") else None
    fp16_bops = fp_cost.get("bops_g") / 4 if fp_cost.get("bops_g") else None
    variants = [("FP32 ONNX", "model_fp32.onnx", fp_cost.get("size_mb"), fp_cost.get("bops_g")),
                ("FP16 ONNX", "model_fp16.onnx", fp16_size, fp16_bops),
                ("INT8 ONNX (TensorRT Q/DQ)", "model_int8.onnx", q_cost.get("size_mb"), q_cost.get("bops_g")),
                ("INT8 ONNX (CPU, u8s8)", "model_int8_cpu.onnx", q_cost.get("size_mb"), q_cost.get("bops_g"))]
    for name, file, size, bops in variants:
        v = verify.get(file)
        if v is None:
            continue
        rows.append({"name": name, "file": f"export/{file}", "mAP50": v.get("mAP50_onnx"),
                     "mAP50_95": v.get("mAP50_95_onnx"), "size_mb": size, "bops_g": bops})
    if ghost:
        rows.append({"name": f"GHOST {ghost.get('method', '')} (PyTorch fake-quant)", "file": "ghost/best.pt",
                     "mAP50": ghost.get("mAP50"), "mAP50_95": ghost.get("mAP50_95"), "size_mb": ghost.get("size_mb"),
                     "bops_g": ghost.get("bops_g")})
    for row in rows:
        row["latency"] = _latency_of(bench, Path(row["file"]).name)
    return rows


def _latency_of(bench: dict[str, Any], file_name: str) -> dict[str, dict[str, float]]:
    """{batch: {p50_ms, p99_ms}} of one file in the interleaved ONNX Runtime CPU comparison."""
    out = {}
    for batch, entry in bench.get("batches", {}).items():
        stats = entry.get("models", {}).get(file_name)
        if stats:
            out[batch] = {"p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"]}
    return out


def plot_map_vs_latency(rows: list[dict[str, Any]], path: Path, batch: str = "1") -> Path | None:
    """Scatter of mAP50 against p50 latency (ONNX Runtime CPU) for the rows that have both."""
    points = [(r["latency"][batch]["p50_ms"], r["mAP50"], r["name"]) for r in rows
              if batch in r["latency"] and r["mAP50"] is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for x, y, name in points:
        ax.scatter([x], [y], s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel(f"p50 latency, ONNX Runtime CPU, batch {batch} (ms)")
    ax.set_ylabel("val mAP50")
    ax.set_title("accuracy vs latency", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_report(run_dir: str | Path) -> Path:
    """Write report.md (+ report_map_vs_latency.png, report_latency.png) from the run's JSON artifacts."""
    from ghostq.deploy.bench import plot_latency

    run_dir = Path(run_dir)
    require_writable_file(run_dir / "report.md", "report")
    rows = collect_rows(run_dir)
    bench = _read(run_dir / "bench" / "ort_cpu.json")
    batches = sorted({b for r in rows for b in r["latency"]}, key=int)
    lines = [f"# ghostq report: {run_dir.name}", ""]
    head = ["model", "mAP50", "mAP50:95", "size MB", "BOPs G"]
    for b in batches:
        head += [f"ORT CPU p50 ms (b{b})", f"ORT CPU p99 ms (b{b})"]
    head.append("TensorRT")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], _fmt(r["mAP50"]), _fmt(r["mAP50_95"]), _fmt(r["size_mb"], 2), _fmt(r["bops_g"], 2)]
        for b in batches:
            lat = r["latency"].get(b)
            cells += [_fmt(lat["p50_ms"], 2), _fmt(lat["p99_ms"], 2)] if lat else ["—", "—"]
        cells.append("—" if r["file"].endswith(".pt") else _trt_cell(run_dir))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "mAP on the val split (fractions). Size = sum(params x bits) / 8; BOPs = sum(MACs x weight bits x "
              "activation bits), layers left in full precision at 32 bits. FP16 size and BOPs are the FP32 ones "
              "halved and quartered. Latency: ONNX Runtime on this machine's CPU, models interleaved in one run "
              "(`bench/ort_cpu.json`); `—`: not measured.", ""]
    if not sorted((run_dir / "export").glob("*.plan")):
        lines += [TRT_NOTE, ""]
    if bench:
        ratios = bench.get("ratios", {})
        for b, per in ratios.items():
            shown = ", ".join(f"{m}: {v:.2f}x" for m, v in per.items())
            lines.append(f"- speed-up over {bench['models'][0]} at batch {b} (p50 ratio): {shown}")
        m = bench.get("machine", {})
        lines += [f"- machine: {m.get('cpu', '?')}, threads {bench.get('settings', {}).get('threads')}", ""]
        lines.append(f"![latency distributions]({plot_latency(bench, run_dir / 'report_latency.png').name})")
    chart = plot_map_vs_latency(rows, run_dir / "report_map_vs_latency.png")
    if chart is not None:
        lines += ["", f"![mAP vs latency]({chart.name})"]
    if (run_dir / "ghost" / "bits.png").is_file():
        bits = _read(run_dir / "ghost" / "bits.json") or {}
        lines += ["", "## Per-layer weight bits (HQ)", "",
                  f"Average weight bits {_fmt(bits.get('avg_weight_bits'), 2)}.", "", "![bits](ghost/bits.png)"]
    samples = sorted((run_dir / "predict").glob("*.png"))[:4]
    if samples:
        lines += ["", "## Sample predictions (INT8, CPU form)", ""]
        lines += [f"![{p.stem}]({p.relative_to(run_dir)})" for p in samples]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def _trt_cell(run_dir: Path) -> str:
    """What the TensorRT column says for an exported file: a built engine, or why there is none."""
    plans = sorted((run_dir / "export").glob("*.plan"))
    if plans:
        return f"engines built: {', '.join(p.name for p in plans)} (not timed here)"
    return TRT_MISSING
