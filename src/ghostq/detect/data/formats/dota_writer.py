"""Write DOTA labelTxt files (what the synthetic set and the tiler produce, and the DOTA loader reads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ghostq.core.atomic import atomic_write_text


def format_dota_labels(
    polygons: np.ndarray,
    class_names: Sequence[str],
    difficult: Sequence[bool],
    imagesource: str = "ghostq",
    gsd: str = "null",
) -> str:
    """DOTA v1.0 text: two header lines, then `x1 y1 x2 y2 x3 y3 x4 y4 class difficult` per object."""
    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
    if not (len(polygons) == len(class_names) == len(difficult)):
        raise ValueError("polygons, class_names and difficult differ in length")
    lines = [f"imagesource:{imagesource}", f"gsd:{gsd}"]
    for poly, name, diff in zip(polygons, class_names, difficult, strict=True):
        if " " in name:
            raise ValueError(f"DOTA class names cannot hold spaces: {name!r}")
        coords = " ".join(f"{v:.1f}" for v in poly)
        lines.append(f"{coords} {name} {int(bool(diff))}")
    return "\n".join(lines) + "\n"


def write_dota_labels(
    path: str | Path,
    polygons: np.ndarray,
    class_names: Sequence[str],
    difficult: Sequence[bool],
    imagesource: str = "ghostq",
    gsd: str = "null",
) -> Path:
    """Write one labelTxt file atomically."""
    return atomic_write_text(path, format_dota_labels(polygons, class_names, difficult, imagesource, gsd))
