"""From a config's `data` section to train / val records: generate the synthetic set on first use,
load real formats, and split deterministically."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.atomic import atomic_write_json
from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.detect.data.coco_json import dataset_to_coco


@dataclass
class DataSplits:
    """Train and val records of one dataset, its classes, and the val ground truth as COCO json."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    classes: tuple[str, ...]
    root: Path
    format: str

    def val_coco(self) -> dict[str, Any]:
        """Ground truth of the val split in COCO form (image ids 1..N in val order)."""
        return dataset_to_coco(Dataset(self.format, self.root, self.classes, self.val))


def synthetic_root(cfg: Config) -> Path:
    """Where the synthetic set of this config lives: `data.root`, else a folder named by its parameters."""
    if cfg.data.root is not None:
        return cfg.data.root
    s = cfg.data.synthetic
    return cfg.run.root / "_data" / f"synthetic-n{s.images}-s{s.size}-seed{s.seed}{'-ir' if s.ir else ''}"


def ensure_synthetic(cfg: Config) -> Path:
    """Generate the built-in synthetic set unless a complete one with the same parameters exists."""
    from ghostq.detect.data import synthetic

    root = synthetic_root(cfg)
    s = cfg.data.synthetic
    synthetic.ensure_synthetic(root, images=s.images, size=s.size, seed=s.seed, ir=s.ir)
    return root


def split_records(records: list[ImageRecord], val_frac: float, seed: int) -> tuple[list, list]:
    """Deterministic split: records sorted by file name, permuted by `seed`, the first share is val."""
    ordered = sorted(records, key=lambda r: r.file_name)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_val = max(1, round(len(ordered) * val_frac)) if len(ordered) > 1 else 0
    val_idx = set(perm[:n_val].tolist())
    train = [r for i, r in enumerate(ordered) if i not in val_idx]
    val = [r for i, r in enumerate(ordered) if i in val_idx]
    return train, val


def prepare_data(cfg: Config) -> DataSplits:
    """Load (or generate) the dataset named by the config and split it into train and val."""
    from ghostq.detect.data.formats import load_dataset

    if cfg.data.format == "synthetic":
        root, fmt = ensure_synthetic(cfg), "dota"
    else:
        root, fmt = Path(cfg.data.root), cfg.data.format  # type: ignore[arg-type]
    if cfg.data.format == "synthetic":
        from ghostq.detect.data.classes import SYNTHETIC

        ds = load_dataset(fmt, root, classes=SYNTHETIC)
    else:
        ds = load_dataset(fmt, root)
    if cfg.data.classes is not None:
        ds = select_classes(ds, tuple(cfg.data.classes))
    if cfg.data.max_images is not None:
        ordered = sorted(ds.records, key=lambda r: r.file_name)
        picks = np.unique(np.linspace(0, len(ordered) - 1, min(cfg.data.max_images, len(ordered))).round())
        ds = replace(ds, records=[ordered[int(i)] for i in picks])  # spread over the set, not its first folder
    if not ds.records:
        raise GhostqError(f"{root}: the dataset holds no images")
    if cfg.data.val_root is not None:
        val_ds = load_dataset(fmt, cfg.data.val_root)
        if cfg.data.classes is not None:
            val_ds = select_classes(val_ds, tuple(cfg.data.classes))
        train, val = ds.records, val_ds.records
    else:
        train, val = split_records(ds.records, cfg.data.val_frac, cfg.run.seed)
    if not train or not val:
        raise GhostqError(
            f"{root}: need at least one train and one val image, got {len(train)} and {len(val)}"
        )
    if cfg.data.in_channels == 4:
        missing = [r.file_name for r in train + val if r.ir_path is None]
        if missing:
            raise GhostqError(
                f"{root}: data.in_channels=4 needs an infrared image per record; "
                f"{len(missing)} have none (first: {missing[0]})"
            )
    return DataSplits(train, val, ds.classes, root, fmt)


def select_classes(ds: Dataset, classes: tuple[str, ...]) -> Dataset:
    """Keep the objects of `classes` (case-insensitive), re-indexed in that order; drop the others."""
    known = {name.lower(): i for i, name in enumerate(ds.classes)}
    unknown = [c for c in classes if c.lower() not in known]
    if unknown:
        raise GhostqError(
            f"data.classes: {unknown} are not classes of {ds.format} (known: {', '.join(ds.classes)})"
        )
    remap = np.full(len(ds.classes), -1, dtype=np.int64)
    for new, name in enumerate(classes):
        remap[known[name.lower()]] = new
    records = []
    for rec in ds.records:
        new_labels = remap[rec.labels]
        keep = new_labels >= 0
        records.append(
            replace(
                rec,
                boxes=rec.boxes[keep],
                labels=new_labels[keep],
                difficult=rec.difficult[keep],
                polygons=rec.polygons[keep] if rec.polygons is not None else None,
            )
        )
    return Dataset(ds.format, ds.root, classes, records, ds.missing)


def data_fingerprint(splits: DataSplits) -> str:
    """sha256 over every record's annotation file and image (path, size, mtime): changes when the data does."""
    h = hashlib.sha256()
    for rec in sorted(splits.train + splits.val, key=lambda r: str(r.path)):
        for p in (rec.path, rec.ir_path, rec.ann_path):
            if p is not None and Path(p).exists():
                st = Path(p).stat()
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def split_record(splits: DataSplits, seed: int, val_frac: float) -> dict[str, Any]:
    """The split as data (`split.json` in the run folder): file names of each side and their sha256, so every
    benchmark and peer reuses exactly these images."""
    train = [r.file_name for r in splits.train]
    val = [r.file_name for r in splits.val]
    digest = hashlib.sha256(json.dumps({"train": train, "val": val}).encode()).hexdigest()
    return {"format": splits.format, "root": str(splits.root), "seed": seed, "val_frac": val_frac,
            "classes": list(splits.classes), "sha256": digest, "train": train, "val": val}


def write_split(path: Path, splits: DataSplits, seed: int, val_frac: float) -> dict[str, Any]:
    """Record the split in `split.json` (rewritten only when it changed: stages redo their work then, as the data
    fingerprint is part of their digest); benchmarks and peers read the file lists from it."""
    record = split_record(splits, seed, val_frac)
    try:
        same = json.loads(path.read_text(encoding="utf-8")).get("sha256") == record["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        same = False
    if not same:
        atomic_write_json(path, record)
    return record
