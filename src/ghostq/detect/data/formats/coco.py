"""COCO json (`images`, `annotations`, `categories`): the exchange format, read back into records.

`root` is the json file itself, or a folder holding exactly one `*.json` (itself or in `annotations/`;
`ann_file=` picks one). Classes are the category names in the order of the `categories` list; category ids
map to 0-based indices in that order. `bbox` xywh -> xyxy. `iscrowd`, `ignore` or `difficult` -> difficult.
Record `file_name` is the json's `file_name` as written; the image is looked for under `image_dir=` or,
by default, the first of: the json's folder, `images/` beside it, `<root>/images`, `<root>/<split>` for
`instances_<split>.json` (the COCO release layout). COCO states every image's size, so with
`require_images=False` records are kept for images that are absent locally. An image's `ir_file_name`
(written by ghostq's COCO writer for sets with infrared images) becomes the record's `ir_path`.

A json file has no useful line numbers: problems name the entry instead (`annotations[3] (id 17)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostq.core.errors import DataFormatError
from ghostq.detect.data.formats.common import MAX_COORD, Entry, Issues, LineError, ParsedObject, Scan, list_paths
from ghostq.detect.data.formats.registry import register_format
from ghostq.detect.data.reading import MAX_JSON_BYTES, load_json_file, shown

LAYOUT = "a COCO json file (or a folder with one *.json) and its images"


@dataclass
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int
    ir_file_name: str | None = None
    objects: list[ParsedObject] = field(default_factory=list)


@dataclass
class CocoData:
    classes: tuple[str, ...]
    images: list[CocoImage]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LineError(f"{what} must be an integer, found {shown(value)}")
    if not -(2**63) <= value < 2**63:
        raise LineError(f"{what} is out of the 64-bit integer range: {shown(value)}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LineError(f"{what} must be a number, found {shown(value)}")
    if isinstance(value, int) and abs(value) > MAX_COORD:  # math.isfinite would overflow on a huge int
        raise LineError(f"{what} is out of range (beyond +-{MAX_COORD:.4g}, the float32 limit): {shown(value)}")
    if not math.isfinite(value):
        raise LineError(f"{what} is not finite: {shown(value)}")
    if abs(value) > MAX_COORD:
        raise LineError(f"{what} is out of range (beyond +-{MAX_COORD:.4g}, the float32 limit): {shown(value)}")
    return float(value)


def _flag(value: Any, what: str) -> bool:
    if value is None:
        return False
    if value in (0, 1):  # also False/True
        return bool(value)
    raise LineError(f"{what} must be 0 or 1, found {shown(value)}")


def _list(data: dict[str, Any], key: str, required: bool = True) -> list[Any]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise LineError(f"'{key}' must be a list, found {type(value).__name__}")
    return value


def _entry(kind: str, i: int, item: Any) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    return f"{kind}[{i}]" + (f" (id {shown(ident)})" if ident is not None else "")


def parse_coco_dict(data: Any, path: str | Path = "<json>", issues: Issues | None = None) -> CocoData:
    """Validate a loaded COCO dict; a bad entry raises DataFormatError unless `issues` collects."""
    path, issues = Path(path), issues or Issues()
    try:
        if not isinstance(data, dict):
            raise LineError(f"top level must be an object, found {type(data).__name__}")
        cats, imgs, anns = _list(data, "categories"), _list(data, "images"), _list(data, "annotations", False)
    except LineError as err:
        issues.error(path, str(err))
        return CocoData((), [])

    classes: list[str] = []
    cat_index: dict[int, int] = {}
    for i, cat in enumerate(cats):
        try:
            if not isinstance(cat, dict):
                raise LineError("must be an object")
            cid = _int(cat.get("id"), "id")
            name = cat.get("name")
            if not isinstance(name, str) or not name:
                raise LineError(f"name must be a non-empty string, found {shown(name)}")
            if cid in cat_index:
                raise LineError(f"category id {cid} appears twice")
        except LineError as err:
            issues.error(path, f"{_entry('categories', i, cat)}: {err}")
            continue
        cat_index[cid] = len(classes)
        classes.append(name)

    images: dict[int, CocoImage] = {}
    for i, img in enumerate(imgs):
        try:
            if not isinstance(img, dict):
                raise LineError("must be an object")
            iid = _int(img.get("id"), "id")
            name = img.get("file_name")
            if not isinstance(name, str) or not name:
                raise LineError(f"file_name must be a non-empty string, found {shown(name)}")
            width, height = _int(img.get("width"), "width"), _int(img.get("height"), "height")
            if width <= 0 or height <= 0:
                raise LineError(f"image size must be positive, found {width}x{height}")
            if iid in images:
                raise LineError(f"image id {iid} appears twice")
            ir_name = img.get("ir_file_name")
            if ir_name is not None and (not isinstance(ir_name, str) or not ir_name):
                raise LineError(f"ir_file_name must be a non-empty string, found {shown(ir_name)}")
        except LineError as err:
            issues.error(path, f"{_entry('images', i, img)}: {err}")
            continue
        images[iid] = CocoImage(iid, name, width, height, ir_name)

    for i, ann in enumerate(anns):
        where = _entry("annotations", i, ann)
        try:
            obj, image_id = _parse_annotation(ann, cat_index, images)
        except LineError as err:
            issues.error(path, f"{where}: {err}")
            continue
        images[image_id].objects.append(ParsedObject(obj.box, obj.label, obj.difficult, ref=where))
    return CocoData(tuple(classes), list(images.values()))


def _parse_annotation(
    ann: Any, cat_index: dict[int, int], images: dict[int, CocoImage]
) -> tuple[ParsedObject, int]:
    if not isinstance(ann, dict):
        raise LineError("must be an object")
    image_id = _int(ann.get("image_id"), "image_id")
    if image_id not in images:
        raise LineError(f"image_id {image_id} is not in 'images'")
    cid = _int(ann.get("category_id"), "category_id")
    if cid not in cat_index:
        raise LineError(f"unknown category_id {cid} (not in 'categories')")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise LineError(f"bbox must be a list of 4 numbers [x, y, w, h], found {shown(bbox)}")
    x, y, w, h = (_number(v, f"bbox[{k}]") for k, v in enumerate(bbox))
    if max(abs(x + w), abs(y + h)) > MAX_COORD:
        raise LineError(f"bbox {shown(bbox)} ends beyond +-{MAX_COORD:.4g} (the float32 limit)")
    difficult = any(_flag(ann.get(key), key) for key in ("iscrowd", "ignore", "difficult"))
    return ParsedObject(box=(x, y, x + w, y + h), label=cat_index[cid], difficult=difficult), image_id


def load_coco_json(path: Path, issues: Issues) -> Any:
    """The parsed json, or None after a file:line problem (bad JSON, too large, not a regular file, ...).

    NaN/Infinity literals pass here and fail per entry.
    """
    try:
        return load_json_file(path, MAX_JSON_BYTES)
    except DataFormatError as err:
        issues.error(path, err.message, err.line)
    return None


def _find_json(root: Path, ann_file: str | Path | None, issues: Issues) -> Path | None:
    if ann_file is not None:
        p = Path(ann_file)
        p = p if p.is_absolute() or p.exists() else root / p
        if not p.is_file():
            issues.error(p, "COCO annotation file not found")
            return None
        return p
    if root.is_file():
        return root
    found = sorted(root.glob("*.json")) or sorted((root / "annotations").glob("*.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        issues.error(root, f"no *.json found (expected {LAYOUT})")
    else:
        issues.error(
            root, f"{len(found)} json files found, pick one with ann_file: {list_paths(found, len(found))}"
        )
    return None


def _image_dir(root: Path, json_path: Path, images: list[CocoImage]) -> Path:
    folder = root if root.is_dir() else json_path.parent
    candidates = [json_path.parent, json_path.parent / "images", folder / "images"]
    stem = json_path.stem
    if stem.startswith("instances_"):
        split = stem.removeprefix("instances_")
        candidates += [folder / split, json_path.parent.parent / split]
    sample = images[:20]
    for d in candidates:
        if any((d / img.file_name).is_file() for img in sample):
            return d
    return json_path.parent


@register_format("coco", sizes_in_annotations=True)
def scan_coco(
    root: Path, issues: Issues, *, ann_file: str | Path | None = None, image_dir: str | Path | None = None
) -> Scan:
    """Entries for every image of the json (images without annotations have no objects)."""
    scan = Scan(classes=(), layout=LAYOUT)
    json_path = _find_json(root, ann_file, issues)
    if json_path is None:
        return scan
    data = load_coco_json(json_path, issues)
    if data is None:
        return scan
    coco = parse_coco_dict(data, json_path, issues)
    scan.classes = coco.classes
    base = Path(image_dir) if image_dir is not None else _image_dir(root, json_path, coco.images)
    for img in coco.images:
        scan.entries.append(
            Entry(
                file_name=img.file_name,
                image_path=base / img.file_name,
                objects=img.objects,
                ann_path=json_path,
                size=(img.width, img.height),
                ir_path=base / img.ir_file_name if img.ir_file_name else None,
            )
        )
    return scan
