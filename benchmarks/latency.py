"""CPU latency of the exported files on ONNX Runtime and OpenVINO, interleaved, and end to end (image -> boxes).

One interleaved run per row (size x batch x threads), every runtime on the same files, A B C ... A B C ...:
ONNX Runtime FP32, ONNX Runtime INT8 (`model_int8_cpu.onnx`, u8s8; `model_int8.onnx`, the TensorRT form),
OpenVINO on the FP32 file at its default precision (bf16 on CPUs with AMX / AVX-512 BF16) and in strict f32, and
OpenVINO on both INT8 files; batch 1 and 4, 1 and 2 threads; at the demo size and at the NWPU benchmark's size.
End-to-end rows (batch 1, 2 threads): image file -> boxes, step by step (decode, letterbox, inference,
decoding / NMS), FP32 vs INT8 on each backend, and the pre-issue-13 pipeline (`baseline`) beside the fast one.

Resumable row by row: each row's JSON is kept under `--out`/rows/ and skipped when present (`--force` redoes).
Writes `--out`.json (every row, machine with CPU instruction sets, versions, seed, split sha256, wall-clock) and
`--out`.md (tables + the goal ratios).

    python benchmarks/latency.py [--sizes demo,nwpu] [--rows b1t2,b4t2,...,e2e] [--iters N] [--quick]

Files: `runs/demo/export`, `runs/nwpu/export` when they hold every file timed, else the stand-ins under runs/b
(latency depends on the graph, not on the weights; e2e decoding does depend on the scores):
`runs/b/nwpu_export` = `ghostq export --model <runs/nwpu/fp/best.pt after epoch 5> --calib <16 NWPU train images>`
(min-max PTQ INT8), `runs/b/demo_export` = the same for an untrained configs/demo.yaml model (timing only).
e2e images: `runs/b/nwpu_val` (the first 24 val images of runs/nwpu/split.json), `runs/b/demo_synth/images`
(`ghostq data synth --images 12 --size 320 --seed 7`). Each row records the folder and the files' sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.tiling import list_images
from ghostq.deploy.bench import BenchSettings, compare_runtimes, open_for_timing
from ghostq.deploy.e2e import E2ESettings, e2e_markdown, run_e2e
from ghostq.deploy.machine import machine_info

REPO = Path(__file__).resolve().parents[1]
# size -> export folders, first present wins: the run's own export, else the stand-in files of runs/b (see --help)
SOURCES = {
    "demo": [REPO / "runs/demo/export", REPO / "runs/b/demo_export"],
    "nwpu": [REPO / "runs/nwpu/export", REPO / "runs/b/nwpu_export"],
}
# e2e images: 12 synthetic 320-px scenes (seed 7, not the demo's train / val), the first 24 NWPU val images
IMAGES = {"demo": [REPO / "runs/b/demo_synth/images"], "nwpu": [REPO / "runs/b/nwpu_val"]}
SPLIT = REPO / "runs/nwpu/split.json"
# label -> (file, backend); the order is the interleaving order
MODELS = {
    "ort fp32": ("model_fp32.onnx", "ort-cpu"),
    "ort int8_cpu": ("model_int8_cpu.onnx", "ort-cpu"),
    "ort int8 (trt form)": ("model_int8.onnx", "ort-cpu"),
    "ov fp32 file, default": ("model_fp32.onnx", "ov-cpu"),
    "ov fp32 file, strict f32": ("model_fp32.onnx", "ov-cpu-f32"),
    "ov int8_cpu": ("model_int8_cpu.onnx", "ov-cpu"),
    "ov int8 (trt form)": ("model_int8.onnx", "ov-cpu"),
}
TIMING_ROWS = ("b1t2", "b1t1", "b4t2", "b4t1")
E2E_MODELS = [  # label, model label, pipeline
    ("ort fp32 [fast]", "ort fp32", "fast"),
    ("ort int8_cpu [fast]", "ort int8_cpu", "fast"),
    ("ov fp32 file, default [fast]", "ov fp32 file, default", "fast"),
    ("ov int8_cpu [fast]", "ov int8_cpu", "fast"),
    ("ort fp32 [baseline]", "ort fp32", "baseline"),
    ("ort int8_cpu [baseline]", "ort int8_cpu", "baseline"),
]


def export_dir(size: str) -> Path:
    """The first export folder of ``size`` that holds every file timed."""
    for folder in SOURCES[size]:
        if all((folder / f).is_file() for f, _ in MODELS.values()):
            return folder
    raise SystemExit(f"no export folder with {sorted({f for f, _ in MODELS.values()})} for {size}: {SOURCES[size]}")


def provenance(folder: Path) -> dict[str, Any]:
    """Which files were timed: folder, each file's sha256 and its verify.json mAP50 when the export wrote one."""
    out: dict[str, Any] = {"folder": str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder)}
    out["sha256"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest()[:16] for f, _ in MODELS.values()}
    verify = folder / "verify.json"
    if verify.is_file():
        out["verify"] = json.loads(verify.read_text())
    return out


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timing_row(size: str, row: str, iters: int, warmup: int) -> dict[str, Any]:
    """One interleaved run of every runtime at one batch size and thread count."""
    batch, threads = int(row[1 : row.index("t")]), int(row[row.index("t") + 1 :])
    folder = export_dir(size)
    settings = BenchSettings(batches=(batch,), warmup=warmup, iters=iters, threads=threads, seed=0)
    runtimes = []
    try:
        for label, (file, backend) in MODELS.items():
            runtimes.append((label, open_for_timing(folder / file, backend, settings, True)))
        load0, t0 = load_average(), time.time()
        result = compare_runtimes(runtimes, settings)
        result["wall_s"], result["load_average"] = round(time.time() - t0, 1), [load0, load_average()]
    finally:
        for _, rt in runtimes:
            rt.close()
    result["files"] = provenance(folder)
    return result


