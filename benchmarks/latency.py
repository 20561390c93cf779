"""CPU latency of the exported models vs the INT8 a user would try first (onnxruntime's quantize_static).

ONNX Runtime CPU, 2 threads, batch 1 and 4, all models interleaved in one run (A B C D A B C D ...): our FP32,
our INT8 in both forms (`model_int8.onnx`, TensorRT Q/DQ; `model_int8_cpu.onnx`, u8s8), and
`quantize_static(model_fp32.onnx)` (QDQ, u8 activations / s8 weights, per-channel, min-max calibration on train
images), each with its val mAP50. Writes JSON (ratios = p50 of FP32 / p50 of the model) and a markdown table.

    python benchmarks/latency.py --run runs/demo --config configs/demo.yaml [--quick] --json PATH
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.config import load_config
from ghostq.core.image_io import load_record_image
from ghostq.deploy import load_runtime, preprocess, unletterbox
from ghostq.deploy.bench import BenchSettings, compare
from ghostq.detect.data.prepare import prepare_data
from ghostq.detect.evaluate import evaluate_coco

REPO = Path(__file__).resolve().parents[1]


def quantize_static_baseline(fp32: Path, out: Path, images: list[np.ndarray], size: int) -> Path:
    """onnxruntime.quantization.quantize_static with its defaults (QDQ, QUInt8 activations, QInt8 weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([preprocess([im], size)[0] for im in images])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {"images": x}

    quantize_static(str(fp32), str(out), Reader(), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def map50(path: Path, records: list, classes: tuple[str, ...], gt: dict[str, Any], in_channels: int) -> float:
    """Val mAP50 of an ONNX file through the torch-free runtime (same decoding for every model)."""
    rt = load_runtime(path, backend="ort-cpu", threads=2)
    size = rt.info.img_size
    results = []
    for start in range(0, len(records), 8):
        chunk = records[start:start + 8]
        batch, placements = preprocess([load_record_image(r, in_channels) for r in chunk], size)
        for k, (det, lb) in enumerate(zip(rt.infer(batch), placements, strict=True)):
            for (x1, y1, x2, y2), s, c in zip(unletterbox(det.boxes, lb).tolist(), det.scores.tolist(),
                                              det.labels.tolist(), strict=True):
                results.append({"image_id": start + k + 1, "category_id": int(c) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)})
    rt.close()
    return evaluate_coco(gt, results)["mAP50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "demo"), help="run folder with export/")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--quick", action="store_true", help="fewer timed runs")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "latency.json"))
    args = parser.parse_args()
    cfg = load_config(args.config)
    export = Path(args.run) / "export"
    ours = [export / n for n in ("model_fp32.onnx", "model_int8.onnx", "model_int8_cpu.onnx")]
    missing = [str(p) for p in ours if not p.is_file()]
    if missing:
        sys.exit(f"missing {missing}: run `ghostq run {args.config}` first")
    splits = prepare_data(cfg)
    calib = [load_record_image(r, cfg.data.in_channels) for r in splits.train[:32]]
    baseline = quantize_static_baseline(ours[0], export / "model_int8_ort_quantize_static.onnx", calib,
                                        cfg.data.img_size)
    models = [*ours, baseline]
    settings = BenchSettings(batches=(1, 4), warmup=5 if args.quick else 20, iters=20 if args.quick else 200,
                             threads=2)
    timing = compare(models, backend="ort-cpu", settings=settings)
    gt = splits.val_coco()
    maps = {p.name: map50(p, splits.val, splits.classes, gt, cfg.data.in_channels) for p in models}
    rows = []
    for p in models:
        row: dict[str, Any] = {"model": p.name, "mAP50": maps[p.name]}
        for b, entry in timing["batches"].items():
            stats = entry["models"][p.name]
            row[f"p50_ms_b{b}"] = stats["p50_ms"]
            row[f"p99_ms_b{b}"] = stats["p99_ms"]
            row[f"speedup_vs_fp32_b{b}"] = timing["batches"][b]["models"]["model_fp32.onnx"]["p50_ms"] / stats["p50_ms"]
        rows.append(row)
    result = {"rows": rows, "settings": timing["settings"], "machine": timing["machine"],
              "definition": "speedup = p50 latency of model_fp32.onnx / p50 latency of the model, same run"}
    atomic_write_json(args.json, result)
    head = "| model | mAP50 | p50 ms b1 | p99 ms b1 | speed-up b1 | p50 ms b4 | p99 ms b4 | speed-up b4 |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mAP50']:.4f} | {r['p50_ms_b1']:.2f} | {r['p99_ms_b1']:.2f} | "
                     f"{r['speedup_vs_fp32_b1']:.2f}x | {r['p50_ms_b4']:.2f} | {r['p99_ms_b4']:.2f} | "
                     f"{r['speedup_vs_fp32_b4']:.2f}x |")
    atomic_write_text(Path(args.json).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
