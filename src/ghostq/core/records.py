"""One internal record per image, whatever the source format (DESIGN §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class ImageRecord:
    """An image and its objects: boxes xyxy in pixels, 0-based class ids, optional polygons and IR path."""

    file_name: str  # path relative to the dataset root, used as the COCO file_name
    path: Path  # absolute path of the RGB (or only) image
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))  # (N, 4) xyxy float32
    labels: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))  # (N,) 0-based class ids
    difficult: np.ndarray = field(default_factory=lambda: _empty((0,), bool))  # (N,) difficult / ignore
    polygons: np.ndarray | None = None  # (N, 8) x1 y1 .. x4 y4 where the source has oriented boxes
    ir_path: Path | None = None  # infrared image (VEDAI), same size as the RGB image
    ann_path: Path | None = None  # annotation file the objects came from, for error messages

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if self.polygons is not None:
            self.polygons = np.asarray(self.polygons, dtype=np.float32).reshape(-1, 8)
        n = len(self.boxes)
        if (
            len(self.labels) != n
            or len(self.difficult) != n
            or (self.polygons is not None and len(self.polygons) != n)
        ):
            raise ValueError(f"{self.file_name}: boxes, labels, difficult and polygons differ in length")

    @property
    def num_objects(self) -> int:
        return len(self.boxes)


@dataclass
class Dataset:
    """The records of one dataset, its class names, and the annotation files whose image was missing."""

    format: str
    root: Path
    classes: tuple[str, ...]
    records: list[ImageRecord]
    missing: list[str] = field(default_factory=list)  # image paths named by annotations but absent

    def class_counts(self) -> dict[str, int]:
        """Objects per class name over all records (difficult included)."""
        counts = dict.fromkeys(self.classes, 0)
        for rec in self.records:
            for label in rec.labels:
                counts[self.classes[int(label)]] += 1
        return counts
