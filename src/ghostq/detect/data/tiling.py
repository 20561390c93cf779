"""Cut large images into overlapping tiles, DOTA_devkit `ImgSplit` style, with their objects clipped per tile.

Windows: a tile x tile window every (tile - overlap) px; the last window of a row or column is moved back to
end exactly at the border (so every window has full size when the image is large enough); an image smaller
than a tile gives one window: the image as it is (no padding; DOTA_devkit pads with black).

Objects: the intersection of each object (its polygon, else its box) with the window decides:
- no intersection (or only an edge): dropped;
- intersection area >= `min_area_frac` of the object's area: kept, polygon clipped to the tile, its own
  difficult flag unchanged (DOTA_devkit: `iou > thresh`);
- less: kept, clipped, and marked difficult/ignore (DOTA_devkit writes difficult=2; ghostq has one flag).
A clipped polygon can have up to 8 corners; DOTA wants 4, so ghostq keeps the corners that reach the
polygon's extreme x and y (the horizontal box stays exact) and fills up to 4 with the farthest others, in the
original order, starting nearest the original first corner. DOTA_devkit instead merges the shortest edge
of a 5-gon and drops the object when more corners remain. Coordinates are rounded to 0.1 px (the DOTA text).

Output: `images/<stem>__<tile>__<x0>___<y0>.png` (DOTA_devkit puts the resize rate where ghostq puts the tile
size, so tiles of several sizes can share a folder), `images_ir/` alongside for infrared, `labelTxt/*.txt`
(class names with spaces written with '-'), `annotations.json` (COCO), `tiles.json` (marker + parameters).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ghostq.core.atomic import atomic_write_bytes, atomic_write_json
from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.core.tiling import tile_windows
from ghostq.detect.data.coco_json import write_coco_json
from ghostq.detect.data.formats.dota_writer import write_dota_labels

MARKER = "tiles.json"
Window = tuple[int, int, int, int]


def polygon_area(pts: np.ndarray) -> float:
    """Unsigned area of a polygon (k, 2) by the shoelace formula."""
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def clip_polygon(pts: np.ndarray, window: Window) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex or simple polygon (k, 2) to an axis-aligned window."""
    x0, y0, x1, y1 = window
    out = [tuple(p) for p in np.asarray(pts, np.float64)]
    for axis, bound, keep_greater in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if not out:
            break
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            cin = cur[axis] >= bound if keep_greater else cur[axis] <= bound
            pin = prev[axis] >= bound if keep_greater else prev[axis] <= bound
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                q = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])]
                q[axis] = bound
                out.append(tuple(q))
            if cin:
                out.append(cur)
    res = np.asarray(out, np.float64).reshape(-1, 2)
    if len(res) > 1:  # drop repeated corners (a corner lying on the window edge)
        keep = np.linalg.norm(res - np.roll(res, 1, axis=0), axis=1) > 1e-9
        res = res[keep] if keep.any() else res[:1]
    return res


def reduce_to_quad(pts: np.ndarray, first: np.ndarray) -> np.ndarray:
    """4 corners of a clipped polygon: its extreme-x/y corners (+ farthest others), polygon order, starting
    at the corner nearest `first`. A triangle repeats its last corner."""
    k = len(pts)
    chosen = (
        {
            int(np.argmin(pts[:, 0])),
            int(np.argmax(pts[:, 0])),
            int(np.argmin(pts[:, 1])),
            int(np.argmax(pts[:, 1])),
        }
        if k > 4
        else set(range(k))
    )
    while len(chosen) < min(4, k):
        rest = [i for i in range(k) if i not in chosen]
        dist = [min(np.linalg.norm(pts[i] - pts[j]) for j in chosen) for i in rest]
        chosen.add(rest[int(np.argmax(dist))])
    idx = sorted(chosen)
    while len(idx) < 4:
        idx.append(idx[-1])
    quad = pts[idx]
    start = int(np.argmin(np.linalg.norm(quad - first, axis=1)))
    return np.roll(quad, -start, axis=0)


