"""The image geometry that training and deployment share (numpy + PIL, no torch): the letterbox, exact resampling.

Images are H x W x C uint8 (C = 3 RGB, or 4 = RGB + IR); boxes are xyxy in continuous pixel coordinates, float64.
Every resampling goes through `paste_scaled`: the image scaled by r with its top-left corner at integer (ox, oy),
x_out = x_in * r + ox, drawn with PIL's bilinear resize of a sub-pixel source box, so pixels and boxes follow the
same exact mapping (no rounding of the scale). Padding is grey 114 on every channel (IR included). The letterbox
pads centred by default; a box maps back with x_orig = (x - pad_x) / ratio (`unletterbox_boxes`). Deployed
inputs are made by these same functions, so they equal training inputs pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

PAD_VALUE = 114  # grey of letterbox / mosaic padding, every channel


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


def to_pil(image: np.ndarray) -> Image.Image:
    img = np.ascontiguousarray(image)
    h, w, c = img.shape
    if c == 3:
        return Image.frombuffer("RGB", (w, h), img, "raw", "RGB", 0, 1)
    if c == 4:  # CMYK: four plain 8-bit bands; RGBA would be resized premultiplied by its "alpha" (the IR)
        return Image.frombuffer("CMYK", (w, h), img, "raw", "CMYK", 0, 1)
    if c == 1:
        return Image.frombuffer("L", (w, h), img, "raw", "L", 0, 1)
    raise ValueError(f"images must have 1, 3 or 4 channels, got {c}")


def paste_scaled(
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
    window = to_pil(image[cy0:cy1, cx0:cx1])
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
    paste_scaled(out, image, r, 0, 0, (0, 0, out.shape[1], out.shape[0]))
    return out


def place_boxes(
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


def grey_canvas(size: int, channels: int) -> np.ndarray:
    return np.full((size, size, channels), PAD_VALUE, dtype=np.uint8)


def letterbox(s: Sample, size: int, center: bool = True) -> tuple[Sample, float, tuple[int, int]]:
    """Scale to fit a size x size square keeping the aspect (up or down), pad grey 114.

    Returns the sample, the ratio and (pad_x, pad_y): x_in = x_orig * ratio + pad_x. The pad is centred
    (integer, floor) or top-left (0, 0). Boxes are clipped to the image; empty ones are dropped, none else.
    """
    r = size / max(s.width, s.height)
    nw, nh = math.floor(s.width * r + 1e-6), math.floor(s.height * r + 1e-6)
    pad = ((size - nw) // 2, (size - nh) // 2) if center else (0, 0)
    out = grey_canvas(size, s.image.shape[2])
    region = paste_scaled(out, s.image, r, pad[0], pad[1], (0, 0, size, size))
    placed = place_boxes(s, r, pad[0], pad[1], region, 0.0, 0.0, False)
    return Sample(out, placed.boxes, placed.labels, placed.ignore), r, pad


def unletterbox_boxes(boxes: np.ndarray, ratio: float, pad: tuple[float, float]) -> np.ndarray:
    """Map boxes from letterboxed input pixels back to the original image: (x - pad_x) / ratio."""
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[..., [0, 2]] = (out[..., [0, 2]] - pad[0]) / ratio
    out[..., [1, 3]] = (out[..., [1, 3]] - pad[1]) / ratio
    return out
