"""Geometric and photometric transforms of an image with its boxes (numpy + PIL, no torch).

Conventions:
- Images are H x W x C uint8 (C = 3 RGB, or 4 = RGB + IR); boxes are xyxy in continuous pixel coordinates
  (pixel (col, row) covers [col, col+1) x [row, row+1)), kept in float64 through the transforms so that
  mapping back is exact; the dataset casts to float32 at the end.
- Every resampling goes through one function, `_paste`: the image scaled by r with its top-left corner at
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
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

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

PAD_VALUE = 114  # grey of letterbox / mosaic padding, every channel


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


@dataclass
class Sample:
    """An image with its boxes, class ids and ignore flags (difficult, or cut by augmentation)."""

    image: np.ndarray  # H x W x C uint8
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (N, 4) xyxy float64
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,) int64
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))  # (N,) bool

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        if not len(self.boxes) == len(self.labels) == len(self.ignore):
            raise ValueError("Sample: boxes, labels and ignore differ in length")
        if self.image.ndim != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Sample.image must be H x W x C uint8, got {self.image.shape} {self.image.dtype}"
            )

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


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


def _to_pil(image: np.ndarray) -> Image.Image:
    img = np.ascontiguousarray(image)
    h, w, c = img.shape
    if c == 3:
        return Image.frombuffer("RGB", (w, h), img, "raw", "RGB", 0, 1)
    if c == 4:  # CMYK: four plain 8-bit bands; RGBA would be resized premultiplied by its "alpha" (the IR)
        return Image.frombuffer("CMYK", (w, h), img, "raw", "CMYK", 0, 1)
    if c == 1:
        return Image.frombuffer("L", (w, h), img, "raw", "L", 0, 1)
    raise ValueError(f"images must have 1, 3 or 4 channels, got {c}")


def _paste(
    canvas: np.ndarray, image: np.ndarray, r: float, ox: int, oy: int, rect: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """Draw `image` scaled by r with its top-left at (ox, oy) into canvas, clipped to rect (x0, y0, x1, y1).

    Returns the integer region drawn (x0, y0, x1, y1), or None when nothing is visible. Only whole output
    pixels inside the scaled image are drawn (its right / bottom fractional pixel is left as padding).
    """
    h, w = image.shape[:2]
    x0, y0 = max(rect[0], ox), max(rect[1], oy)
    x1 = min(rect[2], ox + math.floor(w * r + 1e-6))
    y1 = min(rect[3], oy + math.floor(h * r + 1e-6))
    if x1 <= x0 or y1 <= y0:
        return None
    src = (
        max(0.0, (x0 - ox) / r),
        max(0.0, (y0 - oy) / r),
        min(float(w), (x1 - ox) / r),
        min(float(h), (y1 - oy) / r),
    )
    if r == 1.0:  # integer crop, no resampling
        canvas[y0:y1, x0:x1] = image[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return x0, y0, x1, y1
    # hand PIL only the source window plus the filter's reach (bilinear: 1 px, times 1/r when shrinking),
    # so it does not copy the whole image into its own layout: same pixels, less work
    margin = math.ceil(max(1.0, 1.0 / r)) + 1
    cx0, cy0 = max(0, math.floor(src[0]) - margin), max(0, math.floor(src[1]) - margin)
    cx1, cy1 = min(w, math.ceil(src[2]) + margin), min(h, math.ceil(src[3]) + margin)
    window = _to_pil(image[cy0:cy1, cx0:cx1])
    box = (
        src[0] - cx0,
        src[1] - cy0,
        min(float(cx1 - cx0), src[2] - cx0),
        min(float(cy1 - cy0), src[3] - cy0),
    )
    out = window.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box)
    canvas[y0:y1, x0:x1] = np.asarray(out).reshape(y1 - y0, x1 - x0, -1)
    return x0, y0, x1, y1


def rescale(image: np.ndarray, r: float) -> np.ndarray:
    """The image scaled by r (bilinear, antialiased when shrinking), floor(W*r) x floor(H*r) pixels, with the
    exact mapping x_out = x_in * r (the scale is not rounded to the pixel grid)."""
    h, w, c = image.shape
    out = np.full(
        (max(1, math.floor(h * r + 1e-6)), max(1, math.floor(w * r + 1e-6)), c), PAD_VALUE, np.uint8
    )
    _paste(out, image, r, 0, 0, (0, 0, out.shape[1], out.shape[0]))
    return out


def _place_boxes(
    s: Sample,
    r: float,
    ox: int,
    oy: int,
    region: tuple[int, int, int, int] | None,
    min_size: float,
    min_visible: float,
    cut_to_ignore: bool,
) -> Sample:
    """Boxes of s mapped by x * r + o, clipped to region; cut / small boxes handled as in the module doc.

    `s.image` is only used for its size; the returned Sample carries an empty placeholder image.
    """
    empty = np.zeros((0, 0, s.image.shape[2]), np.uint8)
    if region is None or len(s.boxes) == 0:
        return Sample(empty)
    # reference area: the box within its own image, so boxes that overhang the image are not "cut"
    ref = s.boxes.copy()
    ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, s.width)
    ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, s.height)
    ref = ref * r + np.array([ox, oy, ox, oy], dtype=np.float64)
    ref_area = (ref[:, 2] - ref[:, 0]).clip(0) * (ref[:, 3] - ref[:, 1]).clip(0)
    b = ref.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(region[0], region[2])
    b[:, [1, 3]] = b[:, [1, 3]].clip(region[1], region[3])
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    big = (bw >= min_size) & (bh >= min_size) & (bw > 0) & (bh > 0)
    visible = bw * bh >= min_visible * ref_area - 1e-9
    keep = big if cut_to_ignore else big & visible
    ignore = s.ignore | ~visible
    return Sample(empty, b[keep], s.labels[keep], ignore[keep])


def _canvas(size: int, channels: int) -> np.ndarray:
    return np.full((size, size, channels), PAD_VALUE, dtype=np.uint8)


def letterbox(s: Sample, size: int, center: bool = True) -> tuple[Sample, float, tuple[int, int]]:
    """Scale to fit a size x size square keeping the aspect (up or down), pad grey 114.

    Returns the sample, the ratio and (pad_x, pad_y): x_in = x_orig * ratio + pad_x. The pad is centred
    (integer, floor) or top-left (0, 0). Boxes are clipped to the image; empty ones are dropped, none else.
    """
    r = size / max(s.width, s.height)
    nw, nh = math.floor(s.width * r + 1e-6), math.floor(s.height * r + 1e-6)
    pad = ((size - nw) // 2, (size - nh) // 2) if center else (0, 0)
    canvas = _canvas(size, s.image.shape[2])
    region = _paste(canvas, s.image, r, pad[0], pad[1], (0, 0, size, size))
    placed = _place_boxes(s, r, pad[0], pad[1], region, 0.0, 0.0, False)
    return Sample(canvas, placed.boxes, placed.labels, placed.ignore), r, pad


def unletterbox_boxes(boxes: np.ndarray, ratio: float, pad: tuple[float, float]) -> np.ndarray:
    """Map boxes from letterboxed input pixels back to the original image: (x - pad_x) / ratio."""
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[..., [0, 2]] = (out[..., [0, 2]] - pad[0]) / ratio
    out[..., [1, 3]] = (out[..., [1, 3]] - pad[1]) / ratio
    return out


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
    canvas = _canvas(size, s.image.shape[2])
    region = _paste(canvas, s.image, r, ox, oy, (0, 0, size, size))
    placed = _place_boxes(s, r, ox, oy, region, cfg.min_size, cfg.min_visible, cfg.cut_to_ignore)
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
    canvas = _canvas(size, channels)
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
        region = _paste(canvas, s.image, r, ox, oy, cell)
        parts.append(_place_boxes(s, r, ox, oy, region, cfg.min_size, cfg.min_visible, cfg.cut_to_ignore))
    return Sample(
        canvas,
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.ignore for p in parts]),
    )
