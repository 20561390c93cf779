"""Open-set objects from real negative images: textured crops of images that hold no target class.

NWPU VHR-10's 120 negative images show the same scenes as its positives (roads, buildings, fields, water) with no
object of the ten classes. Cropping them gives real open-set objects for ODNL / Open-sampling
(``loss.open_set.source: <folder>``; ``ghostq.detect.data.open_set_paste`` pastes them as opaque rectangles).
From each image ``candidates`` random square windows (side drawn from ``sizes`` pixels, native resolution) are
scored by their texture (mean gradient magnitude of the grey image) and the ``per_image`` most textured, mutually
non-overlapping ones are kept: buildings, containers and road junctions rather than empty field or water. Use
the train split's negatives only, so val negatives stay unseen.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ghostq.core.atomic import atomic_write_bytes
from ghostq.core.errors import GhostqError
from ghostq.core.image_io import load_image
from ghostq.core.records import ImageRecord


def texture(grey: np.ndarray) -> float:
    """Mean gradient magnitude of a grey image (H x W, float)."""
    gy, gx = np.gradient(grey.astype(np.float32))
    return float(np.hypot(gx, gy).mean())


def pick_windows(
    image: np.ndarray, per_image: int, sizes: tuple[int, int], candidates: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """(x, y, side) of the most textured, mutually non-overlapping square windows of ``image`` (H x W x C)."""
    h, w = image.shape[:2]
    grey = image[..., :3].astype(np.float32).mean(-1)
    scored = []
    for _ in range(candidates):
        side = int(rng.integers(sizes[0], sizes[1] + 1))
        side = min(side, h, w)
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        scored.append((texture(grey[y : y + side, x : x + side]), x, y, side))
    kept: list[tuple[int, int, int]] = []
    for _, x, y, side in sorted(scored, key=lambda t: -t[0]):
        if all(x >= kx + ks or kx >= x + side or y >= ky + ks or ky >= y + side for kx, ky, ks in kept):
            kept.append((x, y, side))
        if len(kept) == per_image:
            break
    return kept


def negative_crops(
    records: list[ImageRecord],
    out_dir: str | Path,
    per_image: int = 4,
    sizes: tuple[int, int] = (32, 128),
    candidates: int = 24,
    seed: int = 0,
) -> list[Path]:
    """Write ``per_image`` textured crops of every negative record to ``out_dir`` as PNG; returns their paths."""
    if per_image < 1 or candidates < per_image:
        raise GhostqError(f"negative crops: need 1 <= per_image <= candidates, got {per_image} and {candidates}")
    if not 2 <= sizes[0] <= sizes[1]:
        raise GhostqError(f"negative crops: sizes must be 2 <= min <= max pixels, got {sizes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k, rec in enumerate(records):
        if rec.num_objects:
            raise GhostqError(f"{rec.path}: holds {rec.num_objects} objects; open-set crops need negative images")
        image = load_image(rec.path)
        for j, (x, y, side) in enumerate(pick_windows(image, per_image, sizes, candidates, rng)):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image[y : y + side, x : x + side, :3])).save(buf, format="PNG")
            stem = Path(rec.file_name).stem.replace(" ", "_")
            paths.append(atomic_write_bytes(out / f"{k:04d}_{stem}_{j}.png", buf.getvalue()))
    return paths
