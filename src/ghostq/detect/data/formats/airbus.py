"""Airbus Oil Storage Detection: `root/annotations.csv` + `root/images/<image_id>.jpg` (2560 x 2560 SPOT images).

The CSV has a header naming the columns `image_id`, `class` and `bounds` (any order; further columns are
ignored) and one object per row: `image_id` is the image's file name without its suffix, `class` is
`oil-storage-tank`, `bounds` is the quoted string `"(x1, y1, x2, y2)"` in pixels (top-left, bottom-right).
Rows are read one line at a time, so every problem names the CSV's file and line: a wrong column count, bounds
that are not four numbers in parentheses, a non-numeric or non-finite coordinate, x2 < x1 or y2 < y1 (corners
swapped: the box is not what the row means), an unknown class, an image id that is empty, holds a path or names
no image in `images/`. Degenerate (zero-width) and out-of-image boxes are left to `ghostq data check`, as in
the other formats. Images in `images/` without rows are images without objects. Blank lines, CRLF and a BOM are
accepted. The data is CC BY-NC-SA: read it where it lies, never copy it into the repository.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ghostq.detect.data.classes import AIRBUS_OIL
from ghostq.detect.data.formats.common import (
    IMAGE_EXTS,
    Entry,
    Issues,
    LineError,
    ParsedObject,
    Scan,
    class_lookup,
    index_images,
    parse_number,
    read_text,
)
from ghostq.detect.data.formats.registry import register_format
from ghostq.detect.data.reading import shown

CSV_NAME, IMAGE_DIR = "annotations.csv", "images"
COLUMNS = ("image_id", "class", "bounds")
LAYOUT = f"'{CSV_NAME}' ({','.join(COLUMNS)}) with '{IMAGE_DIR}/<image_id>.jpg'"
_BOUNDS = re.compile(r"[ \t]*\(([^()]*)\)[ \t]*")
_BAD_ID = re.compile(r"[/\\\x00-\x1f]|^\.\.?$")


def _csv_fields(text: str) -> list[str]:
    """The fields of one CSV line (quotes as Excel writes them); LineError for an unterminated quote."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as err:
        raise LineError(f"not a CSV line ({err}): {shown(text)}") from None
    return rows[0] if rows else []


def parse_header(text: str) -> dict[str, int]:
    """Column name -> position, from the header line; LineError naming the columns that are missing."""
    names = [f.strip(" \t").lower() for f in _csv_fields(text)]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise LineError(
            f"header lacks column(s) {', '.join(missing)}: expected '{','.join(COLUMNS)}', found {shown(text)}"
        )
    dup = [c for c in COLUMNS if names.count(c) > 1]
    if dup:
        raise LineError(f"header names column {dup[0]!r} twice: {shown(text)}")
    return {c: names.index(c) for c in COLUMNS} | {"_count": len(names)}


def parse_bounds(text: str) -> tuple[float, float, float, float]:
    """`"(x1, y1, x2, y2)"` -> four finite numbers with x1 <= x2 and y1 <= y2; LineError otherwise."""
    m = _BOUNDS.fullmatch(text)
    if m is None:
        raise LineError(f"bounds must be '(x1, y1, x2, y2)', found {shown(text)}")
    parts = m.group(1).split(",")
    if len(parts) != 4:
        raise LineError(f"bounds must hold 4 numbers (x1, y1, x2, y2), found {len(parts)}: {shown(text)}")
    x1, y1, x2, y2 = (parse_number(p, name) for p, name in zip(parts, ("x1", "y1", "x2", "y2"), strict=True))
    if x2 < x1 or y2 < y1:
        raise LineError(f"bounds have x2 < x1 or y2 < y1 (corners swapped?): {shown(text)}")
    return x1, y1, x2, y2


def parse_airbus_row(
    text: str, columns: Mapping[str, int], class_index: Mapping[str, int], classes: Sequence[str]
) -> tuple[str, ParsedObject] | None:
    """One CSV row -> (image id, object), or None for a blank line; LineError when malformed."""
    if not text.strip(" \t\r"):
        return None
    fields = _csv_fields(text)
    if len(fields) != columns["_count"]:
        raise LineError(
            f"expected {columns['_count']} columns ({','.join(COLUMNS)}), found {len(fields)}: {shown(text)}"
        )
    image_id = fields[columns["image_id"]].strip(" \t")
    if not image_id or _BAD_ID.search(image_id):
        raise LineError(f"image_id must be an image's file name without suffix, found {shown(image_id)}")
    name = fields[columns["class"]].strip(" \t")
    label = class_index.get(name.lower())
    if label is None:
        raise LineError(f"unknown class {shown(name)} (expected one of: {', '.join(classes)})")
    return image_id, ParsedObject(box=parse_bounds(fields[columns["bounds"]]), label=label)


def parse_airbus_text(
    text: str, path: str | Path = "<text>", issues: Issues | None = None, classes: Sequence[str] = AIRBUS_OIL
) -> dict[str, list[ParsedObject]]:
    """Objects per image id, in file order; the first bad line raises unless `issues` collects."""
    issues = issues or Issues()
    path = Path(path)
    lines = text.split("\n")
    if not lines[0].strip(" \t\r"):
        issues.error(path, f"the first line must be the header '{','.join(COLUMNS)}'", 1)
        return {}
    try:
        columns = parse_header(lines[0].removesuffix("\r"))
    except LineError as err:
        issues.error(path, str(err), 1)
        return {}
    class_index = class_lookup(classes)
    out: dict[str, list[ParsedObject]] = {}
    for lineno, raw in enumerate(lines[1:], start=2):
        try:
            row = parse_airbus_row(raw.removesuffix("\r"), columns, class_index, classes)
        except LineError as err:
            issues.error(path, str(err), lineno)
            continue
        if row is not None:
            image_id, obj = row
            out.setdefault(image_id, []).append(ParsedObject(obj.box, obj.label, line=lineno))
    return out


@register_format("airbus")
def scan_airbus(root: Path, issues: Issues, *, classes: Sequence[str] | None = None) -> Scan:
    """Entries for every image of `images/` (sorted by name), with the CSV rows of its image id."""
    classes = tuple(classes) if classes is not None else AIRBUS_OIL
    scan = Scan(classes=classes, layout=LAYOUT)
    csv_path = root / CSV_NAME
    if not csv_path.is_file():
        issues.error(root, f"no '{CSV_NAME}' (Airbus oil storage layout: {LAYOUT})")
        return scan
    text = read_text(csv_path, issues)
    if text is None:
        return scan
    objects = parse_airbus_text(text, csv_path, issues, classes)
    images = index_images(root / IMAGE_DIR)
    for image_id, objs in objects.items():
        if image_id not in images:
            issues.error(
                csv_path,
                f"unknown image {shown(image_id)}: no {IMAGE_DIR}/{image_id}{{{','.join(IMAGE_EXTS)}}} "
                f"({len(objs)} row(s) name it)",
                objs[0].line,
            )
    for stem, name in sorted(images.items()):
        scan.entries.append(
            Entry(f"{IMAGE_DIR}/{name}", root / IMAGE_DIR / name, objects=objects.get(stem, []), ann_path=csv_path)
        )
    return scan
