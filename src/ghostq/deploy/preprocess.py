"""Network input from images, in numpy (no torch): the training letterbox, NCHW float32 in [0, 1].

The letterbox is the training one (:func:`ghostq.core.letterbox.letterbox`, numpy + PIL), called,
not copied, so deployed inputs equal training inputs pixel for pixel: ratio = S / max(w, h), the image
resized (PIL bilinear, exact sub-pixel mapping) to floor(w * ratio) x floor(h * ratio), pasted at the centred
floor pad, grey 114 elsewhere (every channel, IR included). A box maps back with x = (x_in - pad_x) / ratio.

``preprocess`` writes each image straight into the float32 batch: the resized pixels (the same
:func:`ghostq.core.letterbox.paste_scaled` call the letterbox makes, so the same pixels) are divided by 255 into
their place and the border is filled with 114 / 255; no uint8 canvas, no stacked copy, no transposed copy
(the batch equals the canvas route's bit for bit, tested; ``benchmarks/latency.py`` times both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ghostq.core.letterbox import PAD_VALUE, Sample, letterbox, paste_scaled

__all__ = ["PAD_VALUE", "Letterbox", "letterbox_image", "letterbox_into", "preprocess", "unletterbox"]
PAD_GREY = np.float32(PAD_VALUE) / np.float32(255.0)  # the padding as the network sees it


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed in the network input: x_in = x_orig * ratio + pad_x."""

    ratio: float
    pad: tuple[int, int]  # (pad_x, pad_y) in input pixels
    width: int  # original image size
    height: int


def letterbox_image(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """H x W x C uint8 image -> size x size x C uint8 letterboxed image and its placement."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"images must be H x W x C uint8, got {image.shape} {image.dtype}")
    sample, ratio, pad = letterbox(Sample(np.ascontiguousarray(image)), size)
    return sample.image, Letterbox(float(ratio), (int(pad[0]), int(pad[1])), image.shape[1], image.shape[0])


def placement(width: int, height: int, size: int) -> tuple[float, int, int, int, int]:
    """The letterbox of a width x height image in a size x size square: (ratio, pad_x, pad_y, new_w, new_h),
    as :func:`ghostq.core.letterbox.letterbox` computes them."""
    r = size / max(width, height)
    nw, nh = math.floor(width * r + 1e-6), math.floor(height * r + 1e-6)
    return r, (size - nw) // 2, (size - nh) // 2, nw, nh


def letterbox_into(image: np.ndarray, size: int, out: np.ndarray) -> Letterbox:
    """Letterbox one H x W x C uint8 image into ``out`` (float32 [C, size, size]) in [0, 1]; its placement."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"images must be H x W x C uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    r, px, py, nw, nh = placement(width, height, size)
    pasted = np.empty((nh, nw, image.shape[2]), np.uint8)
    region = paste_scaled(pasted, image, r, 0, 0, (0, 0, nw, nh))
    out.fill(PAD_GREY)
    if region is not None:
        x0, y0, x1, y1 = region
        dst = out[:, py + y0 : py + y1, px + x0 : px + x1]
        np.divide(pasted[y0:y1, x0:x1].transpose(2, 0, 1), np.float32(255.0), out=dst)  # x.float().div_(255)
    return Letterbox(float(r), (px, py), width, height)


def preprocess(
    images: Sequence[np.ndarray], size: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, list[Letterbox]]:
    """Images (H x W x C uint8, any sizes) -> batch float32 [B, C, size, size] in [0, 1], placements.
    ``out``: a float32 [B, C, size, size] buffer to write into (reused across calls by a benchmark or a server)."""
    if not len(images):
        raise ValueError("preprocess needs at least one image")
    shape = (len(images), images[0].shape[2] if images[0].ndim == 3 else 0, size, size)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous float32 {list(shape)} array, got {out.dtype} {list(out.shape)}")
    return out, [letterbox_into(im, size, dst) for im, dst in zip(images, out, strict=True)]


def unletterbox(boxes: np.ndarray, lb: Letterbox, clip: bool = True) -> np.ndarray:
    """Boxes [K, 4] xyxy from input pixels back to the original image (float32), clipped to it by default."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    offset = np.array([lb.pad[0], lb.pad[1], lb.pad[0], lb.pad[1]], np.float32)
    b = (b - offset) / np.float32(lb.ratio)
    if clip:
        b[:, 0::2] = b[:, 0::2].clip(0, lb.width)
        b[:, 1::2] = b[:, 1::2].clip(0, lb.height)
    return b
