"""Ultralytics YOLO (YOLOv8n, YOLO11n, trained from their yaml) on exactly ghostq's NWPU VHR-10 split, scored with
ghostq's evaluator, with paired bootstrap intervals against ghostq's FP detections and interleaved ONNX latency.

Ultralytics needs torchvision, which cannot load beside ghostq's CPU torch: the script makes its own virtual
environment (`.venv-peer/`, git-ignored) with a torch + torchvision pair that installs and imports together here,
and runs `peer_yolo_worker.py` in it. Same split (ghostq's `prepare_data` of the config), input size, epochs,
batch and threads as the ghostq run. Rows are resumable: a finished model's JSON is kept and skipped.

    python benchmarks/peer_ultralytics.py --config configs/nwpu.yaml data.root=../shared/nwpu_vhr10 \
        --ghostq-run runs/nwpu --epochs 15 --imgsz 416 --batch 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_json, atomic_write_text
from ghostq.core.config import load_config
from ghostq.detect.bootstrap import map_difference
from ghostq.detect.data.prepare import DataSplits, prepare_data
from ghostq.detect.evaluate import evaluate_coco

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-peer"
PINS = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190", "onnx==1.23.2"]
MODELS = ("yolov8n.yaml", "yolo11n.yaml")


def ensure_venv(venv: Path = VENV) -> Path:
    """The peer environment's python, created and installed on first use (pip takes the pair from this disk)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import torch, torchvision, ultralytics, onnx"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    return python


def write_yolo_dataset(splits: DataSplits, out: Path) -> tuple[Path, Path, dict[str, int]]:
    """YOLO layout (images linked, labels as class cx cy w h in [0, 1]); data.yaml, the val list, path -> image id."""
    ids = {}
    for split, records in (("train", splits.train), ("val", splits.val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k, rec in enumerate(records):
            name = rec.file_name.replace("/", "__").replace(" ", "_")  # NWPU: 001.jpg is both positive and negative
            link = out / "images" / split / name
            if not link.exists():
                link.symlink_to(Path(rec.path).resolve())
            w, h = rec.width, rec.height
            lines = []
            for (x1, y1, x2, y2), c in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
                cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            (out / "labels" / split / f"{Path(name).stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            if split == "val":
                ids[str(link)] = k + 1  # DataSplits.val_coco numbers val images 1..N in order
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(splits.classes))
    data = out / "data.yaml"
    data.write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    val_list = out / "val.txt"
    val_list.write_text("\n".join(ids) + "\n")
    return data, val_list, ids


def to_coco(preds: list[dict[str, Any]], ids: dict[str, int]) -> list[dict[str, Any]]:
    """Worker predictions (original pixels, xyxy) -> COCO results on ghostq's val image ids."""
    out = []
    for p in preds:
        x1, y1, x2, y2 = p["xyxy"]
        out.append({"image_id": ids[p["path"]], "category_id": p["class"] + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": p["score"]})
    return out


def interleaved_latency(files: dict[str, Path], size: int, threads: int, rounds: int = 50) -> dict[str, Any]:
    """Batch-1 ONNX Runtime CPU latency of each file, one run of each per round (the machine is shared)."""
    import onnxruntime as ort

    from ghostq.deploy.bench import latency_stats

    sessions = {}
    for name, path in files.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as ghostq bench: idle sessions
        # that spin-wait would steal the cores from the one being timed
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        sessions[name] = (sess, {inp.name: np.random.default_rng(0).random((1, 3, size, size), np.float32)})
    times: dict[str, list[float]] = {n: [] for n in files}
    for r in range(rounds + 5):
        for name, (sess, feed) in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feed)
            if r >= 5:  # warm-up rounds
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {n: latency_stats(t, 1) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "nwpu.yaml"))
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=../shared/nwpu_vhr10")
    parser.add_argument("--ghostq-run", help="ghostq run folder: FP detections and ONNX files to compare with")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=str(REPO / "runs" / "peer_ultralytics"))
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "peer_ultralytics.json"))
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    splits = prepare_data(cfg)
    work = Path(args.work).resolve()  # absolute: Ultralytics resolves relative paths against its own folders
    data, val_list, ids = write_yolo_dataset(splits, work / "yolo_data")
    gt = splits.val_coco()
    python = ensure_venv()
    run = Path(args.ghostq_run) if args.ghostq_run else None
    ours = run / "bench" / "val_dets_fp32_torch.json" if run else None  # written by benchmarks/nwpu.py
    rows: dict[str, Any] = {}
    for model in args.models.split(","):
        row_path = work / f"{Path(model).stem}.row.json"
        dets_path = work / f"{Path(model).stem}.dets.json"
        if row_path.is_file() and dets_path.is_file():
            rows[model] = json.loads(row_path.read_text())
            continue
        out = work / Path(model).stem
        subprocess.run([str(python), str(REPO / "benchmarks" / "peer_yolo_worker.py"), "--model", model,
                        "--data", str(data), "--val-list", str(val_list), "--out", str(out),
                        "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch", str(args.batch),
                        "--threads", str(args.threads), "--seed", str(cfg.run.seed)], check=True)
        res = json.loads((out / "result.json").read_text())
        dets = to_coco(res.pop("predictions"), ids)
        atomic_write_json(dets_path, dets)
        row = {**res, "dets": str(dets_path), "ghostq_eval": evaluate_coco(gt, dets)}
        atomic_write_json(row_path, row)
        rows[model] = row
    for row in rows.values():  # paired bootstrap against ghostq's FP32 detections on the same val images
        if ours is not None and ours.is_file():
            row["vs_ghostq_fp32"] = {m: map_difference(gt, str(ours), row["dets"], metric=m)
                                     for m in ("mAP50", "mAP50_95")}
    files = {Path(m).stem: Path(r["onnx"]) for m, r in rows.items()}
    if run is not None:
        for name in ("model_fp32.onnx", "model_int8_cpu.onnx"):
            if (run / "export" / name).is_file():
                files[f"ghostq_{name[6:-5]}"] = run / "export" / name
    result = {"split": {"train": len(splits.train), "val": len(splits.val), "seed": cfg.run.seed},
              "settings": vars(args), "rows": rows,
              "latency_ms_b1": interleaved_latency(files, args.imgsz, args.threads)}
    atomic_write_json(args.json, result)
    atomic_write_text(Path(args.json).with_suffix(".md"), markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The README table: mAP by ghostq's evaluator and by Ultralytics' own val, training time, latency."""
    lines = ["| model | mAP50 (ghostq eval) | mAP50:95 | Ultralytics val mAP50 | mAP50:95 | train s | b1 p50 ms "
             "| ghostq FP32 minus it, mAP50:95 (95% CI) |", "|---|---|---|---|---|---|---|---|"]
    lat = result["latency_ms_b1"]
    for model, r in result["rows"].items():
        e, u = r["ghostq_eval"], r["ultralytics_val"]
        p50 = lat.get(Path(model).stem, {}).get("p50_ms", float("nan"))
        d = r.get("vs_ghostq_fp32", {}).get("mAP50_95")  # diff = peer - ghostq; shown as ghostq - peer
        gap = "n/a" if d is None else f"{-100 * d['diff']:+.1f} [{-100 * d['ci'][1]:+.1f}, {-100 * d['ci'][0]:+.1f}]"
        lines.append(f"| {Path(model).stem} | {100 * e['mAP50']:.1f} | {100 * e['mAP50_95']:.1f} | "
                     f"{100 * u['mAP50']:.1f} | {100 * u['mAP50_95']:.1f} | {r['train_seconds']:.0f} | {p50:.2f} "
                     f"| {gap} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