def tile_objects(
    rec: ImageRecord, window: Window, min_area_frac: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Objects of one window in tile coordinates: boxes (N,4), polygons (N,8), labels (N,), difficult (N,)."""
    x0, y0, x1, y1 = window
    boxes, polys, labels, diff = [], [], [], []
    for k in range(rec.num_objects):
        bx1, by1, bx2, by2 = (float(v) for v in rec.boxes[k])
        if bx2 <= x0 or bx1 >= x1 or by2 <= y0 or by1 >= y1:
            continue  # bounds apart (an edge contact has no area either)
        if rec.polygons is not None:
            pts = rec.polygons[k].astype(np.float64).reshape(4, 2)
        else:
            pts = np.array([[bx1, by1], [bx2, by1], [bx2, by2], [bx1, by2]], np.float64)
        area = polygon_area(pts)
        inside = (
            pts[:, 0].min() >= x0
            and pts[:, 0].max() <= x1
            and pts[:, 1].min() >= y0
            and pts[:, 1].max() <= y1
        )
        if inside:
            quad, frac = pts, 1.0
        else:
            clipped = clip_polygon(pts, window)
            inter = polygon_area(clipped)
            if inter <= 0.0:
                if area > 0.0 or len(clipped) == 0:
                    continue
                frac = 1.0  # a degenerate (zero-area) object: keep what lies in the window
            else:
                frac = inter / area if area > 0 else 1.0
            quad = reduce_to_quad(clipped, pts[0])
        quad = np.round(quad - (x0, y0), 1)
        quad[:, 0] = quad[:, 0].clip(0, x1 - x0)
        quad[:, 1] = quad[:, 1].clip(0, y1 - y0)
        polys.append(quad.reshape(-1))
        boxes.append([quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()])
        labels.append(int(rec.labels[k]))
        diff.append(bool(rec.difficult[k]) or frac < min_area_frac)
    return (
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(polys, np.float32).reshape(-1, 8),
        np.array(labels, np.int64),
        np.array(diff, bool),
    )


def tile_name(stem: str, tile: int, window: Window) -> str:
    """DOTA_devkit naming, with the tile size in the rate's place: `P0001__1024__824___0`."""
    return f"{stem}__{tile}__{window[0]}___{window[1]}"


def split_dataset(
    ds: Dataset,
    out: str | Path,
    tile: int = 1024,
    overlap: int = 200,
    min_area_frac: float = 0.7,
    skip_empty: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Tile every image of `ds` into `out` (layout in the module docstring) and return the tiles' records.

    `skip_empty` leaves out tiles without any object (DOTA_devkit keeps them). A previous split in `out` is
    replaced (its extra tiles removed); any other non-empty folder is refused unless `force`.
    """
    from ghostq.detect.data.synthetic import check_output_dir

    if not 0.0 < min_area_frac <= 1.0:
        raise GhostqError(f"tiling: min_area_frac must be in (0, 1], got {min_area_frac}")
    tile_windows(tile, tile, tile, overlap)  # validates tile and overlap
    root = Path(out)
    if root.resolve() == Path(ds.root).resolve():
        raise GhostqError(f"{root}: the tiles cannot go into the dataset's own folder; choose another --out")
    prev = check_output_dir(root, MARKER, force)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    stems = [Path(r.file_name).stem for r in ds.records]
    dup = {s for s, n in Counter(stems).items() if n > 1}
    if dup:
        raise GhostqError(
            f"tiling: several images share the name {sorted(dup)[0]!r}; tile names would collide"
        )
    params = {
        "source": str(Path(ds.root).resolve()),
        "format": ds.format,
        "tile": tile,
        "overlap": overlap,
        "min_area_frac": min_area_frac,
        "skip_empty": skip_empty,
    }
    marker: dict[str, Any] = {"generator": __name__, "params": params, "complete": False, "files": []}
    atomic_write_json(root / MARKER, {**marker, "files": (prev or {}).get("files", [])})
    names = [c.replace(" ", "-") for c in ds.classes]
    records: list[ImageRecord] = []
    for i, (rec, stem) in enumerate(zip(ds.records, stems, strict=True)):
        records += _split_one(rec, stem, root, names, tile, overlap, min_area_frac, skip_empty)
        if progress is not None:
            progress(i + 1, len(ds.records))
    files = [Path(r.file_name).stem for r in records]
    if prev is not None:
        new = set(files)
        for stem in prev.get("files", []):
            if isinstance(stem, str) and "/" not in stem and stem not in new:
                for sub, ext in (("images", "png"), ("images_ir", "png"), ("labelTxt", "txt")):
                    (root / sub / f"{stem}.{ext}").unlink(missing_ok=True)
    tiles = Dataset(ds.format, root, ds.classes, records)
    write_coco_json(tiles, root / "annotations.json")
    atomic_write_json(
        root / MARKER,
        {
            **marker,
            "complete": True,
            "files": files,
            "tiles": len(records),
            "objects": int(sum(r.num_objects for r in records)),
        },
    )
    return tiles


def _split_one(
    rec: ImageRecord,
    stem: str,
    root: Path,
    names: list[str],
    tile: int,
    overlap: int,
    min_area_frac: float,
    skip_empty: bool,
) -> list[ImageRecord]:
    rgb, ir = _open(rec.path), _open(rec.ir_path) if rec.ir_path is not None else None
    if rgb.size != (rec.width, rec.height):
        raise DataFormatError(
            rec.path, f"image is {rgb.size[0]}x{rgb.size[1]}, annotations say {rec.width}x{rec.height}"
        )
    out = []
    for win in tile_windows(rec.width, rec.height, tile, overlap):
        boxes, polys, labels, diff = tile_objects(rec, win, min_area_frac)
        if skip_empty and len(boxes) == 0:
            continue
        name = tile_name(stem, tile, win)
        path = atomic_write_bytes(root / "images" / f"{name}.png", _png(rgb.crop(win)))
        ir_path = None
        if ir is not None:
            ir_path = atomic_write_bytes(root / "images_ir" / f"{name}.png", _png(ir.crop(win)))
        ann = write_dota_labels(
            root / "labelTxt" / f"{name}.txt",
            polys,
            [names[c] for c in labels],
            diff,
            imagesource="ghostq-tiles",
        )
        out.append(
            ImageRecord(
                file_name=f"images/{name}.png",
                path=path,
                width=win[2] - win[0],
                height=win[3] - win[1],
                boxes=boxes,
                labels=labels,
                difficult=diff,
                polygons=polys if rec.polygons is not None else None,
                ir_path=ir_path,
                ann_path=ann,
            )
        )
    return out


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError as err:
        raise DataFormatError(path, "image not found") from err
    except (OSError, ValueError) as err:
        raise DataFormatError(path, f"cannot read image ({err})") from err


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