def e2e_row(size: str, rounds: int) -> dict[str, Any]:
    """Image file -> boxes at batch 1, 2 threads: FP32 vs INT8 on both backends, fast and baseline pipelines."""
    folder = export_dir(size)
    images_dir = next((d for d in IMAGES[size] if d.is_dir()), None)
    if images_dir is None:
        raise SystemExit(f"no images for the {size} e2e row: {IMAGES[size]}")
    paths = list_images([images_dir])[:24]
    settings = BenchSettings(threads=2)
    opened: dict[str, Any] = {}
    try:
        for _, model, _ in E2E_MODELS:
            if model not in opened:
                file, backend = MODELS[model]
                opened[model] = open_for_timing(folder / file, backend, settings, True)
        entries = [(label, opened[model], kind) for label, model, kind in E2E_MODELS]
        load0, t0 = load_average(), time.time()
        result = run_e2e(entries, paths, E2ESettings(rounds=rounds, warmup=2))
        result["wall_s"], result["load_average"] = round(time.time() - t0, 1), [load0, load_average()]
    finally:
        for rt in opened.values():
            rt.close()
    result["files"] = provenance(folder)
    return result


def ov_profile(size: str, runs: int = 10) -> dict[str, Any]:
    """OpenVINO's per-layer times (PERF_COUNT), 1 thread: convolutions vs every other layer, FP32 file (default
    precision) and CPU INT8 file at batch 1 and 4; medians over ``runs`` of the summed real times (ms)."""
    import numpy as np
    import openvino as ov

    core, folder, out = ov.Core(), export_dir(size), {}
    for file in ("model_fp32.onnx", "model_int8_cpu.onnx"):
        for batch in (1, 4):
            model = core.read_model(str(folder / file))
            model.reshape({model.inputs[0].get_any_name(): [batch, *list(model.inputs[0].get_partial_shape())[1:]]})
            config = {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
            request = core.compile_model(model, "CPU", config).create_infer_request()
            x = np.random.default_rng(0).random(tuple(request.get_input_tensor().shape), dtype=np.float32)
            sums: list[dict[str, float]] = []
            for k in range(runs + 3):
                request.infer({0: x})
                if k >= 3:
                    info = request.profiling_info
                    conv = sum(p.real_time.total_seconds() for p in info if p.node_type == "Convolution") * 1000
                    sums.append({"conv": conv, "other": sum(p.real_time.total_seconds() for p in info) * 1000 - conv})
            out[f"{file} b{batch}"] = {k: float(np.median([s[k] for s in sums])) for k in ("conv", "other")}
    return {"what": "OpenVINO per-layer real time, 1 thread, medians (ms)", "load_average": load_average(), "ms": out}


def p50(row: dict[str, Any], label: str) -> float:
    batch = next(iter(row["batches"]))
    return row["batches"][batch]["models"][label]["p50_ms"]


def summary(rows: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Goal ratios and the markdown tables from the finished rows."""
    goals: dict[str, Any] = {}
    lines = []
    for size in SOURCES:
        timed = {r: rows[f"{size}_{r}"] for r in TIMING_ROWS if f"{size}_{r}" in rows}
        if not timed:
            continue
        first = next(iter(timed.values()))
        lines += [f"### {size} (files: {first['files']['folder']}; p50 ms of one interleaved run per column: "
                  "b = batch, t = threads)", ""]  # fmt: skip
        head = "| runtime | file | precision | " + " | ".join(f"p50 ms {r}" for r in timed) + " | " + " | ".join(
            f"x ort fp32 {r}" for r in timed) + " |"  # fmt: skip
        lines += [head, "|---|---|---|" + "---:|" * (2 * len(timed))]
        for k, label in enumerate(MODELS):
            desc = first["runtimes"][k]
            cells = [f"{p50(row, label):.2f}" for row in timed.values()]
            cells += [f"{p50(row, 'ort fp32') / p50(row, label):.2f}x" for row in timed.values()]
            lines.append(f"| {label} | {MODELS[label][0]} | {desc.get('precision')} | " + " | ".join(cells) + " |")
        for r, row in timed.items():
            int8 = {lab: p50(row, lab) for lab in MODELS if "int8" in lab}
            other = {lab: p50(row, lab) for lab in MODELS if "int8" not in lab}
            best_int8, best_other = min(int8, key=int8.get), min(other, key=other.get)
            goals[f"{size}_{r}"] = {
                "best_int8": best_int8, "best_non_int8": best_other,
                "int8_vs_fastest_non_int8": other[best_other] / int8[best_int8],
                "ort_int8_cpu_vs_ort_fp32": p50(row, "ort fp32") / p50(row, "ort int8_cpu"),
                "ov_int8_cpu_vs_ov_default": p50(row, "ov fp32 file, default") / p50(row, "ov int8_cpu"),
                "ov_int8_cpu_vs_ov_f32": p50(row, "ov fp32 file, strict f32") / p50(row, "ov int8_cpu"),
                "ov_int8_cpu_vs_ort_int8_cpu": p50(row, "ort int8_cpu") / p50(row, "ov int8_cpu"),
                "load_average": row["load_average"],
                "iters": row["settings"]["iters"],
            }  # fmt: skip
        lines.append("")
        for r in timed:
            g = goals[f"{size}_{r}"]
            lines.append(f"- {r}: INT8 via the best backend ({g['best_int8']}) = {g['int8_vs_fastest_non_int8']:.2f}x "
                         f"the fastest non-INT8 ({g['best_non_int8']}); ORT int8_cpu / ORT fp32 "
                         f"{g['ort_int8_cpu_vs_ort_fp32']:.2f}x; OV int8_cpu vs OV default "
                         f"{g['ov_int8_cpu_vs_ov_default']:.2f}x, vs OV f32 {g['ov_int8_cpu_vs_ov_f32']:.2f}x, "
                         f"vs ORT int8_cpu {g['ov_int8_cpu_vs_ort_int8_cpu']:.2f}x "
                         f"({g['iters']} interleaved rounds; load average before / after "
                         f"{g['load_average']})")  # fmt: skip
        e2e = rows.get(f"{size}_e2e")
        if e2e:
            res = e2e["results"]

            def tot(label: str, res: dict[str, Any] = res) -> float:
                return res[label]["total"]["p50_ms"]

            goals[f"{size}_e2e"] = {
                "ort_int8_vs_fp32_fast": tot("ort fp32 [fast]") / tot("ort int8_cpu [fast]"),
                "ov_int8_vs_default_fast": tot("ov fp32 file, default [fast]") / tot("ov int8_cpu [fast]"),
                "best_int8_vs_best_fp32_fast": min(tot("ort fp32 [fast]"), tot("ov fp32 file, default [fast]"))
                / min(tot("ort int8_cpu [fast]"), tot("ov int8_cpu [fast]")),
                "ort_int8_vs_fp32_baseline": tot("ort fp32 [baseline]") / tot("ort int8_cpu [baseline]"),
                "fast_vs_baseline_ort_int8": tot("ort int8_cpu [baseline]") / tot("ort int8_cpu [fast]"),
                "fast_vs_baseline_ort_fp32": tot("ort fp32 [baseline]") / tot("ort fp32 [fast]"),
            }
            lines += ["", f"End to end, {size} (batch 1, 2 threads; load average before / after "
                      f"{e2e['load_average']}):", "", e2e_markdown(e2e)]
            lines += [f"- {k}: {v:.2f}x" for k, v in goals[f"{size}_e2e"].items()]
        lines.append("")
    return goals, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="demo,nwpu")
    parser.add_argument("--rows", default=",".join((*TIMING_ROWS, "e2e")))
    parser.add_argument("--iters", type=int, default=30, help="timed rounds per timing row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="e2e passes over the images")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 1 warm-up, 1 e2e pass (smoke test)")
    parser.add_argument("--force", action="store_true", help="redo rows that are already there")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/latency_backends"))
    parser.add_argument("--ov-profile", action="store_true", help="only OpenVINO's per-layer profile -> rows/")
    args = parser.parse_args()
    iters, warmup, rounds = (3, 1, 1) if args.quick else (args.iters, args.warmup, args.rounds)
    out = Path(args.out)
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    if args.ov_profile:
        for size in args.sizes.split(","):
            atomic_write_json(out / f"ov_profile_{size}.json", ov_profile(size))
        return
    for size in args.sizes.split(","):
        for row in args.rows.split(","):
            name = f"{size}_{row}"
            path = rows_dir / f"{name}.json"
            if path.is_file() and not args.force:
                rows[name] = json.loads(path.read_text())
                print(f"{name}: kept", flush=True)
                continue
            t0 = time.time()
            rows[name] = e2e_row(size, rounds) if row == "e2e" else timing_row(size, row, iters, warmup)
            atomic_write_json(path, rows[name])
            print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    for path in sorted(rows_dir.glob("*.json")):  # rows of earlier invocations too
        rows.setdefault(path.stem, json.loads(path.read_text()))
    goals, text = summary(rows)
    split = json.loads(SPLIT.read_text()).get("sha256") if SPLIT.is_file() else None
    result = {"goals": goals, "rows": sorted(rows), "machine": machine_info(), "seed": 0, "nwpu_split_sha256": split,
              "settings": {"iters": iters, "warmup": warmup, "e2e_rounds": rounds},
              "definition": "ratios = p50 latency of the slower / p50 of the faster entry of one interleaved row",
              "row_files": str(rows_dir.relative_to(REPO)) if rows_dir.is_relative_to(REPO) else str(rows_dir)}
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
