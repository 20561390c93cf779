"""Label noise on a COCO dict: class flips, missing boxes, box jitter; deterministic, every change recorded.

Kinds (each non-crowd annotation is picked independently with probability `rate`):
- symmetric: the class becomes a uniformly random *other* class;
- asymmetric: the class becomes one of its look-alikes (`SIMILAR_CLASSES`, or a user mapping); classes with
  no look-alike among the file's categories are never changed, and the rate applies to the others;
- pairflip: class k becomes class k+1 in category-id order, the last the first (Han et al., Co-teaching);
- drop: the annotation is removed (a missed object);
- jitter: each box edge moves by up to `jitter` x the box width (x edges) or height (y edges), clipped to the
  image; a polygon segmentation moves with its box.
Crowd annotations (`iscrowd: 1`, ignore regions) are never changed.

The output is the input with the noisy annotations and a `ghostq_noise` record:
`{"kind", "rate", "seed", "eligible", "changed", "changes": [...]}` (+ `mapping` or `jitter`), each change
`{annotation_id, image_id, kind, old_category_id, new_category_id}` (flips),
`{..., old_bbox, new_bbox}` (jitter) or `{..., old_category_id, old_bbox, dropped: true}` (drop).
A file noised twice keeps the earlier record under `ghostq_noise.previous`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.detect.data.coco_json import dataset_to_coco
from ghostq.detect.data.reading import MAX_JSON_BYTES, load_json_file, shown

_MAX_FLOAT = 1e150  # box values beyond this are no pixels; it keeps jittered edges and w * h finite

KINDS = ("symmetric", "asymmetric", "pairflip", "drop", "jitter")

# Look-alike classes for asymmetric noise, by lower-case name (the datasets' names; see classes.py).
# Synthetic / DOTA: small <-> large vehicle, plane <-> helicopter (DOTA only: the synthetic set has no
# helicopter, so its planes, ships and storage tanks keep their labels), sports fields among themselves.
# VEDAI: car <-> van, truck <-> pickup, camping car -> van, tractor -> truck, bus -> truck.
# NWPU VHR-10 (issue 12): tennis court <-> basketball court, baseball diamond <-> ground track field,
# ship <-> harbor, vehicle <-> ship (a ship flips to harbor or vehicle at random); DIOR's ship / harbor /
# vehicle share these names and so these look-alikes.
SIMILAR_CLASSES: dict[str, tuple[str, ...]] = {
    "small-vehicle": ("large-vehicle",),
    "large-vehicle": ("small-vehicle",),
    "plane": ("helicopter",),
    "helicopter": ("plane",),
    "tennis-court": ("basketball-court",),
    "basketball-court": ("tennis-court",),
    "ground-track-field": ("soccer-ball-field",),
    "soccer-ball-field": ("ground-track-field",),
    "tennis court": ("basketball court",),
    "basketball court": ("tennis court",),
    "baseball diamond": ("ground track field",),
    "ground track field": ("baseball diamond",),
    "ship": ("harbor", "vehicle"),
    "harbor": ("ship",),
    "vehicle": ("ship",),
    "tenniscourt": ("basketballcourt",),
    "basketballcourt": ("tenniscourt",),
    "groundtrackfield": ("stadium",),
    "stadium": ("groundtrackfield",),
    "expressway-service-area": ("expressway-toll-station",),
    "expressway-toll-station": ("expressway-service-area",),
    "bridge": ("overpass",),
    "overpass": ("bridge",),
    "car": ("van",),
    "van": ("car",),
    "truck": ("pickup",),
    "pickup": ("truck",),
    "camping car": ("van",),
    "tractor": ("truck",),
    "bus": ("truck",),
}


def load_coco(path: str | Path) -> dict[str, Any]:
    """Read a COCO json and check every part noise reads or writes back (one-line error naming the file)."""
    path = Path(path)
    coco = load_json_file(path, MAX_JSON_BYTES, check_depth=True, finite=True)
    if (
        not isinstance(coco, dict)
        or not isinstance(coco.get("annotations"), list)
        or not isinstance(coco.get("categories"), list)
    ):
        raise DataFormatError(path, "not a COCO annotation file (needs 'annotations' and 'categories' lists)")
    images = coco.get("images", [])
    if not isinstance(images, list):
        raise DataFormatError(path, f"'images' must be a list, found {type(images).__name__}")
    for k, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            message = f"categories[{k}]: needs an integer 'id' and a string 'name', found {shown(cat)}"
            raise DataFormatError(path, message)
    for k, im in enumerate(images):
        if not isinstance(im, dict) or not _is_id(im.get("id")):
            raise DataFormatError(path, f"images[{k}]: needs an integer 'id', found {shown(im)}")
        for key in ("width", "height"):
            if im.get(key) is not None and not _is_size(im[key]):
                raise DataFormatError(path, f"images[{k}]: '{key}' must be a positive number, found {shown(im[key])}")
    for k, ann in enumerate(coco["annotations"]):
        problem = _annotation_problem(ann)
        if problem:
            raise DataFormatError(path, f"annotations[{k}]: {problem}")
    return coco


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= _MAX_FLOAT


def _is_size(v: Any) -> bool:
    return _is_number(v) and v > 0


def _annotation_problem(ann: Any) -> str | None:
    """What is wrong with one annotation for noise, or None."""
    if not isinstance(ann, dict) or not {"id", "image_id", "category_id", "bbox"} <= ann.keys():
        return f"annotation without id/image_id/category_id/bbox: {shown(ann)}"
    for key in ("image_id", "category_id"):
        if not _is_id(ann[key]):
            return f"'{key}' must be an integer, found {shown(ann[key])}"
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return f"'bbox' must be 4 numbers [x, y, w, h] (within +-{_MAX_FLOAT:g}), found {shown(box)}"
    seg = ann.get("segmentation")
    if isinstance(seg, list) and not all(
        isinstance(poly, list) and all(_is_number(v) for v in poly) for poly in seg
    ):
        return f"'segmentation' must be polygons (lists of numbers) or RLE, found {shown(seg)}"
    return None


def similar_map(
    categories: list[dict[str, Any]], mapping: dict[Any, Any] | None = None
) -> dict[int, list[int]]:
    """category id -> look-alike ids, from names (any case) or ids; default SIMILAR_CLASSES."""
    by_name = {str(c["name"]).lower(): int(c["id"]) for c in categories}
    ids = set(by_name.values())

    def resolve(key: Any) -> int | None:
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return int(key) if int(key) in ids else None
        return by_name.get(str(key).lower())

    out: dict[int, list[int]] = {}
    if mapping is None:
        for name, targets in SIMILAR_CLASSES.items():
            if name in by_name:
                tids = [by_name[t] for t in targets if t in by_name and by_name[t] != by_name[name]]
                if tids:
                    out[by_name[name]] = tids
        return out
    for key, targets in mapping.items():
        src = resolve(key)
        targets = [targets] if isinstance(targets, (str, int)) else targets
        if not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets):
            raise GhostqError(
                f"noise mapping: the look-alikes of {shown(key)} must be a class name or a list of names, "
                f"found {shown(targets)}"
            )
        tids = [resolve(t) for t in targets]
        bad = [k for k, v in zip([key, *targets], [src, *tids], strict=True) if v is None]
        if bad:
            raise GhostqError(
                f"noise mapping: unknown class {shown(bad[0])}; the categories are "
                f"{', '.join(c['name'] for c in categories)}"
            )
        tids = [t for t in tids if t != src]
        if tids:
            out[src] = list(dict.fromkeys(tids))  # type: ignore[arg-type]
    return out


def add_label_noise(
    coco: dict[str, Any],
    kind: str,
    rate: float,
    seed: int,
    classes_similar: dict[Any, Any] | None = None,
    jitter: float = 0.1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (noisy copy of `coco`, list of changes); the input is not modified. See the module docstring."""
    if kind not in KINDS:
        raise GhostqError(f"noise: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not 0.0 <= rate <= 1.0:
        raise GhostqError(f"noise: rate must be in [0, 1], got {rate}")
    if not 0.0 < jitter <= 0.5:
        raise GhostqError(f"noise: jitter must be in (0, 0.5], got {jitter}")
    if seed < 0:
        raise GhostqError(f"noise: seed must be >= 0, got {seed}")
    out = copy.deepcopy(coco)
    anns = out["annotations"]
    cat_ids = sorted(int(c["id"]) for c in out["categories"])
    if kind in ("symmetric", "pairflip") and len(cat_ids) < 2:
        raise GhostqError(f"noise: {kind} flips need at least 2 categories, the file has {len(cat_ids)}")
    similar = similar_map(out["categories"], classes_similar) if kind == "asymmetric" else {}
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in out.get("images", [])}
    rng = np.random.default_rng(seed)
    picks = rng.random(len(anns)) < rate  # one draw per annotation, in file order
    changes: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    eligible = 0
    for ann, pick in zip(anns, picks, strict=True):
        cid = int(ann["category_id"])
        ok = not ann.get("iscrowd", 0) and (kind != "asymmetric" or cid in similar)
        eligible += ok
        rec = {"annotation_id": ann["id"], "image_id": ann["image_id"], "kind": kind}
        if not (ok and pick):
            kept.append(ann)
        elif kind == "drop":
            changes.append({**rec, "old_category_id": cid, "old_bbox": list(ann["bbox"]), "dropped": True})
        elif kind == "jitter":
            new = _jitter_box(ann["bbox"], rng.uniform(-1, 1, 4) * jitter, sizes.get(ann["image_id"]))
            if new is not None:
                changes.append({**rec, "old_bbox": list(ann["bbox"]), "new_bbox": new})
                _move(ann, new)
            kept.append(ann)
        else:
            if kind == "symmetric":
                others = [c for c in cat_ids if c != cid]
                new_id = others[int(rng.integers(len(others)))]
            elif kind == "pairflip":
                new_id = cat_ids[(cat_ids.index(cid) + 1) % len(cat_ids)] if cid in cat_ids else cat_ids[0]
            else:
                new_id = similar[cid][int(rng.integers(len(similar[cid])))]
            changes.append({**rec, "old_category_id": cid, "new_category_id": new_id})
            ann["category_id"] = new_id
            kept.append(ann)
    out["annotations"] = kept
    record: dict[str, Any] = {
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "eligible": eligible,
        "changed": len(changes),
        "changes": changes,
    }
    if kind == "asymmetric":
        names = {int(c["id"]): c["name"] for c in out["categories"]}
        record["mapping"] = {names[s]: [names[t] for t in ts] for s, ts in similar.items()}
    if kind == "jitter":
        record["jitter"] = jitter
    if "ghostq_noise" in coco:
        record["previous"] = coco["ghostq_noise"]
    out["ghostq_noise"] = record
    return out, changes


