"""Runs inside the peer virtual environment (Ultralytics + torchvision), never in ghostq's: trains one YOLO model
from its yaml on a YOLO-format copy of the split, predicts the val images at conf 0.001, exports ONNX.

Called by `benchmarks/peer_ultralytics.py`; writes `result.json` (wall-clock, Ultralytics' own val numbers,
predictions in original pixels, the ONNX path) into `--out`. Imports nothing from ghostq.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="yolov8n.yaml or yolo11n.yaml (trained from scratch)")
    parser.add_argument("--data", required=True, help="the YOLO data.yaml")
    parser.add_argument("--val-list", required=True, help="text file: one val image path per line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from ultralytics import YOLO

    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()  # Ultralytics puts a relative project under its own runs_dir
    out.mkdir(parents=True, exist_ok=True)
    weights, timing = out / "train" / "weights" / "best.pt", out / "train_seconds.json"
    if not (weights.is_file() and timing.is_file()):  # a finished training is kept: rerun only what follows
        model = YOLO(args.model)
        t0 = time.time()
        model.train(data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=0,
                    device="cpu", pretrained=False, amp=False, seed=args.seed, deterministic=True, project=str(out),
                    name="train", exist_ok=True, plots=False, verbose=False)
        timing.write_text(json.dumps({"train_seconds": time.time() - t0, "source": "wall-clock of model.train"}))
    train_s = json.loads(timing.read_text())["train_seconds"]
    best = YOLO(str(weights))
    val = best.val(data=args.data, imgsz=args.imgsz, batch=args.batch, conf=0.001, device="cpu", plots=False,
                   verbose=False)
    paths = [p for p in Path(args.val_list).read_text().splitlines() if p]
    preds = []
    for r in best.predict(source=paths, imgsz=args.imgsz, conf=0.001, max_det=300, device="cpu", verbose=False,
                          stream=True):
        boxes = r.boxes
        for xyxy, conf, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True):
            preds.append({"path": str(r.path), "xyxy": xyxy, "score": conf, "class": int(cls)})
    onnx_path = best.export(format="onnx", imgsz=args.imgsz, opset=17, dynamic=False, simplify=False)
    result = {
        "model": args.model,
        "train_seconds": round(train_s, 1),
        "ultralytics_val": {"mAP50": float(val.box.map50), "mAP50_95": float(val.box.map)},
        "predictions": preds,
        "onnx": str(onnx_path),
        "versions": {"torch": torch.__version__, "ultralytics": __import__("ultralytics").__version__},
    }
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
