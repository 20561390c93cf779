"""The built-in synthetic aerial set: five object classes on textured ground, written in DOTA format.

Classes (`classes.SYNTHETIC`), at a fixed ground resolution of about 0.3 m per pixel:

| class          | size in px (width x length)            | where                                      |
|----------------|----------------------------------------|--------------------------------------------|
| small-vehicle  | 6x12 .. 9x18                           | parking rows, street parking, roads, yards |
| large-vehicle  | 10x28 .. 14x40 (trucks with cab, buses) | roads, truck lots, warehouses, aprons      |
| plane          | 35 .. 70 px long, span 0.85-1.05 x      | aprons, nose-in rows or scattered          |
| ship           | 12x40 .. 20x80, pointed bow             | water only, some with a wake               |
| storage-tank   | circle 14 .. 40 px (label: its square)  | tank farms on pads, single tanks           |

Each image has a theme (urban, airport, harbor, industrial; an image larger than 384 px gets one more
district with its own theme per 384 x 384 px of area), a random layout orientation and sun, and
distractors of no target class (rocks, sheds, bushes, hay, pools, container stacks), trees that hide up to a
third of an object, shadows, haze, blur and noise. Labels are oriented rectangles in DOTA order (front-left
corner first, clockwise), rounded to 0.1 px so the DOTA text round-trips exactly; the horizontal box is the
polygon's extent. Image `i` depends only on (seed, i), so 50 images are the first 50 of 200.

Output folder:
    images/synth_00000.png          RGB
    images_ir/synth_00000.png       infrared, one channel, same stem (only with ir=True). DOTA has no IR
                                    convention and VEDAI's `_co`/`_ir` suffixes would put IR files where a
                                    DOTA loader looks for labelled images, so IR gets a parallel folder.
    labelTxt/synth_00000.txt        DOTA v1.0 labels (imagesource:ghostq-synthetic, gsd:0.3)
    annotations.json                COCO, every image (ir_file_name where there is IR)
    train.json, val.json            COCO subsets with the same image and annotation ids (when val_frac > 0)
    preview.png                     the first images with their labels drawn
    synthetic.json                  marker: generator version, parameters, file list, class counts
"""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ghostq.core.atomic import atomic_write_bytes, atomic_write_json
from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.detect.data.classes import SYNTHETIC
from ghostq.detect.data.coco_json import dataset_to_coco
from ghostq.detect.data.formats.dota_writer import write_dota_labels
from ghostq.detect.data.synthetic_layout import THEMES, SyntheticImage, render_scene  # noqa: F401 (re-exported)

GENERATOR_VERSION = 1  # bump when the pixels or labels for a given seed change
MARKER = "synthetic.json"
ProgressFn = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------ write
def synthetic_params(
    images: int = 200, size: int = 384, seed: int = 0, ir: bool = False, val_frac: float | None = 0.2
) -> dict[str, Any]:
    """Validated parameters, as stored in the marker (what decides whether a set can be reused)."""
    if images < 1:
        raise GhostqError(f"synthetic set: images must be >= 1, got {images}")
    if not 64 <= size <= 8192:
        raise GhostqError(f"synthetic set: size must be in [64, 8192] px, got {size}")
    if seed < 0:
        raise GhostqError(f"synthetic set: seed must be >= 0, got {seed}")
    val = float(val_frac or 0.0)
    if not 0.0 <= val < 1.0:
        raise GhostqError(f"synthetic set: val_frac must be in [0, 1), got {val_frac}")
    return {"images": int(images), "size": int(size), "seed": int(seed), "ir": bool(ir), "val_frac": val}