def add_record_noise(ds: Dataset, kind: str, rate: float, seed: int) -> tuple[list[ImageRecord], dict[str, Any]]:
    """`ds`'s records with `add_label_noise` applied (for training on noisy labels in memory), and a summary.

    Flips change labels only (boxes stay bit-exact, record order kept); drop and jitter rebuild each record's
    boxes from the noisy annotations (polygons dropped: a jittered box no longer matches its polygon).
    """
    coco = dataset_to_coco(ds)
    noisy, changes = add_label_noise(coco, kind, rate, seed)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in noisy["annotations"]:  # image ids are 1..N in record order (dataset_to_coco)
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    out = []
    for image_id, rec in enumerate(ds.records, start=1):
        anns = by_image.get(image_id, [])
        labels = np.asarray([int(a["category_id"]) - 1 for a in anns], np.int64)
        if kind in ("drop", "jitter"):
            boxes = np.asarray([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                 a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32).reshape(-1, 4)
            out.append(replace(rec, boxes=boxes, labels=labels, polygons=None,
                               difficult=np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool)))
        else:
            out.append(replace(rec, labels=labels))
    return out, {"kind": kind, "rate": rate, "seed": seed, "objects": len(coco["annotations"]),
                 "changed": len(changes)}


def _jitter_box(bbox: list[float], d: np.ndarray, size: tuple[Any, Any] | None) -> list[float] | None:
    x, y, w, h = (float(v) for v in bbox)
    x1, y1, x2, y2 = x + d[0] * w, y + d[1] * h, x + w + d[2] * w, y + h + d[3] * h
    if size and size[0] and size[1]:
        x1, x2 = min(max(x1, 0.0), size[0]), min(max(x2, 0.0), size[0])
        y1, y2 = min(max(y1, 0.0), size[1]), min(max(y2, 0.0), size[1])
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None  # a box that would vanish keeps its place
    return [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]


def _move(ann: dict[str, Any], new: list[float]) -> None:
    """Set the new box; map list polygons with the same affine box-to-box transform."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    nx, ny, nw, nh = new
    seg = ann.get("segmentation")
    if isinstance(seg, list) and w > 0 and h > 0:
        ann["segmentation"] = [
            [
                round(nx + (v - x) * nw / w, 3) if i % 2 == 0 else round(ny + (v - y) * nh / h, 3)
                for i, v in enumerate(poly)
            ]
            for poly in seg
        ]
    ann["bbox"] = new
    ann["area"] = round(nw * nh, 3)
