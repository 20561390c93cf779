"""VEDAI: `root/Annotations512/<id>.txt` + `root/Vehicules512/<id>_co.png` (RGB) and `<id>_ir.png` (infrared).

The 1024 px release uses `Annotations1024/` and `Vehicules1024/`. One object per line, 14 fields:
`xc yc angle_rad class contained occluded x1 x2 x3 x4 y1 y2 y3 y4`: the four corner x values come before the
four y values. Class codes are sparse (classes.VEDAI_CODES: 1 car, 2 truck, 4 tractor, ... 31 plane) and map
to indices of classes.VEDAI. `contained` and `occluded` are 0/1 flags; they are validated, not used as
`difficult` (the VEDAI protocol scores every object). The polygon is kept; the box is its min/max.
"""

from __future__ import annotations

from pathlib import Path

from ghostq.core.errors import GhostqError
from ghostq.detect.data.classes import VEDAI, VEDAI_CODES
from ghostq.detect.data.formats.common import (
    Entry,
    Issues,
    LineError,
    ParsedObject,
    Scan,
    box_from_polygon,
    parse_flag,
    parse_int,
    parse_lines,
    parse_number,
    read_text,
    split_fields,
)
from ghostq.detect.data.formats.registry import register_format

RESOLUTIONS = (512, 1024)
NUM_FIELDS = 14
_CODE_TO_INDEX = {code: VEDAI.index(name) for code, name in VEDAI_CODES.items()}
_CODES = ", ".join(f"{c} {n}" for c, n in sorted(VEDAI_CODES.items()))


def parse_vedai_line(text: str) -> ParsedObject | None:
    """One 14-field line -> an object (None for a blank line); LineError when malformed."""
    fields = split_fields(text)
    if not fields:
        return None
    if len(fields) != NUM_FIELDS:
        raise LineError(
            f"expected {NUM_FIELDS} fields (xc yc angle class contained occluded x1 x2 x3 x4 y1 y2 y3 y4), "
            f"found {len(fields)}"
        )
    for i, what in enumerate(("center x", "center y", "angle")):
        parse_number(fields[i], what)
    code = parse_int(fields[3], "class code")
    if code not in _CODE_TO_INDEX:
        raise LineError(f"unknown class code {code} (expected one of: {_CODES})")
    parse_flag(fields[4], "contained flag")
    parse_flag(fields[5], "occluded flag")
    xs = [parse_number(tok, f"corner x{i + 1}") for i, tok in enumerate(fields[6:10])]
    ys = [parse_number(tok, f"corner y{i + 1}") for i, tok in enumerate(fields[10:14])]
    poly = (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], xs[3], ys[3])
    return ParsedObject(box=box_from_polygon(poly), label=_CODE_TO_INDEX[code], polygon=poly)


def parse_vedai_text(
    text: str, path: str | Path = "<text>", issues: Issues | None = None
) -> list[ParsedObject]:
    """Every object of one annotation file; the first bad line raises unless `issues` collects."""
    return parse_lines(Path(path), text, parse_vedai_line, issues or Issues())


def pick_resolution(root: Path, resolution: int | None) -> int | None:
    """The resolution asked for, else the one whose annotations (and images) exist, 512 first."""
    if resolution is not None:
        if resolution not in RESOLUTIONS:
            raise GhostqError(f"VEDAI resolution must be one of {RESOLUTIONS}, got {resolution}")
        return resolution
    with_ann = [r for r in RESOLUTIONS if (root / f"Annotations{r}").is_dir()]
    with_images = [r for r in with_ann if (root / f"Vehicules{r}").is_dir()]
    return (with_images or with_ann or [None])[0]


@register_format("vedai")
def scan_vedai(root: Path, issues: Issues, *, resolution: int | None = None) -> Scan:
    """Entries for `Annotations<res>/*.txt`; `resolution` 512 or 1024 (default: what exists, 512 first)."""
    scan = Scan(
        classes=VEDAI, oriented=True, layout="Annotations512/*.txt with Vehicules512/<id>_co.png (or 1024)"
    )
    res = pick_resolution(root, resolution)
    ann_dir = root / f"Annotations{res or 512}"
    if res is None or not ann_dir.is_dir():
        issues.error(root, f"no {ann_dir.name}/ folder (VEDAI layout: {scan.layout})")
        return scan
    image_dir = f"Vehicules{res}"
    for ann in sorted(ann_dir.glob("*.txt")):
        text = read_text(ann, issues)
        if text is None:
            continue
        objects = parse_vedai_text(text, ann, issues)
        ir = root / image_dir / f"{ann.stem}_ir.png"
        scan.entries.append(
            Entry(
                file_name=f"{image_dir}/{ann.stem}_co.png",
                image_path=root / image_dir / f"{ann.stem}_co.png",
                objects=objects,
                ann_path=ann,
                ir_path=ir if ir.is_file() else None,
            )
        )
    return scan