def check_output_dir(out: Path, marker: str, force: bool) -> dict[str, Any] | None:
    """Refuse a non-empty folder that is no previous output of ours (no `marker` file) unless `force`.

    Returns the previous marker's content (None when there is none), so stale files can be cleaned up.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GhostqError(f"{out}: exists and is not a folder")
    prev = None
    if (out / marker).is_file():
        try:
            prev = json.loads((out / marker).read_text())
        except (OSError, ValueError):
            prev = None
    if out.is_dir() and prev is None and not force and any(out.iterdir()):
        raise GhostqError(
            f"{out}: folder is not empty and is not a previous ghostq output (no {marker}); "
            "choose an empty folder or pass --force"
        )
    return prev


def generate_synthetic(
    out: str | Path,
    images: int = 200,
    size: int = 384,
    seed: int = 0,
    ir: bool = False,
    val_frac: float | None = 0.2,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Generate the synthetic set into `out` (layout in the module docstring) and return its records.

    Every file is written atomically; a previous synthetic set in `out` is replaced (its extra files removed),
    any other non-empty folder is refused unless `force` (then nothing of it is deleted).
    """
    params = synthetic_params(images, size, seed, ir, val_frac)
    root = Path(out)
    prev = check_output_dir(root, MARKER, force)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    stems = [f"synth_{i:05d}" for i in range(images)]
    marker: dict[str, Any] = {
        "generator": __name__,
        "version": GENERATOR_VERSION,
        "params": params,
        "complete": False,
        "files": stems,
    }
    atomic_write_json(root / MARKER, marker)
    records = []
    for i, stem in enumerate(stems):
        records.append(_write_image(root, stem, render_scene(size, seed, i, ir)))
        if progress is not None:
            progress(i + 1, images)
    if prev is not None:
        _remove_stale(root, prev, set(stems), ir, params["val_frac"] > 0)
    ds = Dataset("synthetic", root, SYNTHETIC, records)
    coco = dataset_to_coco(ds)
    coco["info"]["description"] = "ghostq synthetic aerial set"
    coco["info"]["ghostq_synthetic"] = {"version": GENERATOR_VERSION, **params}
    atomic_write_json(root / "annotations.json", coco)
    val = _val_indices(images, params["val_frac"], seed)
    if val:
        for name, keep in (("train.json", lambda k: k not in val), ("val.json", lambda k: k in val)):
            atomic_write_json(root / name, coco_subset(coco, {k + 1 for k in range(images) if keep(k)}))
    write_preview(ds, root / "preview.png")
    marker.update(
        complete=True,
        objects=int(sum(r.num_objects for r in records)),
        counts=ds.class_counts(),
        val_images=len(val),
    )
    atomic_write_json(root / MARKER, marker)
    return ds


def ensure_synthetic(
    out: str | Path,
    images: int = 200,
    size: int = 384,
    seed: int = 0,
    ir: bool = False,
    val_frac: float | None = 0.2,
    progress: ProgressFn | None = None,
) -> Dataset:
    """The set at `out`, generated on first use: reused when a complete set with the same parameters and
    generator version is there (a cheap check of the marker and the files), else (re)generated, showing its
    progress (``ghostq.core.progress``) unless `progress` is given."""
    params = synthetic_params(images, size, seed, ir, val_frac)
    root = Path(out)
    try:
        prev = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        prev = None
    if (
        isinstance(prev, dict)
        and prev.get("complete")
        and prev.get("version") == GENERATOR_VERSION
        and prev.get("params") == params
        and (root / "annotations.json").is_file()
        and all((root / "images" / f"{s}.png").is_file() for s in prev.get("files", []))
    ):
        return load_synthetic(root)
    if progress is None:  # generated on first use (inside training): show it, a bar or lines in a log
        from ghostq.core.progress import count_progress

        with count_progress(f"synth {root.name}", images) as shown:
            return generate_synthetic(root, images, size, seed, ir, val_frac, progress=shown)
    return generate_synthetic(root, images, size, seed, ir, val_frac, progress=progress)


def load_synthetic(root: str | Path) -> Dataset:
    """Records of a generated set, read back from its annotations.json (no image is opened)."""
    root = Path(root).resolve()
    path = root / "annotations.json"
    try:
        coco = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise GhostqError(f"{path}: cannot read the synthetic set's annotations ({err})") from err
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = []
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        boxes = [
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in anns
        ]
        stem = Path(img["file_name"]).stem
        records.append(
            ImageRecord(
                file_name=img["file_name"],
                path=root / img["file_name"],
                width=img["width"],
                height=img["height"],
                boxes=np.array(boxes, np.float32).reshape(-1, 4),
                labels=[a["category_id"] - 1 for a in anns],
                difficult=[bool(a.get("difficult", 0)) for a in anns],
                polygons=np.array([a["segmentation"][0] for a in anns], np.float32).reshape(-1, 8),
                ir_path=root / img["ir_file_name"] if "ir_file_name" in img else None,
                ann_path=root / "labelTxt" / f"{stem}.txt",
            )
        )
    return Dataset("synthetic", root, SYNTHETIC, records)


