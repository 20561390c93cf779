"""Decode images for training and evaluation: RGB, or RGB + infrared (VEDAI), as H x W x C uint8 arrays.

numpy + PIL only (no torch), so deployment code can reuse it. Every failure (missing file, undecodable or
truncated file, an IR image whose size differs from its RGB image) is a DataFormatError naming the file.

Decisions:
- EXIF orientation is not applied: annotations of the remote-sensing datasets are in stored-pixel order.
- Grey, palette, alpha and 16-bit images are converted to 8-bit RGB (16-bit: the top 8 bits, i.e. value >> 8,
  which is exact for images that use the full 16-bit range and dark for 12-bit sensors stored as 16-bit).
- An IR image may be single-channel or three identical channels (VEDAI's `_ir.png`); both become one channel
  through PIL's "L" conversion, whose weights sum to exactly 1 (identical channels come back unchanged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ghostq.core.errors import DataFormatError
from ghostq.core.records import ImageRecord

__all__ = ["load_image", "load_ir", "load_record_image"]


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode an image; any decoder failure becomes a DataFormatError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "image file not found")
    try:
        with Image.open(p) as im:
            im.load()  # decode now: truncated or corrupt data fails here, not later in a worker
            return im.copy() if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F") else _to_8bit(im)
    except DataFormatError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... on bad data
        raise DataFormatError(p, f"cannot decode image ({type(exc).__name__}: {exc})") from exc


def _to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey image -> 8-bit "L" (integers: top byte; floats: clipped 0..255)."""
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        out = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        out = (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(out)


def load_image(path: str | Path) -> np.ndarray:
    """RGB image as a contiguous H x W x 3 uint8 array (grey, palette, alpha and 16-bit converted)."""
    im = _open(path)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im).copy()  # writable and owning its memory


def load_ir(path: str | Path) -> np.ndarray:
    """Infrared image as an H x W uint8 array (single-channel, or three identical channels, collapsed)."""
    im = _open(path)
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im).copy()


def load_record_image(record: ImageRecord, in_channels: int) -> np.ndarray:
    """The record's image as H x W x in_channels uint8: RGB (3), or RGB with the IR image as channel 4 (4).

    Raises DataFormatError naming the image when in_channels is 4 and the record has no IR path, when the
    IR image's size differs from the RGB image's, or when the decoded size differs from the record's
    width / height (its boxes would then be in another coordinate frame).
    """
    if in_channels not in (3, 4):
        raise ValueError(f"in_channels must be 3 (RGB) or 4 (RGB + IR), got {in_channels}")
    ir_path = record.ir_path
    if in_channels == 4 and ir_path is None:
        raise DataFormatError(
            record.path, "in_channels=4 needs an infrared image, but the record has no ir_path"
        )
    rgb = load_image(record.path)
    h, w = rgb.shape[:2]
    if record.width > 0 and record.height > 0 and (w, h) != (record.width, record.height):
        raise DataFormatError(
            record.path, f"image is {w}x{h} but its annotation says {record.width}x{record.height}"
        )
    if in_channels == 3 or ir_path is None:
        return rgb
    ir = load_ir(ir_path)
    if ir.shape != (h, w):
        raise DataFormatError(
            ir_path,
            f"infrared image is {ir.shape[1]}x{ir.shape[0]} but its RGB image {record.path} is {w}x{h}",
        )
    out = np.empty((h, w, 4), dtype=np.uint8)
    out[..., :3] = rgb
    out[..., 3] = ir
    return out
