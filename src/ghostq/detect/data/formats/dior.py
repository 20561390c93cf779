"""DIOR (horizontal, VOC XML) and DIOR-R (oriented, `robndbox` corners + `angle`).

Layout: `root/Annotations/Horizontal Bounding Boxes/*.xml` (dior) or `root/Annotations/Oriented Bounding
Boxes/*.xml` (dior-r); images in `root/JPEGImages-trainval/`, `root/JPEGImages-test/` or `root/JPEGImages/`.
Where an image is absent (`--annotations-only`), its folder comes from the split lists
`root/ImageSets/Main/{train,val,trainval,test}.txt` (test ids -> JPEGImages-test, the others ->
JPEGImages-trainval), else the first image folder that exists.
Class names match classes.DIOR case-insensitively (`Expressway-Service-area`). DIOR has no difficult tag
(default 0; honoured where present). `<folder>`/`<path>` are ignored (some are not ASCII, none are right).
The XML is parsed with expat so that every object and field keeps its line number for error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from xml.parsers import expat

from ghostq.detect.data.classes import DIOR
from ghostq.detect.data.formats.common import (
    IMAGE_EXTS,
    Entry,
    Issues,
    LineError,
    ParsedObject,
    Scan,
    box_from_polygon,
    class_lookup,
    parse_flag,
    parse_int,
    parse_number,
    read_bytes,
    read_text,
)
from ghostq.detect.data.formats.registry import register_format
from ghostq.detect.data.reading import shown

T = TypeVar("T")

IMAGE_DIRS = ("JPEGImages-trainval", "JPEGImages-test", "JPEGImages")
# ImageSets/Main/<split>.txt -> the folder of its images
SPLIT_DIRS = {
    "train": "JPEGImages-trainval",
    "val": "JPEGImages-trainval",
    "trainval": "JPEGImages-trainval",
    "test": "JPEGImages-test",
}
ANN_DIRS = {False: "Horizontal Bounding Boxes", True: "Oriented Bounding Boxes"}
# robndbox corner tags in polygon order: left-top, right-top, right-bottom, left-bottom.
CORNERS = ("left_top", "right_top", "right_bottom", "left_bottom")
_CLASS_INDEX = class_lookup(DIOR)


@dataclass
class XmlNode:
    """A minimal element tree that remembers the line each element starts on."""

    tag: str
    line: int
    children: list[XmlNode] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def find(self, tag: str) -> XmlNode | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[XmlNode]:
        return [c for c in self.children if c.tag == tag]


def parse_xml(data: bytes) -> XmlNode:
    """Parse XML bytes (encoding from the declaration) into XmlNodes; raises expat.ExpatError."""
    parser = expat.ParserCreate()
    stack: list[XmlNode] = []
    roots: list[XmlNode] = []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = XmlNode(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].parts.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.Parse(data, True)
    return roots[0]


@dataclass
class DiorAnnotation:
    """One XML file: the image file name and size it states, and its objects."""

    filename: str | None
    size: tuple[int, int] | None
    objects: list[ParsedObject]


class _At(LineError):
    """A LineError pinned to a line (the element it is about)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _field(parent: XmlNode, tag: str, parse: Callable[[str, str], T]) -> T:
    """Parse the text of `parent/tag`; problems are pinned to the child's line (or the parent's if absent)."""
    child = parent.find(tag)
    if child is None:
        raise _At(parent.line, f"<{parent.tag}> without <{tag}>")
    try:
        return parse(child.text, f"<{tag}>")
    except LineError as err:
        raise _At(child.line, str(err)) from None


def _parse_object(obj: XmlNode, oriented: bool) -> ParsedObject:
    """One `<object>` -> ParsedObject (line set), or _At naming the line of what is wrong."""
    name = _field(obj, "name", lambda text, _what: text)
    label = _CLASS_INDEX.get(name.lower())
    if label is None:
        raise _At(obj.find("name").line, f"unknown class {shown(name)} (expected one of: {', '.join(DIOR)})")
    difficult = _field(obj, "difficult", parse_flag) if obj.find("difficult") is not None else False
    if oriented:
        rb = obj.find("robndbox")
        if rb is None:
            raise _At(obj.line, "<object> without <robndbox>")
        poly = tuple(_field(rb, f"{axis}_{c}", parse_number) for c in CORNERS for axis in ("x", "y"))
        if obj.find("angle") is not None:
            _field(obj, "angle", parse_number)
        return ParsedObject(box_from_polygon(poly), label, difficult, poly, line=obj.line)
    bb = obj.find("bndbox")
    if bb is None:
        raise _At(obj.line, "<object> without <bndbox>")
    x1, y1, x2, y2 = (_field(bb, t, parse_number) for t in ("xmin", "ymin", "xmax", "ymax"))
    return ParsedObject((x1, y1, x2, y2), label, difficult, line=obj.line)


