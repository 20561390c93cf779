"""Tiled prediction without torch: tile windows, merging across tiles, and the result files.

Used by prediction with any runtime (:mod:`ghostq.deploy.predict`, the PyTorch reference included) and by
evaluation's result files, so every path cuts, merges and writes alike, in :class:`ghostq.core.detections.Detections`.

A large aerial image (DOTA: up to ~4000 px) is cut into overlapping tiles (DOTA_devkit windows,
:func:`tile_windows`); each tile is letterboxed to the network input, its detections
are shifted back to image pixels, and all tiles' detections are merged with class-wise NMS. A box that touches
an interior tile edge is usually a cut piece of an object that a neighbouring tile sees whole: in NMS an uncut
box always ranks before a cut one, and after NMS such a piece is dropped when a different, uncut same-class
detection contains most of it.

Outputs: a PNG per image with class-coloured boxes, COCO results json (image_id = position + 1,
category_id = class + 1, bbox xywh), DOTA Task2 (horizontal) files `Task2_<class>.txt`. Images are named by
their path relative to the inputs' common folder (`a/x.png` and `b/x.png` stay apart), and an output folder
that holds inputs is refused, so a drawn PNG never replaces an input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_path, atomic_write_json
from ghostq.core.detections import Detections
from ghostq.core.errors import GhostqError
from ghostq.core.image_io import load_image, load_ir
from ghostq.core.nms_fast import batched_nms_fast

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
EDGE_MARGIN = 2.0  # px: a box this close to an interior tile edge counts as cut by it
CONTAINED = 0.8  # share of a cut box's area inside a kept same-class box for the cut box to go
CUT_PENALTY = 2.0  # subtracted from a cut box's score for the NMS order only (scores lie in [0, 1])
CHUNK = 256  # cut boxes tested at once against the uncut ones (drop_cut_pieces)
Window = tuple[int, int, int, int]
DetectFn = Callable[[np.ndarray], Detections]


@dataclass
class ImageDetections:
    """Detections of one image in its own pixels (numpy), with the image's name and size (for the result files)."""

    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_id: str = ""  # the DOTA image id and the PNG's name without .png; default: the file name's stem

    def rows(self) -> Iterator[tuple[list[float], float, int]]:
        """(xyxy, score, class id) per detection."""
        return Detections(self.boxes, self.scores, self.labels).rows()


