"""NWPU VHR-10: `root/ground truth/NNN.txt` + `root/positive image set/NNN.jpg`; `root/negative image set/`.

Ground-truth lines are `(x1,y1),(x2,y2),c`: top-left and bottom-right corners and a class number 1..10
(classes.NWPU_VHR10, the order of the dataset's readme). Real files pad numbers inside the parentheses
(`( 84,508)`), end lines with a space, hold blank lines and may lack the final newline. Every image of the
negative set is a record without objects (file name `negative image set/NNN.jpg`, distinct from positives).
"""

from __future__ import annotations

import re
from pathlib import Path

from ghostq.detect.data.classes import NWPU_VHR10
from ghostq.detect.data.formats.common import (
    IMAGE_EXTS,
    Entry,
    Issues,
    LineError,
    ParsedObject,
    Scan,
    index_images,
    parse_int,
    parse_lines,
    parse_number,
    read_text,
)
from ghostq.detect.data.formats.registry import register_format
from ghostq.detect.data.reading import shown

GT_DIR, POSITIVE_DIR, NEGATIVE_DIR = "ground truth", "positive image set", "negative image set"
LAYOUT = f"'{GT_DIR}/NNN.txt' with '{POSITIVE_DIR}/NNN.jpg' (and optionally '{NEGATIVE_DIR}/')"
_LINE = re.compile(r"\(([^()]*)\)[ \t]*,[ \t]*\(([^()]*)\)[ \t]*,[ \t]*([^(),]*)")


def _point(group: str, which: str) -> tuple[float, float]:
    parts = group.split(",")
    if len(parts) != 2:
        raise LineError(f"expected 2 numbers in ({shown(group)[1:-1]}) for {which}, found {len(parts)}")
    return parse_number(parts[0], f"{which} x"), parse_number(parts[1], f"{which} y")


def parse_nwpu_line(text: str) -> ParsedObject | None:
    """`(x1,y1),(x2,y2),c` -> an object (None for a blank line); LineError when malformed."""
    text = text.strip(" \t\r")
    if not text:
        return None
    m = _LINE.fullmatch(text)
    if m is None:
        raise LineError(f"expected '(x1,y1),(x2,y2),class', found {shown(text)}")
    x1, y1 = _point(m.group(1), "top-left")
    x2, y2 = _point(m.group(2), "bottom-right")
    code = parse_int(m.group(3), "class number")
    if not 1 <= code <= len(NWPU_VHR10):
        raise LineError(f"unknown class number {code} (expected 1..{len(NWPU_VHR10)})")
    return ParsedObject(box=(x1, y1, x2, y2), label=code - 1)


def parse_nwpu_text(
    text: str, path: str | Path = "<text>", issues: Issues | None = None
) -> list[ParsedObject]:
    """Every object of one ground-truth file; the first bad line raises unless `issues` collects."""
    return parse_lines(Path(path), text, parse_nwpu_line, issues or Issues())


@register_format("nwpu")
def scan_nwpu(root: Path, issues: Issues) -> Scan:
    """Positive images from the ground-truth files, then every negative image (no objects)."""
    scan = Scan(classes=NWPU_VHR10, layout=LAYOUT)
    gt_dir = root / GT_DIR
    if not gt_dir.is_dir():
        issues.error(root, f"no '{GT_DIR}' folder (NWPU VHR-10 layout: {LAYOUT})")
        return scan
    positives = index_images(root / POSITIVE_DIR)
    for ann in sorted(gt_dir.glob("*.txt")):
        text = read_text(ann, issues)
        if text is None:
            continue
        objects = parse_nwpu_text(text, ann, issues)
        name = positives.get(ann.stem, ann.stem + ".jpg")
        scan.entries.append(
            Entry(f"{POSITIVE_DIR}/{name}", root / POSITIVE_DIR / name, objects=objects, ann_path=ann)
        )
    negative_dir = root / NEGATIVE_DIR
    if negative_dir.is_dir():
        for img in sorted(negative_dir.iterdir()):
            if img.suffix.lower() in IMAGE_EXTS and img.is_file():
                scan.entries.append(Entry(f"{NEGATIVE_DIR}/{img.name}", img, objects=[], ann_path=None))
    return scan
