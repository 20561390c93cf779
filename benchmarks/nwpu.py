"""NWPU VHR-10, the reference benchmark: every model of a `ghostq run configs/nwpu.yaml` scored on the recorded
val split, with AP by object size and paired bootstrap intervals for each difference, plus the run's latency.

Rows: FP32 (PyTorch), GHOST (PyTorch fake-quant), and every exported ONNX file through ONNX Runtime CPU. Each row's
detections are kept in `<run>/bench/val_dets_<row>.json` (the peer benchmark compares against the FP32 ones) and
its scores in `<run>/bench/nwpu_rows/<row>.json`: a finished row is skipped on a rerun.

    ghostq run configs/nwpu.yaml data.root=../shared/nwpu_vhr10
    python benchmarks/nwpu.py --run runs/nwpu data.root=../shared/nwpu_vhr10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.detections import DecodeSettings
from ghostq.core.image_io import load_record_image
from ghostq.core.runs import package_versions
from ghostq.core.runtime import load_runtime
from ghostq.detect.bootstrap import map_difference
from ghostq.detect.data.prepare import prepare_data, split_record
from ghostq.detect.evaluate import evaluate_coco
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[1]
ONNX = ("model_fp32.onnx", "model_fp16.onnx", "model_int8.onnx", "model_int8_cpu.onnx")
PAIRS = (("fp32_torch", "ghost_torch"), ("fp32_torch", "model_fp32.onnx"), ("ghost_torch", "model_int8.onnx"),
         ("ghost_torch", "model_int8_cpu.onnx"))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (data.root=...)")
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("--run", default=str(REPO / "runs" / "nwpu"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "nwpu.json"))
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    run = Path(args.run)
    splits = prepare_data(cfg)
    split = split_record(splits, cfg.run.seed, cfg.data.val_frac)
    recorded = json.loads((run / "split.json").read_text())
    if recorded["sha256"] != split["sha256"]:
        raise SystemExit(f"{run}/split.json differs from the split of {args.config}: not the same run")
    gt = splits.val_coco()
    rows_dir = run / "bench" / "nwpu_rows"
    sources: dict[str, Any] = {"fp32_torch": run / "fp" / "best.pt", "ghost_torch": run / "ghost" / "best.pt"}
    sources.update({name: run / "export" / name for name in ONNX})
    rows: dict[str, Any] = {}
    for name, path in sources.items():
        if not Path(path).is_file():
            continue
        row_file = rows_dir / f"{name}.json"
        dets_file = run / "bench" / f"val_dets_{name.replace('.onnx', '').replace('model_', '')}.json"
        if row_file.is_file() and dets_file.is_file():
            rows[name] = json.loads(row_file.read_text())
            continue
        t0 = time.time()
        dets = torch_dets(path, splits.val) if name.endswith("_torch") else onnx_dets(path, splits.val, args.threads)
        atomic_write_json(dets_file, dets)
        rows[name] = {"source": str(path), "dets": str(dets_file), "seconds": round(time.time() - t0, 1),
                      **evaluate_coco(gt, dets)}
        atomic_write_json(row_file, rows[name])
    diffs = {}
    for a, b in PAIRS:
        if a in rows and b in rows:
            diffs[f"{b} - {a}"] = {m: map_difference(gt, rows[a]["dets"], rows[b]["dets"], m, draws=args.draws)
                                   for m in ("mAP50", "mAP50_95")}
    bench = run / "bench" / "ort_cpu.json"
    bits = run / "ghost" / "bits.json"
    result = {
        "split": {k: split[k] for k in ("sha256", "seed", "val_frac")} | {"train": len(split["train"]),
                                                                         "val": len(split["val"])},
        "config": cfg.model_dump(mode="json"), "rows": rows, "differences": diffs,
        "latency": json.loads(bench.read_text()) if bench.is_file() else None,
        "bits": {k: v for k, v in json.loads(bits.read_text()).items() if k != "layers"} if bits.is_file() else None,
        "versions": package_versions(),
    }
    atomic_write_json(args.json, result)
    atomic_write_text(Path(args.json).with_suffix(".md"), markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The README tables: per-row mAP and AP by size, then each difference with its 95% interval."""
    lines = ["| model | mAP50 | mAP50:95 | AP50 small | AP50 medium | AP50 large |", "|---|---|---|---|---|---|"]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}"

    for name, r in result["rows"].items():
        s = r["by_size"]
        lines.append(f"| {name} | {pct(r['mAP50'])} | {pct(r['mAP50_95'])} | {pct(s['small']['AP50'])} | "
                     f"{pct(s['medium']['AP50'])} | {pct(s['large']['AP50'])} |")
    first = next(iter(result["rows"].values()), None)
    if first is not None:
        shares = ", ".join(f"{k} {100 * v['gt_share']:.0f}%" for k, v in first["by_size"].items())
        lines += ["", f"Share of val objects by size: {shares}."]
    lines += ["", "| difference | mAP50 (95% CI) | mAP50:95 (95% CI) |", "|---|---|---|"]
    for name, d in result["differences"].items():
        cells = [f"{100 * d[m]['diff']:+.1f} [{100 * d[m]['ci'][0]:+.1f}, {100 * d[m]['ci'][1]:+.1f}]"
                 for m in ("mAP50", "mAP50_95")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
