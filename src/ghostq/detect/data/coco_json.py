"""Records <-> COCO json (the exchange format every detection tool reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_write_json
from ghostq.core.records import Dataset


def dataset_to_coco(ds: Dataset) -> dict[str, Any]:
    """COCO dict: image ids 1..N in record order, category id = class id + 1, bbox xywh, difficult kept.

    A difficult/ignore object is written with `iscrowd: 1`, `difficult: 1` and `ignore: 1`: pycocotools
    (and every tool built on it) honours only `iscrowd`, and this is how `ghostq eval` scores such objects,
    so any tool scores the converted file as ghostq does. Oriented boxes (where the
    source has them) go into `segmentation` as one 8-value polygon. IR images go into `ir_file_name`.
    """
    images, annotations = [], []
    ann_id = 1
    for image_id, rec in enumerate(ds.records, start=1):
        img: dict[str, Any] = {
            "id": image_id,
            "file_name": rec.file_name,
            "width": rec.width,
            "height": rec.height,
        }
        if rec.ir_path is not None:
            img["ir_file_name"] = _relative(rec.ir_path, ds.root)
        images.append(img)
        for k in range(rec.num_objects):
            x1, y1, x2, y2 = (float(v) for v in rec.boxes[k])
            w, h = x2 - x1, y2 - y1
            ann: dict[str, Any] = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": int(rec.labels[k]) + 1,
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": int(rec.difficult[k]),
                "difficult": int(rec.difficult[k]),
                "ignore": int(rec.difficult[k]),
                "segmentation": [[float(v) for v in rec.polygons[k]]] if rec.polygons is not None else [],
            }
            annotations.append(ann)
            ann_id += 1
    categories = [
        {"id": i + 1, "name": name, "supercategory": ds.format} for i, name in enumerate(ds.classes)
    ]
    return {
        "info": {"description": f"converted by ghostq from {ds.format}", "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco_json(ds: Dataset, path: str | Path) -> Path:
    """Write the dataset as COCO json, atomically."""
    return atomic_write_json(path, dataset_to_coco(ds))


def _relative(p: Path, root: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(p)
