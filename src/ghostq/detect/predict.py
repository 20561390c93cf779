"""Prediction on images of any size with a PyTorch detector: tiled for large images, merged across tiles.

A large aerial image (DOTA: up to ~4000 px) is cut into overlapping tiles (DOTA_devkit windows); each tile is
letterboxed to the network input, its detections are shifted back to image pixels, and all tiles' detections
are merged with class-wise NMS. A box that touches an interior tile edge is usually a cut piece of an object
that a neighbouring tile sees whole: after NMS such a piece is dropped when a same-class detection contains
most of it, and in NMS an uncut box always ranks before a cut one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostq.atomic import atomic_path, atomic_write_json
from ghostq.config import EvalConfig
from ghostq.detect.data.transforms import Sample, letterbox
from ghostq.detect.nms import batched_nms
from ghostq.detect.postprocess import postprocess, scale_boxes_to_original

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
EDGE_MARGIN = 2.0  # px: a box this close to an interior tile edge counts as cut by it
CONTAINED = 0.8  # share of a cut box's area inside a kept same-class box for the cut box to go


@dataclass
class ImageDetections:
    """Detections of one image in its own pixels (numpy): boxes [K,4] xyxy, scores [K], labels [K]."""

    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def rows(self) -> Iterator[tuple[list[float], float, int]]:
        """(xyxy, score, class id) per detection."""
        return zip(self.boxes.tolist(), self.scores.tolist(), self.labels.astype(int).tolist(), strict=True)


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted) in the folders given."""
    from ghostq.errors import GhostqError

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise GhostqError(f"{p}: no such image or folder")
    if not out:
        raise GhostqError(f"no images found in {', '.join(str(i) for i in inputs)}")
    return out


def _windows(width: int, height: int, tile: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    if tile is None or (width <= tile and height <= tile):
        return [(0, 0, width, height)]
    from ghostq.detect.data.tiling import tile_windows

    return [tuple(int(v) for v in w) for w in tile_windows(width, height, tile, overlap)]


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect on one H x W x C uint8 image, tile by tile; returns boxes, scores, labels in image pixels."""
    model.eval()
    height, width = image.shape[:2]
    windows = _windows(width, height, tile, overlap)
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
        )
        for det, (ratio, pad), (x0, y0, x1, y1) in zip(dets, metas, chunk, strict=True):
            boxes = scale_boxes_to_original(det.boxes.float().cpu(), ratio, pad)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, x1 - x0) + x0
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, y1 - y0) + y0
            cut = torch.zeros(len(boxes), dtype=torch.bool)
            for edge, coord, is_interior in (
                (x0, boxes[:, 0], x0 > 0),
                (y0, boxes[:, 1], y0 > 0),
                (x1, boxes[:, 2], x1 < width),
                (y1, boxes[:, 3], y1 < height),
            ):
                if is_interior:
                    cut |= (coord - edge).abs() <= EDGE_MARGIN
            all_boxes.append(boxes)
            all_scores.append(det.scores.float().cpu())
            all_labels.append(det.labels.cpu())
            all_cut.append(cut)
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    labels, cut = torch.cat(all_labels), torch.cat(all_cut)
    if len(windows) > 1:
        # uncut boxes rank before cut pieces in NMS: the whole view of an object wins over a partial one
        keep = batched_nms(boxes, scores - 2.0 * cut.float(), labels, eval_cfg.iou_threshold)
        boxes, scores, labels, cut = boxes[keep], scores[keep], labels[keep], cut[keep]
        keep = _drop_cut_pieces(boxes, labels, cut)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        order = scores.argsort(descending=True)[: eval_cfg.max_det]
        boxes, scores, labels = boxes[order], scores[order], labels[order]
    return boxes.numpy(), scores.numpy(), labels.numpy()


def _drop_cut_pieces(boxes: torch.Tensor, labels: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Indices to keep: a cut box goes when a different, uncut same-class box holds most of its area."""
    n = len(boxes)
    if n == 0 or not bool(cut.any()):
        return torch.arange(n)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    inside = inter / area.clamp(min=1e-6)[:, None]  # [i, j]: share of box i inside box j
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool)
    covered = ((inside >= CONTAINED) & same & ~eye & ~cut[None, :]).any(1)
    return torch.nonzero(~(cut & covered)).squeeze(1)


