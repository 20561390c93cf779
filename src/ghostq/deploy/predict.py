"""Tiled prediction with any registered runtime (ONNX Runtime, TensorRT engine, the PyTorch reference), numpy only.

The one predict path, whatever the model file: DOTA_devkit tile windows (:mod:`ghostq.core.tiling`), per-tile
training letterbox, the runtime's decode, detections shifted back to image pixels, class-wise NMS across tiles
where an uncut box ranks before a cut piece, cut pieces covered by an uncut same-class box dropped; a PNG with
boxes per image, COCO-results json and DOTA Task2 files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import Detections
from ghostq.core.runtime import Runtime
from ghostq.core.tiling import list_images, merge_tiles, predict_files, prediction_windows, to_image_frame
from ghostq.deploy.postprocess import decode_outputs_fast
from ghostq.deploy.preprocess import preprocess

__all__ = ["detect_image", "list_images", "predict_paths"]


def detect_image(
    runtime: Runtime,
    image: np.ndarray,
    tile: int | None = None,
    overlap: int = 200,
    batch_size: int = 8,
) -> Detections:
    """Detect on one H x W x C uint8 image, tile by tile; detections in image pixels.
    Thresholds are the runtime's ``decode`` settings; ``max_det`` bounds each network input (a tile), so a
    tiled image keeps up to ``max_det`` per tile after the merge: an image holding more objects than ``max_det``
    (~900 oil tanks in one 2560-px satellite image) is not cut to ``max_det``. A graph with a fixed batch gets
    chunks of exactly that size (the last one padded with copies, their detections ignored)."""
    info = runtime.info
    if image.ndim != 3 or image.shape[2] != info.in_channels:
        raise ValueError(f"{info.path.name} takes {info.in_channels}-channel images, got shape {image.shape}")
    height, width = image.shape[:2]
    windows = prediction_windows(width, height, tile, overlap)
    step = info.batch or batch_size
    all_boxes, all_scores, all_labels, all_cut = [], [], [], []
    for start in range(0, len(windows), step):
        chunk = windows[start : start + step]
        crops = [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in chunk]
        if info.batch is not None:
            crops += [crops[-1]] * (step - len(crops))
        batch, placements = preprocess(crops, info.img_size)
        size = info.img_size  # Runtime.infer's decoding, vectorised (same detections)
        dets = decode_outputs_fast(runtime.run(batch), runtime.decode, (size, size), batch_size=len(batch))
        for det, lb, window in zip(dets, placements, chunk, strict=False):
            boxes, cut = to_image_frame(det.boxes, lb.ratio, lb.pad, window, width, height)
            all_boxes.append(boxes)
            all_scores.append(det.scores)
            all_labels.append(det.labels)
            all_cut.append(cut)
    dets = Detections(np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_labels))
    if len(windows) > 1:
        s = runtime.decode
        dets = merge_tiles(dets, np.concatenate(all_cut), s.iou_threshold, s.max_det * len(windows))
    return dets


def predict_paths(
    runtime: Runtime,
    paths: list[Path],
    out_dir: Path,
    tile: int | None = None,
    overlap: int = 200,
    batch_size: int = 8,
    progress: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Detect on every image; write `<id>.png` with boxes, `detections.json` (COCO results), DOTA files
    (ids: paths relative to the inputs' common folder; an output folder holding inputs is refused)."""
    info = runtime.info

    def detect(image: np.ndarray) -> Detections:
        return detect_image(runtime, image, tile, overlap, batch_size)

    summary = predict_files(detect, paths, info.classes, info.in_channels, out_dir, progress=progress)
    return {**summary, "backend": runtime.backend, "model": str(info.path)}
