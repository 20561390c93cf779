"""The exported incrementally extended model: `ghostq export --model acil_5phase.pt --calib DIR` (FP32 and the
INT8 files from a min-max PTQ on 32 train images), each scored through ONNX Runtime CPU on the val split and
compared with its torch model (paired bootstrap, 1000 draws, seed 0)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostq.core.atomic import atomic_write_json
from ghostq.detect.bootstrap import map_difference
from ghostq.detect.evaluate import evaluate_coco

CALIB_IMAGES = 32
FILES = ("model_fp32.onnx", "model_int8.onnx", "model_int8_cpu.onnx")


def calib_folder(train: list, out: Path) -> Path:
    """Copies of CALIB_IMAGES train images, evenly spaced (the export reads calibration images from a folder)."""
    out.mkdir(parents=True, exist_ok=True)
    picks = np.unique(np.linspace(0, len(train) - 1, CALIB_IMAGES).round().astype(int))
    for i in picks:
        src = Path(train[int(i)].path)
        dst = out / f"{int(i):04d}_{src.name}"
        if not dst.is_file():
            shutil.copyfile(src, dst)
    return out


def export_check(bench: Any, checkpoint: Path, threads: int) -> dict[str, Any]:
    """Torch vs ONNX FP32 / INT8 mAP50 of the extended model on the val split."""
    from nwpu import onnx_dets

    from ghostq.core.export_config import ExportConfig
    from ghostq.detect.checkpoint import checkpoint_spec, load_detector
    from ghostq.detect.inference import make_eval_loader, predict_loader
    from ghostq.export.checkpoint_export import export_checkpoint

    model, payload = load_detector(checkpoint)
    spec = checkpoint_spec(payload)
    loader = make_eval_loader(bench.splits.val, spec.img_size, spec.in_channels, workers=0)
    torch_dets = predict_loader(model, loader, spec, torch.device("cpu"))
    atomic_write_json(bench.rows / "dets_export_torch.json", torch_dets)
    torch_map = evaluate_coco(bench.gt, torch_dets)["mAP50"]
    out = bench.out / "export_5phase"
    start = time.time()
    done = export_checkpoint(checkpoint, out, ExportConfig(fp16=False),
                             calib=calib_folder(bench.splits.train, bench.out / "calib"))
    export_seconds = time.time() - start
    files = []
    for name in FILES:
        path = out / name
        if not path.is_file():
            continue
        dets = onnx_dets(path, bench.splits.val, threads)
        dpath = bench.rows / f"dets_export_{path.stem}.json"
        atomic_write_json(dpath, dets)
        files.append({"file": name, "bytes": path.stat().st_size, "mAP50": evaluate_coco(bench.gt, dets)["mAP50"],
                      "diff": map_difference(bench.gt, torch_dets, dets, "mAP50", 1000, 0)})
    return {"checkpoint": str(checkpoint), "torch_mAP50": torch_map, "files": files,
            "export_seconds": round(export_seconds, 1), "messages": done.messages}
