"""CPU INT8 on ONNX Runtime: our default CPU file vs FP32, vs GHOST's float prediction convs, vs quantize_static.

On a finished run (``fp/best.pt``, ``ghost/best.pt``, ``export/`` written with the current defaults):
- files: ``model_fp32.onnx`` and ``model_int8_cpu.onnx`` from ``export/`` (our CPU default,
  ``export.int8.cpu_prediction_convs=int8``: W8A8 prediction convs, every other conv a QLinearConv), plus,
  written here into ``<run>/bench/cpu_int8/``, the same with ``int8_output`` (the prediction convs QLinearConvs
  too) and with ``fp`` (the prediction convs as the GHOST checkpoint has them, the previous default), and ONNX
  Runtime's ``quantize_static`` file of the same FP32 model (QDQ, u8 activations / s8 per-channel weights,
  min-max, on the same calibration images as our export);
- val mAP50 / mAP50:95 of each file and of the quantized torch model (``ghost/best.pt``), with paired bootstrap
  95% intervals (``ghostq.detect.bootstrap.map_difference``, 1000 draws, seed 0): our CPU file vs the torch
  model (goal: within 0.3 points mAP50), vs the previous default, vs quantize_static;
- one interleaved latency run (ONNX Runtime CPU, 2 threads, batch 1 and 4; speed-up = p50 FP32 / p50 model),
  also written as ``benchmarks/results/bench_compare_<tag>_cpu_int8.json``;
- ``explain`` counts of each file (what ORT runs as integer / float, its transitions), and an ORT profile at batch
  1 (kernel time per op type): the conv kernels' own speed-up bounds the whole model's, which is the answer to
  "how far from the ~4x int8 ceiling, and why".
Every step keeps its JSON under ``<run>/bench/cpu_int8/`` and is skipped on a rerun while its inputs (file
sha256) are unchanged.

    python benchmarks/cpu_int8.py --run runs/demo --config configs/demo.yaml --tag demo
    python benchmarks/cpu_int8.py --run runs/nwpu --config configs/nwpu.yaml --tag nwpu data.root=../shared/nwpu_vhr10
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ghostq.core.detections import DecodeSettings
from ghostq.core.image_io import load_record_image
from ghostq.core.runs import package_versions
from ghostq.core.runtime import load_runtime
from ghostq.detect.bootstrap import map_difference
from ghostq.detect.data.prepare import prepare_data, split_record
from ghostq.detect.evaluate import evaluate_coco
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[1]
FP32, OURS, OUT, PREV, STATIC = (
    "model_fp32.onnx", "model_int8_cpu.onnx", "model_int8_cpu_int8_output.onnx",
    "model_int8_cpu_fp_prediction_convs.onnx", "model_int8_ort_quantize_static.onnx")
PAIRS = (("ghost_torch", OURS), ("ghost_torch", OUT), ("ghost_torch", PREV), (PREV, OURS), (STATIC, OURS),
         ("fp32_torch", STATIC), ("fp32_torch", "ghost_torch"))
CONV_OPS = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NchwcConv")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cached(path: Path, inputs: dict[str, str], make: Any, outputs: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The JSON at `path` when it was made from the same `inputs` (name -> sha256) and its `outputs` exist,
    else `make()` saved there (a finished step is kept and skipped)."""
    if path.is_file() and all(p.is_file() for p in outputs):
        old = json.loads(path.read_text())
        if old.get("inputs") == inputs:
            return old
    t0 = time.time()
    out = {"inputs": inputs, **make()}
    out["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(path, out)
    return out


def cpu_variant(ghost: Path, out: Path, mode: str, batches: list[np.ndarray]) -> Path:
    """The CPU form of the GHOST checkpoint with ``export.int8.cpu_prediction_convs=mode`` (fp: as the checkpoint
    has them, the previous default; int8_output: QLinearConvs with 8-bit outputs), calibrated on `batches`."""
    from ghostq.compress.pipeline import load_quantized
    from ghostq.detect.checkpoint import checkpoint_spec
    from ghostq.export.cpu_quant import with_quantized_convs
    from ghostq.export.ghost_source import dequantized_copy, spec_from_quantized
    from ghostq.export.onnx_export import export_onnx, set_metadata
    from ghostq.export.qdq_export import write_qdq

    qmodel, payload = load_quantized(ghost)
    base = export_onnx(dequantized_copy(qmodel), None, spec=checkpoint_spec(payload))
    spec = spec_from_quantized(qmodel)
    if mode != "fp":
        spec = with_quantized_convs(base, spec, qmodel.prediction_layer_names(), batches,
                                    output=mode == "int8_output")
    q = write_qdq(base, spec, "cpu")
    set_metadata(q, {"ghostq.precision": "int8_cpu", "ghostq.int8_source": "ghost", "ghostq.prediction_convs": mode})
    atomic_write_bytes(out, q.SerializeToString())
    return out


def quantize_static_file(fp32: Path, out: Path, batches: list[np.ndarray]) -> Path:
    """onnxruntime.quantization.quantize_static (QDQ, QUInt8 activations, QInt8 per-channel weights, min-max)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([b[i:i + 1] for b in batches for i in range(len(b))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {"images": x}

    tmp = out.with_suffix(".tmp.onnx")
    quantize_static(str(fp32), str(tmp), Reader(), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    tmp.replace(out)
    return out


def torch_dets(checkpoint: Path, records: list) -> list[dict[str, Any]]:
    """COCO results of a checkpoint (FP or compressed) on the val records, through its spec's inference head."""
    import torch

    from ghostq.cli.eval_commands import load_model
    from ghostq.detect.inference import make_eval_loader, predict_loader

    model, spec = load_model(checkpoint)
    loader = make_eval_loader(records, spec.img_size, spec.in_channels, workers=0)
    return predict_loader(model, loader, spec, torch.device("cpu"))


def onnx_dets(path: Path, records: list, threads: int) -> list[dict[str, Any]]:
    """COCO results of an ONNX file on the val records (ONNX Runtime CPU, evaluation thresholds)."""
    from ghostq.deploy.predict import detect_image

    out = []
    with load_runtime(path, backend="ort-cpu", threads=threads, decode=DecodeSettings()) as rt:
        for k, rec in enumerate(records):
            det = detect_image(rt, load_record_image(rec, rt.info.in_channels))
            for (x1, y1, x2, y2), score, label in det.rows():
                out.append({"image_id": k + 1, "category_id": int(label) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return out


def op_profile(path: Path, size: int, channels: int, threads: int, runs: int = 30) -> dict[str, Any]:
    """ORT kernel time per op type at batch 1 (mean ms per inference over `runs`, after 5 warm-up runs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ghostq_profile_")) / "ort")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, channels, size, size), dtype=np.float32)
    warmup = 5
    t0 = time.perf_counter()
    for k in range(warmup + runs):
        if k == warmup:
            t0 = time.perf_counter()
        sess.run(None, {"images": x})
    wall = (time.perf_counter() - t0) / runs * 1e3
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    trace.parent.rmdir()
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    cutoff = starts[warmup] if len(starts) > warmup else 0  # node events of the warm-up runs are left out
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= cutoff:
            per_op[e["args"]["op_name"]] += e["dur"]
    ms = {op: round(us / runs / 1e3, 4) for op, us in per_op.most_common()}
    conv = sum(v for k, v in ms.items() if k in CONV_OPS)
    return {"wall_ms": round(wall, 3), "kernel_ms": ms, "conv_ms": round(conv, 4),
            "other_ms": round(sum(ms.values()) - conv, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "demo"))
    parser.add_argument("--tag", default="demo", help="names the results: cpu_int8_<tag>.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=200, help="timed runs per model and batch size")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--torch-dets", default=None, help="folder with val_dets_{fp32,ghost}_torch.json of the "
                        "same run and split (benchmarks/nwpu.py writes them to <run>/bench): reused, not recomputed")
    args = parser.parse_args()
    t_start = time.time()

    from ghostq.export.explain import explain
    from ghostq.export.pipeline import train_calibration_batches

    cfg = load_config(args.config, args.overrides)
    run, work = Path(args.run), Path(args.run) / "bench" / "cpu_int8"
    work.mkdir(parents=True, exist_ok=True)
    export, ghost, fp = run / "export", run / "ghost" / "best.pt", run / "fp" / "best.pt"
    for p in (export / FP32, export / OURS, ghost, fp):
        if not p.is_file():
            raise SystemExit(f"missing {p}: run `ghostq run {args.config}` (with the current export defaults) first")
    splits = prepare_data(cfg)
    split = split_record(splits, cfg.run.seed, cfg.data.val_frac)
    recorded = run / "split.json"
    if recorded.is_file() and json.loads(recorded.read_text())["sha256"] != split["sha256"]:
        raise SystemExit(f"{recorded} differs from the split of {args.config}: not the same run")
    files = {FP32: export / FP32, OURS: export / OURS, OUT: work / OUT, PREV: work / PREV, STATIC: work / STATIC}

    def make_files() -> dict[str, Any]:
        calib = train_calibration_batches(cfg, cfg.export, splits.train)
        return {"int8_output": str(cpu_variant(ghost, files[OUT], "int8_output", calib)),
                "prev": str(cpu_variant(ghost, files[PREV], "fp", calib)),
                "static": str(quantize_static_file(files[FP32], files[STATIC], calib)),
                "calibration": f"{cfg.export.int8.calib_batches} x {cfg.export.int8.calib_batch_size} train "
                               f"images (seed {cfg.run.seed}), the export's own calibration set"}

    made = cached(work / "files.json", {"ghost": sha256(ghost), "fp32": sha256(files[FP32])}, make_files,
                  outputs=(files[OUT], files[PREV], files[STATIC]))
    digests = {name: sha256(p) for name, p in files.items()} | {"ghost_torch": sha256(ghost), "fp32_torch": sha256(fp)}

    gt = splits.val_coco()
    rows: dict[str, Any] = {}
    for name in ("fp32_torch", "ghost_torch", *files):
        dets_file = work / f"dets_{name.replace('.onnx', '')}.json"

        def score(name: str = name, dets_file: Path = dets_file) -> dict[str, Any]:
            kept = Path(args.torch_dets or work) / f"val_dets_{name}.json"
            if name.endswith("_torch") and args.torch_dets and kept.is_file():
                dets = json.loads(kept.read_text())
            elif name.endswith("_torch"):
                dets = torch_dets(fp if name == "fp32_torch" else ghost, splits.val)
            else:
                dets = onnx_dets(files[name], splits.val, args.threads)
            atomic_write_json(dets_file, dets)
            return {"dets": str(dets_file), **evaluate_coco(gt, dets)}

        rows[name] = cached(work / f"row_{name.replace('.onnx', '')}.json", {name: digests[name]}, score,
                            outputs=(dets_file,))
    diffs = {}
    for a, b in PAIRS:
        diffs[f"{b} - {a}"] = {m: map_difference(gt, rows[a]["dets"], rows[b]["dets"], m, draws=args.draws)
                               for m in ("mAP50", "mAP50_95")}

    from ghostq.deploy.bench import BenchSettings, compare

    order = [FP32, OURS, OUT, PREV, STATIC]
    settings = BenchSettings(batches=(1, 4), warmup=args.warmup, iters=args.iters, threads=args.threads)
    timing = cached(work / "latency.json", {n: digests[n] for n in order} | {"iters": str(args.iters)},
                    lambda: {"compare": compare([files[n] for n in order], backend="ort-cpu", settings=settings)})
    cmp = timing["compare"]
    atomic_write_json(Path(args.out) / f"bench_compare_{args.tag}_cpu_int8.json", cmp)

    size, channels = cfg.data.img_size, cfg.data.in_channels
    graphs = cached(work / "explain.json", {n: digests[n] for n in order}, lambda: {
        "explain": {n: explain(files[n]) for n in order},
        "profile_b1": {n: op_profile(files[n], size, channels, args.threads) for n in order}})

    latency = {}
    for n in order:
        latency[n] = {}
        for b, entry in cmp["batches"].items():
            st = entry["models"][n]
            latency[n][f"b{b}"] = {"p50_ms": st["p50_ms"], "p99_ms": st["p99_ms"],
                                   "speedup_vs_fp32": cmp["batches"][b]["models"][FP32]["p50_ms"] / st["p50_ms"]}
    prof = graphs["profile_b1"]
    ceiling = {n: {"conv_kernel_speedup": prof[FP32]["conv_ms"] / prof[n]["conv_ms"],
                   "conv_share_of_kernel_time": prof[n]["conv_ms"] / (prof[n]["conv_ms"] + prof[n]["other_ms"]),
                   "other_ms": prof[n]["other_ms"]} for n in order}
    result = {
        "tag": args.tag, "run": str(run), "config": cfg.model_dump(mode="json"),
        "split": {"sha256": split["sha256"], "seed": cfg.run.seed, "val_frac": cfg.data.val_frac,
                  "train": len(split["train"]), "val": len(split["val"])},
        "files": {n: {"path": str(files[n]), "sha256": digests[n]} for n in files},
        "calibration": made["calibration"],
        "rows": {n: {k: r[k] for k in ("mAP50", "mAP50_95") if k in r} for n, r in rows.items()},
        "differences": diffs, "bootstrap": {"draws": args.draws, "seed": 0},
        "latency": latency, "latency_settings": cmp["settings"], "timed": cmp["timed"],
        "explain": {n: {k: v for k, v in graphs["explain"][n].items() if k != "file"} for n in order},
        "profile_b1": prof, "ceiling": ceiling,
        "ceiling_definition": "conv_kernel_speedup = ORT kernel time of the FP32 file's convs / the file's convs at "
                              "batch 1 (profiled, not interleaved); the whole model cannot beat it by more than its "
                              "non-conv time allows",
        "machine": cmp["machine"], "versions": package_versions(), "wall_clock_s": round(time.time() - t_start, 1),
    }
    out = Path(args.out) / f"cpu_int8_{args.tag}.json"
    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The README tables: mAP and latency per file, the bootstrap differences, the explain counts."""
    rows, lat, ex, ceil = result["rows"], result["latency"], result["explain"], result["ceiling"]

    def pct(v: float | None) -> str:
        return "" if v is None else f"{100 * v:.1f}"

    lines = ["| model | mAP50 | mAP50:95 | p50 ms b1 | speed-up b1 | p50 ms b4 | speed-up b4 | QLinearConv | "
             "float nodes | Q / DQ / reorder | conv kernels x |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        cells = [n, pct(r.get("mAP50")), pct(r.get("mAP50_95"))]
        if n in lat:
            e = ex[n]
            q = e["ops"].get("QLinearConv", {}).get("integer", 0)
            cells += [f"{lat[n]['b1']['p50_ms']:.2f}", f"{lat[n]['b1']['speedup_vs_fp32']:.2f}x",
                      f"{lat[n]['b4']['p50_ms']:.2f}", f"{lat[n]['b4']['speedup_vs_fp32']:.2f}x", str(q),
                      str(e["float_nodes"]), f"{e['quantize']} / {e['dequantize']} / {e['reorder']}",
                      f"{ceil[n]['conv_kernel_speedup']:.2f}x"]
        else:
            cells += [""] * 8
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| difference | mAP50 (95% CI) | mAP50:95 (95% CI) |", "|---|---|---|"]
    for name, d in result["differences"].items():
        cells = [f"{100 * d[m]['diff']:+.2f} [{100 * d[m]['ci'][0]:+.2f}, {100 * d[m]['ci'][1]:+.2f}]"
                 for m in ("mAP50", "mAP50_95")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