def tile_windows(width: int, height: int, tile: int = 1024, overlap: int = 200) -> list[Window]:
    """Windows (x0, y0, x1, y1), x1/y1 exclusive, covering the image; x outer loop like DOTA_devkit."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise GhostqError(f"tiling: need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}")
    if width <= 0 or height <= 0:
        raise GhostqError(f"tiling: image size must be positive, got {width}x{height}")
    xs, ys = _starts(width, tile, tile - overlap), _starts(height, tile, tile - overlap)
    return [(x, y, min(x + tile, width), min(y + tile, height)) for x in xs for y in ys]


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    return [*range(0, length - tile, stride), length - tile]


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted) in the folders given; a file met twice is listed once."""
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
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def image_names(paths: list[Path]) -> list[tuple[str, str]]:
    """Unique (file name, image id) per image: its path relative to the inputs' common folder ("a/x.png"),
    and that without the suffix ("a/x", the DOTA id and the PNG name); the suffix stays where two ids clash."""
    absolute = [Path(os.path.normpath(p.absolute())) for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    names = [p.relative_to(root).as_posix() for p in absolute]
    ids = [str(PurePosixPath(n).with_suffix("")) for n in names]
    clash = {i for i in ids if ids.count(i) > 1}
    ids = [n if i in clash else i for n, i in zip(names, ids, strict=True)]
    first: dict[str, Path] = {}
    for path, image_id in zip(paths, ids, strict=True):
        if image_id in first:
            raise GhostqError(f"{path}: its result name {image_id!r} is also that of {first[image_id]}; rename one")
        first[image_id] = path
    return list(zip(names, ids, strict=True))


def check_output_folder(paths: list[Path], out_dir: Path) -> None:
    """Refuse an output folder that is a file or holds input images: a drawn PNG must never replace an input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GhostqError(f"{out_dir}: the output folder is an existing file; give a folder (--out DIR)")
    out = out_dir.resolve()
    for path in paths:
        if path.resolve().is_relative_to(out):
            raise GhostqError(
                f"{out_dir}: the output folder holds input images ({path}); choose a folder outside the inputs"
            )


def find_ir(path: Path) -> Path:
    """The infrared partner of an RGB image: VEDAI `_co` -> `_ir`, else `<stem>_ir<suffix>` beside it."""
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


def load_input_image(path: Path, in_channels: int) -> np.ndarray:
    """H x W x in_channels uint8: RGB, or RGB + the infrared image found beside it (:func:`find_ir`)."""

    image = load_image(path)
    if in_channels == 4:
        ir = load_ir(find_ir(path))
        if ir.shape[:2] != image.shape[:2]:
            raise GhostqError(
                f"{path}: infrared image is {ir.shape[1]}x{ir.shape[0]}, RGB is {image.shape[1]}x{image.shape[0]}"
            )
        image = np.concatenate([image, ir.reshape(ir.shape[0], ir.shape[1], -1)[..., :1]], axis=2)
    elif in_channels != 3:
        raise GhostqError(f"models with {in_channels} input channels are not supported (3 = RGB, 4 = RGB + IR)")
    return image


def prediction_windows(width: int, height: int, tile: int | None, overlap: int) -> list[Window]:
    """Tile windows (x0, y0, x1, y1) of an image; one window (the whole image) without tiling or when it fits."""
    if tile is None or (width <= tile and height <= tile):
        return [(0, 0, width, height)]

    return [tuple(int(v) for v in w) for w in tile_windows(width, height, tile, overlap)]


def to_image_frame(
    boxes: np.ndarray, ratio: float, pad: tuple[float, float], window: Window, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one tile from letterboxed input pixels to image pixels (float32, clipped to the tile), and
    whether each one touches an interior tile edge (a cut piece)."""
    x0, y0, x1, y1 = window
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    offset = np.array([pad[0], pad[1], pad[0], pad[1]], np.float32)
    b = (b - offset) / np.float32(ratio)
    b[:, 0::2] = b[:, 0::2].clip(0, x1 - x0) + x0
    b[:, 1::2] = b[:, 1::2].clip(0, y1 - y0) + y0
    cut = np.zeros(len(b), bool)
    for edge, coord, interior in (
        (x0, b[:, 0], x0 > 0),
        (y0, b[:, 1], y0 > 0),
        (x1, b[:, 2], x1 < width),
        (y1, b[:, 3], y1 < height),
    ):
        if interior:
            cut |= np.abs(coord - edge) <= EDGE_MARGIN
    return b, cut


def merge_tiles(dets: Detections, cut: np.ndarray, iou_threshold: float, max_det: int) -> Detections:
    """All tiles' detections (image pixels) -> class-wise NMS (uncut boxes rank first), cut pieces covered by
    an uncut same-class box dropped, at most ``max_det`` kept, highest score first."""
    boxes, scores, labels = dets.boxes, dets.scores, dets.labels
    order_scores = scores.astype(np.float32) - np.float32(CUT_PENALTY) * cut.astype(np.float32)
    keep = batched_nms_fast(boxes, order_scores, labels, iou_threshold)
    boxes, scores, labels, cut = boxes[keep], scores[keep], labels[keep], cut[keep]
    keep = drop_cut_pieces(boxes, labels, cut)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    order = np.argsort(-scores, kind="stable")[:max_det]
    return Detections(boxes[order], scores[order], labels[order])


def drop_cut_pieces(boxes: np.ndarray, labels: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Indices to keep: a cut box goes when a different, uncut same-class box holds most of its area.

    Only cut boxes are tested, against the uncut boxes of their class, in chunks of CHUNK rows: memory stays
    O(CHUNK x n) where a full pairwise matrix of a dense 2560-px scene (~20,000 boxes) would need gigabytes."""
    n = len(boxes)
    if n == 0 or not cut.any():
        return np.arange(n)
    covered = np.zeros(n, bool)
    cut_idx, whole_idx = np.flatnonzero(cut), np.flatnonzero(~cut)
    for label in np.unique(labels[cut_idx]):
        rows, cols = cut_idx[labels[cut_idx] == label], whole_idx[labels[whole_idx] == label]
        if len(cols) == 0:
            continue
        rows = rows[np.argsort(boxes[rows, 0], kind="stable")]  # chunks of pieces in narrow x strips
        others = boxes[cols]
        others = others[np.argsort(others[:, 0], kind="stable")]
        for start in range(0, len(rows), CHUNK):
            r = rows[start : start + CHUNK]
            piece = boxes[r]
            # only uncut boxes reaching into the chunk's x range can overlap it (no overlap: not covered)
            near = others[: np.searchsorted(others[:, 0], piece[:, 2].max(), side="left")]
            near = near[near[:, 2] > piece[:, 0].min()]
            if len(near) == 0:
                continue
            iw = np.minimum(piece[:, None, 2], near[None, :, 2]) - np.maximum(piece[:, None, 0], near[None, :, 0])
            ih = np.minimum(piece[:, None, 3], near[None, :, 3]) - np.maximum(piece[:, None, 1], near[None, :, 1])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            area = np.prod(np.clip(piece[:, 2:] - piece[:, :2], 0, None), axis=-1)
            covered[r] = (inter / np.maximum(area, 1e-6)[:, None] >= CONTAINED).any(1)  # share inside each
    return np.flatnonzero(~covered)


def coco_results(dets: list[ImageDetections], with_file_name: bool = True) -> list[dict[str, Any]]:
    """COCO results (image_id = position + 1, category_id = class + 1, bbox xywh), file names optional."""
    out = []
    for image_id, d in enumerate(dets, start=1):
        for (x1, y1, x2, y2), score, label in d.rows():
            row = {"image_id": image_id, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            if with_file_name:
                row["file_name"] = d.file_name
            out.append(row)
    return out


def write_dota_results(dets: list[ImageDetections], classes: tuple[str, ...], out_dir: Path) -> list[Path]:
    """DOTA Task2 (horizontal) result files: `Task2_<class>.txt`, lines `image score x1 y1 x2 y2`."""
    lines: dict[int, list[str]] = {}
    for d in dets:
        stem = d.image_id or Path(d.file_name).stem
        for (x1, y1, x2, y2), score, label in d.rows():
            lines.setdefault(int(label), []).append(f"{stem} {score:.4f} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}")
    paths = []
    for label, rows in sorted(lines.items()):
        name = classes[label].replace(" ", "-") if label < len(classes) else f"class{label}"
        path = out_dir / f"Task2_{name}.txt"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def draw_detections(
    image: np.ndarray, det: ImageDetections, classes: tuple[str, ...], path: Path, min_score: float = 0.3
) -> Path:
    """PNG of the image (RGB channels) with class-coloured boxes and labels above `min_score`."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(im)
    for (x1, y1, x2, y2), score, label in det.rows():
        if score < min_score:
            continue
        color = _PALETTE[int(label) % len(_PALETTE)]
        name = classes[int(label)] if int(label) < len(classes) else str(label)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        draw.text((x1 + 2, max(0, y1 - 11)), f"{name} {score:.2f}", fill=color)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path


def predict_files(
    detect: DetectFn,
    paths: list[Path],
    classes: tuple[str, ...],
    in_channels: int,
    out_dir: Path,
    progress: Callable[[], Any] | None = None,
    draw_min_score: float = 0.3,
) -> dict[str, Any]:
    """Run ``detect(image) -> Detections`` (image pixels) on every image; write `<id>.png` with boxes,
    `detections.json` (COCO results) and `dota/Task2_<class>.txt`; return a summary. Images are named by their
    path relative to the inputs' common folder (:func:`image_names`), so equal file names never merge."""
    check_output_folder(paths, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ImageDetections] = []
    for path, (name, image_id) in zip(paths, image_names(paths), strict=True):
        image = load_input_image(path, in_channels)
        found = detect(image)
        det = ImageDetections(name, image.shape[1], image.shape[0], found.boxes, found.scores, found.labels, image_id)
        results.append(det)
        draw_detections(image, det, classes, out_dir / f"{image_id}.png", draw_min_score)
        if progress is not None:
            progress()
    coco = coco_results(results)
    atomic_write_json(out_dir / "detections.json", coco)
    dota_files = write_dota_results(results, classes, out_dir / "dota")
    return {
        "images": len(results),
        "detections": len(coco),
        "json": str(out_dir / "detections.json"),
        "dota": [str(p) for p in dota_files],
    }
