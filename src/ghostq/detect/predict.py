"""Prediction on images of any size with a PyTorch detector: tiled for large images, merged across tiles.

The torch part only: per tile, letterbox, forward, decode and NMS (:func:`ghostq.detect.postprocess.postprocess`).
Tile windows, the merge across tiles (class-wise NMS, the cut-piece rule) and the result files are torch-free
and live in :mod:`ghostq.core.tiling`, shared with the deployed runtimes (:mod:`ghostq.deploy.predict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostq.core.config import EvalConfig
from ghostq.core.letterbox import Sample, letterbox
from ghostq.core.tiling import (  # noqa: F401  (re-exported: the names callers know from here)
    IMAGE_SUFFIXES,
    ImageDetections,
    coco_results,
    draw_detections,
    list_images,
    merge_tiles,
    predict_files,
    prediction_windows,
    to_image_frame,
    write_dota_results,
)
from ghostq.detect.losses.robust import LogitClip
from ghostq.detect.postprocess import postprocess


@torch.no_grad()
def detect_image(
    model: torch.nn.Module,
    image: np.ndarray,
    img_size: int,
    eval_cfg: EvalConfig,
    tile: int | None = None,
    overlap: int = 200,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    clip: LogitClip | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect on one H x W x C uint8 image, tile by tile; returns boxes, scores, labels in image pixels."""
    model.eval()
    height, width = image.shape[:2]
    windows = prediction_windows(width, height, tile, overlap)
    head = getattr(model, "head_type", "sigmoid")
    all_boxes, all_scores, all_labels, all_cut = [], [], [], []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch, metas = [], []
        for x0, y0, x1, y1 in chunk:
            sample, ratio, pad = letterbox(Sample(np.ascontiguousarray(image[y0:y1, x0:x1])), img_size)
            batch.append(torch.from_numpy(sample.image).permute(2, 0, 1))
            metas.append((ratio, pad))
        x = torch.stack(batch).float().div_(255.0).to(device)
        dets = postprocess(
            model(x),
            score_threshold=eval_cfg.score_threshold,
            iou_threshold=eval_cfg.iou_threshold,
            max_det=eval_cfg.max_det,
            head=head,
            image_size=(img_size, img_size),
            clip=clip,
        )
        for det, (ratio, pad), window in zip(dets, metas, chunk, strict=True):
            boxes, cut = to_image_frame(det.boxes.float().cpu().numpy(), ratio, pad, window, width, height)
            all_boxes.append(boxes)
            all_scores.append(det.scores.float().cpu().numpy())
            all_labels.append(det.labels.cpu().numpy())
            all_cut.append(cut)
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    labels, cut = np.concatenate(all_labels), np.concatenate(all_cut)
    if len(windows) > 1:
        boxes, scores, labels = merge_tiles(boxes, scores, labels, cut, eval_cfg.iou_threshold, eval_cfg.max_det)
    return boxes, scores, labels


def predict_paths(
    model: torch.nn.Module,
    paths: list[Path],
    classes: tuple[str, ...],
    img_size: int,
    in_channels: int,
    eval_cfg: EvalConfig,
    out_dir: Path,
    tile: int | None = None,
    overlap: int = 200,
    device: torch.device | str = "cpu",
    progress: Any = None,
    clip: LogitClip | None = None,
) -> dict[str, Any]:
    """Detect on every image; write `<id>.png` with boxes, `detections.json` (COCO results), DOTA files
    (ids: paths relative to the inputs' common folder; an output folder holding inputs is refused)."""

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return detect_image(model, image, img_size, eval_cfg, tile, overlap, device=device, clip=clip)

    return predict_files(detect, paths, classes, in_channels, out_dir, progress=progress)
