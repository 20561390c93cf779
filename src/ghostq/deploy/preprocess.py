"""Network input from images, in numpy (no torch): the training letterbox, NCHW float32 in [0, 1].

The letterbox is the training one (:func:`ghostq.core.letterbox.letterbox`, numpy + PIL), called,
not copied, so deployed inputs equal training inputs pixel for pixel: ratio = S / max(w, h), the image
resized (PIL bilinear, exact sub-pixel mapping) to floor(w * ratio) x floor(h * ratio), pasted at the centred
floor pad, grey 114 elsewhere (every channel, IR included). A box maps back with x = (x_in - pad_x) / ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ghostq.core.letterbox import PAD_VALUE, Sample, letterbox

__all__ = ["PAD_VALUE", "Letterbox", "letterbox_image", "preprocess", "unletterbox"]


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


def preprocess(images: Sequence[np.ndarray], size: int) -> tuple[np.ndarray, list[Letterbox]]:
    """Images (H x W x C uint8, any sizes) -> batch float32 [B, C, size, size] in [0, 1], placements."""
    if not len(images):
        raise ValueError("preprocess needs at least one image")
    canvases, boxes = zip(*(letterbox_image(im, size) for im in images), strict=True)
    batch = np.stack(canvases).transpose(0, 3, 1, 2).astype(np.float32)
    batch /= np.float32(255.0)  # as the torch path: x.float().div_(255)
    return np.ascontiguousarray(batch), list(boxes)


def unletterbox(boxes: np.ndarray, lb: Letterbox, clip: bool = True) -> np.ndarray:
    """Boxes [K, 4] xyxy from input pixels back to the original image (float32), clipped to it by default."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    offset = np.array([lb.pad[0], lb.pad[1], lb.pad[0], lb.pad[1]], np.float32)
    b = (b - offset) / np.float32(lb.ratio)
    if clip:
        b[:, 0::2] = b[:, 0::2].clip(0, lb.width)
        b[:, 1::2] = b[:, 1::2].clip(0, lb.height)
    return b
