"""Records from a format's scan: image sizes from the headers, missing images handled, emptiness refused.

Loaders load what parses. Boxes outside the image, degenerate or duplicate boxes are not fatal here: `check`
reports them. Unparseable lines, unknown classes and (unless `skip_missing`) missing images are fatal.

COCO (and DIOR, whose XML states the image size) may be loaded without the image files:
`require_images=False` keeps a record whose image is absent when the annotation gives its size; it is what
evaluation ground truth and `ghostq data convert --annotations-only` need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.detect.data.formats.common import Entry, Issues, Scan, image_size, list_paths
from ghostq.detect.data.formats.registry import annotations_only_formats, get_format


def _record(entry: Entry, width: int, height: int, oriented: bool) -> ImageRecord:
    objs = entry.objects
    polygons = None
    if oriented:
        polygons = np.array([o.polygon for o in objs], dtype=np.float32).reshape(-1, 8)
    return ImageRecord(
        file_name=entry.file_name,
        path=entry.image_path,
        width=int(width),
        height=int(height),
        boxes=np.array([o.box for o in objs], dtype=np.float32).reshape(-1, 4),
        labels=np.array([o.label for o in objs], dtype=np.int64),
        difficult=np.array([o.difficult for o in objs], dtype=bool),
        polygons=polygons,
        ir_path=entry.ir_path,
        ann_path=entry.ann_path,
    )


def build_dataset(
    fmt: str, root: Path, scan: Scan, issues: Issues, skip_missing: bool = False, require_images: bool = True
) -> tuple[Dataset, list[Entry]]:
    """Records from a scan: image sizes from the image headers, missing images handled, emptiness refused.

    Returns the dataset and, parallel to its records, the entries they came from (lines for `check`).
    """
    records: list[ImageRecord] = []
    kept: list[Entry] = []
    missing: list[Entry] = []
    for entry in scan.entries:
        if not entry.image_path.is_file():
            if not require_images and entry.size is not None:
                records.append(_record(entry, *entry.size, scan.oriented))
                kept.append(entry)
            else:
                missing.append(entry)
            continue
        try:
            width, height = image_size(entry.image_path)
        except Exception as err:  # PIL raises many types on a bad header; any of them means unreadable
            issues.error(entry.image_path, f"unreadable image: {err}")
            continue
        if entry.size is not None and entry.size != (width, height):
            issues.warning(
                entry.ann_path or entry.image_path,
                f"annotation says the image is {entry.size[0]}x{entry.size[1]}, "
                f"{entry.image_path.name} is {width}x{height} (using the image's size)",
            )
        if entry.ir_path is not None and entry.ir_path.is_file():
            _check_ir_size(entry, width, height, issues)
        records.append(_record(entry, width, height, scan.oriented))
        kept.append(entry)

    if missing:
        if issues.collect:
            for entry in missing:
                issues.error(
                    entry.ann_path or entry.image_path, f"annotation without image: {entry.image_path}"
                )
        elif not skip_missing and records:  # when none exists, the "empty dataset" error below says more
            raise GhostqError(
                f"{len(missing)} of {len(scan.entries)} images named by the annotations are missing: "
                f"{list_paths((e.image_path for e in missing), len(missing))}; "
                "--skip-missing loads the rest"
            )
    if not records:
        if missing:
            message = _none_found_message(fmt, root, scan, missing, require_images)
        else:
            message = f"empty dataset: no annotated images found (expected {scan.layout})"
        issues.error(root, message)
    ds = Dataset(
        format=fmt,
        root=root,
        classes=scan.classes,
        records=records,
        missing=[str(e.image_path) for e in missing],
    )
    return ds, kept


def _check_ir_size(entry: Entry, width: int, height: int, issues: Issues) -> None:
    """An infrared image must be as large as its RGB image (they are stacked as channels)."""
    ir = entry.ir_path
    try:
        ir_size = image_size(ir)  # type: ignore[arg-type]
    except Exception as err:  # PIL raises many types on a bad header; any of them means unreadable
        issues.error(ir, f"unreadable infrared image: {err}")  # type: ignore[arg-type]
        return
    if ir_size != (width, height):
        issues.error(
            ir,  # type: ignore[arg-type]
            f"infrared image is {ir_size[0]}x{ir_size[1]}, its RGB image {entry.image_path.name} is "
            f"{width}x{height}; they must be the same size",
        )


def _none_found_message(fmt: str, root: Path, scan: Scan, missing: list[Entry], require_images: bool) -> str:
    """No image named by the annotations exists: name a few, the layout, and what would work instead."""
    message = (
        f"empty dataset: all {len(missing)} images named by the annotations are missing "
        f"({list_paths((e.image_path for e in missing), len(missing))}); "
        f"check the dataset folder (expected {scan.layout})"
    )
    if require_images and fmt in annotations_only_formats():
        message += "; or pass --annotations-only to convert / check the annotations without the images"
    return message


def load_annotated(
    fmt: str,
    root: str | Path,
    issues: Issues,
    skip_missing: bool = False,
    require_images: bool = True,
    **options: Any,
) -> tuple[Dataset, list[Entry]]:
    """Scan and build with the given `Issues`; also returns the entries behind the records (for `check`)."""
    scan_fn = get_format(fmt).scan
    root = Path(root)
    if not root.exists():
        issues.error(root, "dataset folder not found")
        return Dataset(format=fmt, root=root, classes=(), records=[]), []
    scan = scan_fn(root, issues, **options)
    return build_dataset(fmt, root, scan, issues, skip_missing=skip_missing, require_images=require_images)


def load_dataset(
    fmt: str, root: str | Path, skip_missing: bool = False, *, require_images: bool = True, **options: Any
) -> Dataset:
    """Load a dataset in one of FORMATS into records; raise at the first problem.

    fmt: a name of `format_names()`. skip_missing: images named by annotations but absent are
    listed in `Dataset.missing` instead of raising. require_images=False: keep such records when the
    annotation states the image size (COCO, DIOR). Format options: dota `classes=` (default DOTA v1.5),
    vedai `resolution=` (512/1024), coco `ann_file=`, `image_dir=`.
    """
    ds, _ = load_annotated(fmt, root, Issues(collect=False), skip_missing, require_images, **options)
    return ds