def coco_results(dets: list[ImageDetections], with_file_name: bool = True) -> list[dict[str, Any]]:
    """COCO results (image_id = position + 1, category_id = class + 1, bbox xywh), file names optional."""
    out = []
    for image_id, d in enumerate(dets, start=1):
        for (x1, y1, x2, y2), score, label in d.rows():
            row = {
                "image_id": image_id,
                "category_id": label + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
            if with_file_name:
                row["file_name"] = d.file_name
            out.append(row)
    return out


def write_dota_results(dets: list[ImageDetections], classes: tuple[str, ...], out_dir: Path) -> list[Path]:
    """DOTA Task2 (horizontal) result files: `Task2_<class>.txt`, lines `image score x1 y1 x2 y2`."""
    lines: dict[int, list[str]] = {}
    for d in dets:
        stem = Path(d.file_name).stem
        for (x1, y1, x2, y2), score, label in d.rows():
            lines.setdefault(int(label), []).append(f"{stem} {score:.4f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}")
    paths = []
    for label, rows in sorted(lines.items()):
        path = out_dir / f"Task2_{classes[label]}.txt"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


def draw_detections(
    image: np.ndarray, det: ImageDetections, classes: tuple[str, ...], path: Path, min_score: float = 0.3
) -> Path:
    """PNG of the image (RGB channels) with class-coloured boxes and labels above `min_score`."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(im)
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ]
    for (x1, y1, x2, y2), score, label in det.rows():
        if score < min_score:
            continue
        color = palette[int(label) % len(palette)]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        draw.text((x1 + 2, max(0, y1 - 11)), f"{classes[int(label)]} {score:.2f}", fill=color)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path


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
) -> dict[str, Any]:
    """Detect on every image; write `<stem>.png` with boxes, `detections.json` (COCO results), DOTA files."""
    from ghostq.detect.data.image_io import load_image, load_ir

    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ImageDetections] = []
    for path in paths:
        image = load_image(path)
        if in_channels == 4:
            ir = load_ir(_find_ir(path))
            image = np.concatenate([image, ir.reshape(ir.shape[0], ir.shape[1], -1)[..., :1]], axis=2)
        boxes, scores, labels = detect_image(model, image, img_size, eval_cfg, tile, overlap, device=device)
        det = ImageDetections(path.name, image.shape[1], image.shape[0], boxes, scores, labels)
        results.append(det)
        draw_detections(image, det, classes, out_dir / f"{path.stem}.png")
        if progress is not None:
            progress()
    coco = coco_results(results)
    atomic_write_json(out_dir / "detections.json", coco)
    dota_dir = out_dir / "dota"
    dota_files = write_dota_results(results, classes, dota_dir)
    return {
        "images": len(results),
        "detections": len(coco),
        "json": str(out_dir / "detections.json"),
        "dota": [str(p) for p in dota_files],
    }


def _find_ir(path: Path) -> Path:
    """The infrared partner of an RGB image: VEDAI `_co` -> `_ir`, else `<stem>_ir<suffix>` beside it."""
    from ghostq.errors import GhostqError

    candidates = [
        path.with_name(path.name.replace("_co", "_ir")),
        path.with_name(f"{path.stem}_ir{path.suffix}"),
    ]
    for c in candidates:
        if c != path and c.is_file():
            return c
    raise GhostqError(
        f"{path}: a 4-channel model needs the infrared image beside it (looked for "
        f"{', '.join(c.name for c in candidates)})"
    )