def _parse_size(root: XmlNode) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    width, height = (_field(size, t, parse_int) for t in ("width", "height"))
    if width <= 0 or height <= 0:
        raise _At(size.line, f"image size must be positive, found {width}x{height}")
    return width, height


def parse_dior_xml(
    data: bytes, path: str | Path = "<xml>", oriented: bool = False, issues: Issues | None = None
) -> DiorAnnotation:
    """One DIOR (or DIOR-R with `oriented`) XML file; bad objects raise unless `issues` collects them."""
    path = Path(path)
    issues = issues or Issues()
    try:
        root = parse_xml(data)
    except expat.ExpatError as err:
        issues.error(path, f"not valid XML: {expat.ErrorString(err.code)}", err.lineno)
        return DiorAnnotation(None, None, [])
    if root.tag != "annotation":
        issues.error(path, f"root element is <{root.tag}>, expected <annotation>", root.line)
        return DiorAnnotation(None, None, [])
    fn = root.find("filename")
    filename = Path(fn.text.replace("\\", "/")).name if fn is not None and fn.text else None
    try:
        size = _parse_size(root)
    except _At as err:
        issues.error(path, str(err), err.line)
        size = None
    objects = []
    for obj in root.findall("object"):
        try:
            objects.append(_parse_object(obj, oriented))
        except _At as err:
            issues.error(path, str(err), err.line)
    return DiorAnnotation(filename, size, objects)


def _image_index(root: Path) -> dict[str, str]:
    """Image file name (lower case) -> path relative to root, over the DIOR image folders (first wins)."""
    found: dict[str, str] = {}
    for d in IMAGE_DIRS:
        folder = root / d
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() in IMAGE_EXTS:
                    found.setdefault(p.name.lower(), f"{d}/{p.name}")
    return found


def split_folders(root: Path, issues: Issues) -> dict[str, str]:
    """Image id -> image folder, from the split lists in `ImageSets/Main/` (empty when there are none)."""
    folders: dict[str, str] = {}
    for split, folder in SPLIT_DIRS.items():
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        if not path.exists():
            continue
        text = read_text(path, issues)
        for line in (text or "").splitlines():
            image_id = line.strip()
            if image_id:
                folders.setdefault(image_id, folder)
    return folders


def _scan(root: Path, issues: Issues, oriented: bool) -> Scan:
    ann_dir = root / "Annotations" / ANN_DIRS[oriented]
    layout = f"Annotations/{ANN_DIRS[oriented]}/*.xml and {'|'.join(IMAGE_DIRS)}/<id>.jpg"
    scan = Scan(classes=DIOR, oriented=oriented, layout=layout)
    if not ann_dir.is_dir():
        issues.error(root, f"no 'Annotations/{ANN_DIRS[oriented]}' folder (DIOR layout: {layout})")
        return scan
    images = _image_index(root)
    default_dir = next((d for d in IMAGE_DIRS if (root / d).is_dir()), IMAGE_DIRS[0])
    split_dirs = split_folders(root, issues)
    for ann in sorted(ann_dir.glob("*.xml")):
        data = read_bytes(ann, issues)
        if data is None:
            continue
        parsed = parse_dior_xml(data, ann, oriented, issues)
        candidates = ([parsed.filename] if parsed.filename else []) + [ann.stem + ext for ext in IMAGE_EXTS]
        rel = next((images[c.lower()] for c in candidates if c.lower() in images), None)
        if rel is None:
            name = parsed.filename or ann.stem + ".jpg"
            folder = split_dirs.get(ann.stem) or split_dirs.get(Path(name).stem) or default_dir
            rel = f"{folder}/{name}"
        scan.entries.append(
            Entry(
                file_name=rel, image_path=root / rel, objects=parsed.objects, ann_path=ann, size=parsed.size
            )
        )
    return scan


@register_format("dior", sizes_in_annotations=True)
def scan_dior(root: Path, issues: Issues) -> Scan:
    """DIOR horizontal boxes."""
    return _scan(root, issues, oriented=False)


@register_format("dior-r", sizes_in_annotations=True)
def scan_dior_r(root: Path, issues: Issues) -> Scan:
    """DIOR-R oriented boxes (polygons from the robndbox corners, boxes their min/max)."""
    return _scan(root, issues, oriented=True)