def coco_subset(coco: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The same COCO dict restricted to some images (ids unchanged, so files can be joined back)."""
    return {
        **coco,
        "images": [im for im in coco["images"] if im["id"] in image_ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids],
    }


def _val_indices(n: int, frac: float, seed: int) -> set[int]:
    if frac <= 0 or n < 2:
        return set()
    k = min(max(1, round(frac * n)), n - 1)
    return set(np.random.default_rng([seed, 7919]).permutation(n)[:k].tolist())


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)  # noisy pixels: level 6 is no smaller
    return buf.getvalue()


def _write_image(root: Path, stem: str, im: SyntheticImage) -> ImageRecord:
    h, w = im.rgb.shape[:2]
    path = atomic_write_bytes(root / "images" / f"{stem}.png", _png(im.rgb))
    ir_path = (
        atomic_write_bytes(root / "images_ir" / f"{stem}.png", _png(im.ir)) if im.ir is not None else None
    )
    ann = write_dota_labels(
        root / "labelTxt" / f"{stem}.txt",
        im.polygons,
        [SYNTHETIC[c] for c in im.labels],
        [False] * len(im.labels),
        imagesource="ghostq-synthetic",
        gsd="0.3",
    )
    return ImageRecord(
        file_name=f"images/{stem}.png",
        path=path,
        width=w,
        height=h,
        boxes=im.boxes,
        labels=im.labels,
        difficult=np.zeros(len(im.labels), bool),
        polygons=im.polygons,
        ir_path=ir_path,
        ann_path=ann,
    )


def _remove_stale(root: Path, prev: dict[str, Any], stems: set[str], ir: bool, split: bool) -> None:
    """Delete what a previous synthetic run wrote and this one did not (only files it named)."""
    for stem in prev.get("files", []):
        if not isinstance(stem, str) or "/" in stem or stem.startswith("."):
            continue
        if stem not in stems:
            (root / "images" / f"{stem}.png").unlink(missing_ok=True)
            (root / "labelTxt" / f"{stem}.txt").unlink(missing_ok=True)
        if stem not in stems or not ir:
            (root / "images_ir" / f"{stem}.png").unlink(missing_ok=True)
    if not ir and (root / "images_ir").is_dir() and not any((root / "images_ir").iterdir()):
        shutil.rmtree(root / "images_ir")
    if not split:
        for name in ("train.json", "val.json"):
            (root / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- preview
CLASS_COLORS = [
    (255, 64, 64),
    (255, 190, 0),
    (0, 200, 255),
    (80, 255, 80),
    (255, 0, 255),
    (255, 128, 0),
    (0, 255, 190),
    (160, 120, 255),
    (255, 255, 255),
    (0, 128, 255),
]


def write_preview(ds: Dataset, path: str | Path, n: int = 4, cols: int = 2) -> Path:
    """A grid of the first `n` images with their labels drawn (class-coloured outlines, legend below)."""
    font = ImageFont.load_default()
    tiles = []
    for rec in ds.records[:n]:
        with Image.open(rec.path) as src:
            im = src.convert("RGB")
        d = ImageDraw.Draw(im)
        for k in range(rec.num_objects):
            col = CLASS_COLORS[int(rec.labels[k]) % len(CLASS_COLORS)]
            if rec.polygons is not None:
                d.polygon(rec.polygons[k].tolist(), outline=col, width=1)
            else:
                d.rectangle(rec.boxes[k].tolist(), outline=col, width=1)
            x1, y1, x2, y2 = rec.boxes[k].tolist()
            if max(x2 - x1, y2 - y1) >= 24:  # name the bigger objects; small ones only by colour
                d.text((x1, max(0.0, y1 - 11)), ds.classes[int(rec.labels[k])], fill=col, font=font)
        tiles.append(im)
    if not tiles:
        raise GhostqError(f"{path}: no images to preview")
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = math.ceil(len(tiles) / cols)
    ncols = min(cols, len(tiles))
    canvas = Image.new("RGB", (ncols * tw + (ncols - 1) * 4, rows * th + (rows - 1) * 4 + 18), (20, 20, 20))
    for i, t in enumerate(tiles):
        canvas.paste(t, ((i % cols) * (tw + 4), (i // cols) * (th + 4)))
    d = ImageDraw.Draw(canvas)
    x = 4
    for i, name in enumerate(ds.classes):
        d.rectangle(
            [x, canvas.height - 13, x + 9, canvas.height - 4], fill=CLASS_COLORS[i % len(CLASS_COLORS)]
        )
        d.text((x + 13, canvas.height - 15), name, fill=(230, 230, 230), font=font)
        x += 18 + int(d.textlength(name, font=font))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
