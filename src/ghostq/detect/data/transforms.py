"""Geometric and photometric transforms of an image with its boxes (numpy + PIL, no torch).

Conventions:
- Images are H x W x C uint8 (C = 3 RGB, or 4 = RGB + IR); boxes are xyxy in continuous pixel coordinates
  (pixel (col, row) covers [col, col+1) x [row, row+1)), kept in float64 through the transforms so that
  mapping back is exact; the dataset casts to float32 at the end.
- Every resampling goes through one function, `paste_scaled`: the image scaled by r with its top-left corner at
  integer (ox, oy), i.e. x_out = x_in * r + ox, drawn with PIL's bilinear resize of a sub-pixel source box,
  so pixels and boxes follow the same exact mapping (no rounding of the scale).
- Padding is grey 114 on every channel (IR included).
- Letterbox pads centred by default (top-left with center=False); a box maps back with
  x_orig = (x - pad_x) / ratio, y_orig = (y - pad_y) / ratio (`unletterbox_boxes`).
- rot90 with k turns the image k times counter-clockwise, as np.rot90 does.
- Randomness comes only from the numpy Generator passed in.
- Boxes cut by a crop or a mosaic cell: clipped; kept when at least `min_visible` of their area (within the
  image) is still visible and they are at least `min_size` px wide and high; a box below `min_visible` but
  still `min_size` big becomes an ignore box (`cut_to_ignore`, default) instead of being dropped, so the
  detector is not punished for finding a partly visible object. Difficult boxes stay ignore boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ghostq.core.letterbox import (
    PAD_VALUE,
    Sample,
    grey_canvas,
    letterbox,
    paste_scaled,
    place_boxes,
    rescale,
    unletterbox_boxes,
)

__all__ = [
    "PAD_VALUE",
    "AugmentConfig",
    "Sample",
    "hflip",
    "hsv_jitter",
    "letterbox",
    "mosaic",
    "random_flip_rot90",
    "random_scale_place",
    "rescale",
    "rot90",
    "unletterbox_boxes",
    "vflip",
]



@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations; each is applied with its own probability. Defaults follow YOLOv5 / YOLOX."""

    mosaic_prob: float = 0.5  # prob. that an item is a 4-image mosaic instead of one image
    mosaic_center: tuple[float, float] = (0.25, 0.75)  # mosaic centre range, fraction of the input size
    scale_prob: float = 1.0  # prob. of a random resize factor (else 1 = plain letterbox scale)
    scale_range: tuple[float, float] = (0.6, 1.4)  # resize factor relative to the letterbox scale
    hflip_prob: float = 0.5  # prob. of a horizontal flip
    vflip_prob: float = 0.5  # prob. of a vertical flip (aerial images have no "up")
    rot90_prob: float = 0.75  # prob. of a 90-degree rotation, k uniform in 1..3 (0.75 = k uniform in 0..3)
    hsv_prob: float = 1.0  # prob. of HSV jitter (RGB channels only, never IR)
    hsv_h: float = 0.015  # hue shift amplitude, fraction of the hue circle (additive)
    hsv_s: float = 0.7  # saturation gain amplitude: gain uniform in 1 +- hsv_s
    hsv_v: float = 0.4  # value gain amplitude: gain uniform in 1 +- hsv_v
    min_visible: float = 0.25  # a cut box keeps at least this fraction of its area, else ignore / drop
    min_size: float = 2.0  # boxes narrower or lower than this (input px) after augmentation are dropped
    cut_to_ignore: bool = True  # cut boxes below min_visible become ignore boxes (False: dropped)

    def __post_init__(self) -> None:
        for name in (
            "mosaic_prob",
            "scale_prob",
            "hflip_prob",
            "vflip_prob",
            "rot90_prob",
            "hsv_prob",
            "min_visible",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must lie in [0, 1], got {value}")
        for name in ("hsv_h", "hsv_s", "hsv_v", "min_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(
                f"AugmentConfig.scale_range must satisfy 0 < low <= high, got {self.scale_range}"
            )
        lo, hi = self.mosaic_center
        if not 0 < lo <= hi < 1:
            raise ValueError(
                f"AugmentConfig.mosaic_center must satisfy 0 < low <= high < 1, got {self.mosaic_center}"
            )




# ----------------------------------------------------------------------------------------------- flips, rot90


def hflip(s: Sample) -> Sample:
    """Mirror left-right: x -> W - x."""
    b = s.boxes.copy()
    b[:, [0, 2]] = s.width - s.boxes[:, [2, 0]]
    return Sample(s.image[:, ::-1], b, s.labels, s.ignore)


def vflip(s: Sample) -> Sample:
    """Mirror top-bottom: y -> H - y."""
    b = s.boxes.copy()
    b[:, [1, 3]] = s.height - s.boxes[:, [3, 1]]
    return Sample(s.image[::-1], b, s.labels, s.ignore)


def rot90(s: Sample, k: int) -> Sample:
    """Rotate k times by 90 degrees counter-clockwise (np.rot90): one turn maps (x, y) -> (y, W - x)."""
    k %= 4
    b, w, h = s.boxes, s.width, s.height
    for _ in range(k):
        x1, y1, x2, y2 = b.T
        b = np.stack([y1, w - x2, y2, w - x1], axis=1)
        w, h = h, w
    return Sample(np.rot90(s.image, k, axes=(0, 1)), b, s.labels, s.ignore)


def random_flip_rot90(s: Sample, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """Horizontal flip, vertical flip, then a 90-degree rotation, each with its probability."""
    if rng.random() < cfg.hflip_prob:
        s = hflip(s)
    if rng.random() < cfg.vflip_prob:
        s = vflip(s)
    if rng.random() < cfg.rot90_prob:
        s = rot90(s, int(rng.integers(1, 4)))
    return s


# ----------------------------------------------------------------------------------------------- photometric


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, h: float, s: float, v: float) -> None:
    """In place on channels 0..2 only (channel 3, IR, is never touched): hue shifted by uniform(-h, h) of the
    circle, saturation and value multiplied by uniform(1-s, 1+s) and uniform(1-v, 1+v), via PIL's 8-bit HSV
    (lossy by a few levels, as OpenCV's 8-bit HSV in YOLOv5)."""
    dh = rng.uniform(-h, h)
    gs = 1.0 + rng.uniform(-s, s)
    gv = 1.0 + rng.uniform(-v, v)
    x = np.arange(256, dtype=np.float64)
    lut = np.concatenate(
        [
            (x + round(dh * 256)) % 256,
            np.clip(np.rint(x * gs), 0, 255),
            np.clip(np.rint(x * gv), 0, 255),
        ]
    ).astype(np.uint8)
    rgb = np.ascontiguousarray(image[..., :3])
    out = Image.fromarray(rgb).convert("HSV").point(lut.tolist()).convert("RGB")
    image[..., :3] = np.asarray(out)


# ----------------------------------------------------------------------------------------------- resampling
















def _draw_scale(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    if rng.random() < cfg.scale_prob:
        return float(rng.uniform(*cfg.scale_range))
    return 1.0


def random_scale_place(
    s: Sample, size: int, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[Sample, float, tuple[int, int]]:
    """Scale jitter then a random position: resize by letterbox ratio x factor, then pad (image smaller than
    size, random offset) or crop (larger, random window). Returns the sample, the ratio and the offset."""
    r = size / max(s.width, s.height) * _draw_scale(rng, cfg)
    ox = _random_offset(rng, s.width * r, 0, size)
    oy = _random_offset(rng, s.height * r, 0, size)
    canvas = grey_canvas(size, s.image.shape[2])
    region = paste_scaled(canvas, s.image, r, ox, oy, (0, 0, size, size))
    placed = place_boxes(s, r, ox, oy, region, cfg.min_size, cfg.min_visible, cfg.cut_to_ignore)
    return Sample(canvas, placed.boxes, placed.labels, placed.ignore), r, (ox, oy)


def _random_offset(rng: np.random.Generator, extent: float, lo: int, hi: int) -> int:
    """Integer offset of a span of length `extent` in the cell [lo, hi): inside it when it fits, else a
    random window of the span covering the cell."""
    free = hi - lo - extent
    if free >= 0:
        return lo + int(rng.integers(0, math.floor(free + 1e-6) + 1))
    return int(rng.integers(math.ceil(hi - extent), lo + 1))


def mosaic(samples: list[Sample], size: int, rng: np.random.Generator, cfg: AugmentConfig) -> Sample:
    """YOLO-style mosaic of 4 samples on a size x size canvas around a random centre (xc, yc).

    Sample i fills cell i (top-left, top-right, bottom-left, bottom-right of the centre), scaled by its
    letterbox ratio times its own scale jitter, so objects keep the size they have without mosaic. An image
    larger than its cell shows a random window of it; a smaller one touches the centre, the rest is padding.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs 4 samples, got {len(samples)}")
    channels = samples[0].image.shape[2]
    xc = int(round(rng.uniform(*cfg.mosaic_center) * size))
    yc = int(round(rng.uniform(*cfg.mosaic_center) * size))
    cells = [(0, 0, xc, yc), (xc, 0, size, yc), (0, yc, xc, size), (xc, yc, size, size)]
    canvas = grey_canvas(size, channels)
    parts = []
    for i, (s, cell) in enumerate(zip(samples, cells, strict=True)):
        if s.image.shape[2] != channels:
            raise ValueError("mosaic samples differ in channel count")
        r = size / max(s.width, s.height) * _draw_scale(rng, cfg)
        nw, nh = s.width * r, s.height * r
        left, top = i in (0, 2), i in (0, 1)  # the cell lies left of / above the centre
        ox = (
            _random_offset(rng, nw, cell[0], cell[2])
            if nw >= cell[2] - cell[0]
            else (math.ceil(cell[2] - nw) if left else cell[0])
        )
        oy = (
            _random_offset(rng, nh, cell[1], cell[3])
            if nh >= cell[3] - cell[1]
            else (math.ceil(cell[3] - nh) if top else cell[1])
        )
        region = paste_scaled(canvas, s.image, r, ox, oy, cell)
        parts.append(place_boxes(s, r, ox, oy, region, cfg.min_size, cfg.min_visible, cfg.cut_to_ignore))
    return Sample(
        canvas,
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.ignore for p in parts]),
    )
