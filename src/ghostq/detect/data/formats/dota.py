"""DOTA v1.0 / v1.5 labelTxt: `root/labelTxt/<stem>.txt` + `root/images/<stem>.png` (or .jpg/.tif/.bmp).

A label file holds optional header lines (`imagesource:GoogleEarth`, `gsd:0.266`; the synthetic set writes
`imagesource:ghostq-synthetic`, `gsd:0.3`), then one object per line:
`x1 y1 x2 y2 x3 y3 x4 y4 class difficult` (the official devkit also takes 9 fields, difficult 0). CRLF or LF.
The polygon is kept; the horizontal box is its min/max. Classes: DOTA v1.5 (a superset of v1.0).
An infrared image with the same stem in `root/images_ir/` (what `ghostq data synth --ir` writes) becomes the
record's `ir_path`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from ghostq.detect.data.classes import DOTA_V15
from ghostq.detect.data.formats.common import (
    Entry,
    Issues,
    LineError,
    ParsedObject,
    Scan,
    box_from_polygon,
    class_lookup,
    index_images,
    parse_flag,
    parse_lines,
    parse_number,
    read_text,
    split_fields,
)
from ghostq.detect.data.formats.registry import register_format
from ghostq.detect.data.reading import shown

LAYOUT = "labelTxt/*.txt and images/<stem>.png|.jpg|.tif|.bmp"
_HEADERS = ("imagesource:", "gsd:")


def parse_dota_line(text: str, class_index: Mapping[str, int], classes: Sequence[str]) -> ParsedObject | None:
    """One labelTxt line -> an object, or None for a blank or header line; LineError when malformed."""
    fields = split_fields(text)
    if not fields or fields[0].lower().startswith(_HEADERS):
        return None
    # 9 fields is the devkit's no-difficult form, unless it is a 10-field line that lost a coordinate.
    lost_coordinate = len(fields) == 9 and fields[8] in ("0", "1") and fields[7].lower() in class_index
    if len(fields) not in (9, 10) or lost_coordinate:
        raise LineError(f"expected 10 fields (x1 y1 x2 y2 x3 y3 x4 y4 class difficult), found {len(fields)}")
    poly = tuple(parse_number(tok, f"coordinate {i + 1}") for i, tok in enumerate(fields[:8]))
    name = fields[8]
    label = class_index.get(name.lower())
    if label is None:
        raise LineError(f"unknown class {shown(name)} (expected one of: {', '.join(classes)})")
    difficult = parse_flag(fields[9], "difficult flag") if len(fields) == 10 else False
    return ParsedObject(box=box_from_polygon(poly), label=label, difficult=difficult, polygon=poly)


def parse_dota_text(
    text: str, path: str | Path = "<text>", issues: Issues | None = None, classes: Sequence[str] = DOTA_V15
) -> list[ParsedObject]:
    """Every object of one labelTxt file; the first bad line raises unless `issues` collects."""
    line_parser = partial(parse_dota_line, class_index=class_lookup(classes), classes=tuple(classes))
    return parse_lines(Path(path), text, line_parser, issues or Issues())


@register_format("dota")
def scan_dota(root: Path, issues: Issues, *, classes: Sequence[str] | None = None) -> Scan:
    """Entries for every labelTxt file; `classes` overrides the class list (default DOTA v1.5)."""
    classes = tuple(classes) if classes is not None else DOTA_V15
    scan = Scan(classes=classes, oriented=True, layout=LAYOUT)
    label_dir = root / "labelTxt"
    if not label_dir.is_dir():
        issues.error(root, f"no labelTxt/ folder (DOTA layout: {LAYOUT})")
        return scan
    images = index_images(root / "images")
    ir_images = index_images(root / "images_ir")
    for ann in sorted(label_dir.glob("*.txt")):
        text = read_text(ann, issues)
        if text is None:
            continue
        objects = parse_dota_text(text, ann, issues, classes)
        name = images.get(ann.stem, ann.stem + ".png")
        ir = root / "images_ir" / ir_images[ann.stem] if ann.stem in ir_images else None
        scan.entries.append(
            Entry(
                file_name=f"images/{name}",
                image_path=root / "images" / name,
                objects=objects,
                ann_path=ann,
                ir_path=ir,
            )
        )
    return scan
