"""What every dataset format shares: problems and where they go, parsed objects, and the field parsers.

Every format module parses its annotation files one unit at a time (a text line, an XML `<object>`, a JSON
entry). Each unit gives either a `ParsedObject` or a problem handed to an `Issues`:

- `load_dataset` uses a strict `Issues`: the first problem raises `DataFormatError` naming file, line and what
  is wrong;
- `ghostq.detect.data.check` uses a collecting one, so the same parsing code reports every problem in one
  pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ghostq.core.errors import DataFormatError
from ghostq.detect.data.reading import MAX_ANNOTATION_BYTES, read_limited, shown

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # lookup order when several share a stem
MAX_LISTED = 5  # missing files named in an error message before "(and N more)"
MAX_COORD = float(np.finfo(np.float32).max)  # records hold float32: a larger coordinate would become inf
MAX_INT_DIGITS = 18  # class codes, flags and image sizes; anything longer is not one (and fits int64)


# ---------------------------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset: severity, file, 1-based line (None when the file has no lines)."""

    severity: Literal["error", "warning"]
    path: str
    line: int | None
    message: str
    count: int = 1  # how many problems this entry stands for (>1: a summary of ones not listed)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        d = {"severity": self.severity, "path": self.path, "line": self.line, "message": self.message}
        return d if self.count == 1 else {**d, "count": self.count}


class Issues:
    """Where parsers send problems: raise at the first error (`collect=False`) or collect them all.

    A collecting `Issues` lists at most `per_file` problems of each severity per file; `finish()` adds one
    summary entry per file for the rest, so a 100,000-line file of bad boxes gives a readable report.
    """

    def __init__(self, collect: bool = False, per_file: int | None = None) -> None:
        self.collect = collect
        self.per_file = per_file
        self.problems: list[Problem] = []
        self._listed: dict[tuple[str, str], int] = {}
        self._unlisted: dict[tuple[str, str], int] = {}

    def _add(self, severity: Literal["error", "warning"], path: str | Path, message: str, line: int | None) -> None:
        key = (str(path), severity)
        if self.per_file is not None and self._listed.get(key, 0) >= self.per_file:
            self._unlisted[key] = self._unlisted.get(key, 0) + 1
            return
        self._listed[key] = self._listed.get(key, 0) + 1
        self.problems.append(Problem(severity, str(path), line, message))

    def error(self, path: str | Path, message: str, line: int | None = None) -> None:
        if not self.collect:
            raise DataFormatError(path, message, line)
        self._add("error", path, message, line)

    def warning(self, path: str | Path, message: str, line: int | None = None) -> None:
        self._add("warning", path, message, line)

    def finish(self) -> list[Problem]:
        """The problems, plus one summary per file and severity for those beyond `per_file`."""
        for (path, severity), n in self._unlisted.items():
            what = f"{severity}s" if n > 1 else severity
            message = f"{n:,} more {what} in this file not listed (the first {self.per_file} are)"
            self.problems.append(Problem(severity, path, None, message, count=n))  # type: ignore[arg-type]
        self._unlisted.clear()
        return self.problems

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class LineError(ValueError):
    """Raised by a per-line parser; the file loop turns it into a problem at that file and line."""


# ---------------------------------------------------------------------------------------------- parsed data
@dataclass(frozen=True)
class ParsedObject:
    """One annotated object as written in the source: box xyxy, 0-based class id, flags, its origin."""

    box: tuple[float, float, float, float]
    label: int
    difficult: bool = False
    polygon: tuple[float, ...] | None = None  # 8 values x1 y1 .. x4 y4, where the source is oriented
    line: int | None = None  # 1-based line in the annotation file
    ref: str = ""  # how to name the object where there is no line (COCO: "annotation id 7")


@dataclass
class Entry:
    """One image as the annotations describe it, before the image file is looked at."""

    file_name: str  # image path relative to the dataset root (COCO: the json's file_name)
    image_path: Path  # where the image is (or would be)
    objects: list[ParsedObject]
    ann_path: Path | None  # None for images that have no annotation file (NWPU negatives)
    size: tuple[int, int] | None = None  # (width, height) stated by the annotation (DIOR XML, COCO)
    ir_path: Path | None = None


@dataclass
class Scan:
    """What a format's scan function returns: class names, entries, and whether objects carry polygons."""

    classes: tuple[str, ...]
    entries: list[Entry] = field(default_factory=list)
    oriented: bool = False
    layout: str = ""  # the expected folder layout, for "empty dataset" messages


ScanFn = Callable[..., Scan]

# ---------------------------------------------------------------------------------------------- helpers
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_INT = re.compile(r"[+-]?[0-9]+")
_FIELD_SEP = re.compile(r"[ \t]+")


def split_fields(text: str) -> list[str]:
    """Fields separated by spaces/tabs (only those: other characters stay in a field and fail to parse)."""
    text = text.strip(" \t\r")
    return _FIELD_SEP.split(text) if text else []


def parse_number(token: str, what: str = "coordinate") -> float:
    """A finite decimal number written in ASCII; anything else raises LineError saying what and why."""
    token = token.strip(" \t")
    if _NON_FINITE.fullmatch(token):
        raise LineError(f"{what} is not finite: {shown(token)}")
    if not _NUMBER.fullmatch(token):
        raise LineError(f"{what} is not a number: {shown(token)}")
    value = float(token)
    if not np.isfinite(value):
        raise LineError(f"{what} is not finite: {shown(token)}")
    if abs(value) > MAX_COORD:
        raise LineError(f"{what} is out of range (beyond +-{MAX_COORD:.4g}, the float32 limit): {shown(token)}")
    return value


def parse_int(token: str, what: str) -> int:
    """An ASCII integer (e.g. a class code or a flag) of at most MAX_INT_DIGITS digits."""
    token = token.strip(" \t")
    if not _INT.fullmatch(token):
        raise LineError(f"{what} is not an integer: {shown(token)}")
    digits = len(token.lstrip("+-").lstrip("0"))
    if digits > MAX_INT_DIGITS:
        raise LineError(f"{what} is too large: an integer of {digits:,} digits ({shown(token)})")
    return int(token)


def parse_flag(token: str, what: str) -> bool:
    """A 0/1 flag."""
    value = parse_int(token, what)
    if value not in (0, 1):
        raise LineError(f"{what} must be 0 or 1, found {shown(token)}")
    return bool(value)


def box_from_polygon(poly: tuple[float, ...]) -> tuple[float, float, float, float]:
    """Axis-aligned box (min/max) around an 8-value polygon."""
    xs, ys = poly[0::2], poly[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def class_lookup(classes: Iterable[str]) -> dict[str, int]:
    """Case-insensitive name -> 0-based class id."""
    return {name.lower(): i for i, name in enumerate(classes)}


def read_bytes(path: Path, issues: Issues) -> bytes | None:
    """An annotation file's bytes: regular files up to MAX_ANNOTATION_BYTES; anything else is a problem."""
    try:
        return read_limited(path, MAX_ANNOTATION_BYTES)
    except DataFormatError as err:
        issues.error(path, err.message, err.line)
        return None


def read_text(path: Path, issues: Issues) -> str | None:
    """A text annotation file as str (UTF-8, BOM dropped); undecodable bytes are a problem at their line."""
    data = read_bytes(path, issues)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        issues.error(path, f"not UTF-8 text (byte {err.start})", data[: err.start].count(b"\n") + 1)
        text = data.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


def parse_lines(
    path: Path, text: str, parse_line: Callable[[str], ParsedObject | None], issues: Issues
) -> list[ParsedObject]:
    """Run a per-line parser over a file: each line gives an object, nothing (blank/header) or a problem.

    Lines are split on "\\n" (a trailing "\\r" is dropped), so line numbers are what an editor shows.
    """
    objects = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        try:
            obj = parse_line(raw.removesuffix("\r"))
        except LineError as err:
            issues.error(path, str(err), lineno)
            continue
        if obj is not None:
            objects.append(replace(obj, line=lineno))
    return objects


def index_images(folder: Path) -> dict[str, str]:
    """Image files of a folder by stem: stem -> file name (the first in IMAGE_EXTS order wins)."""
    found: dict[str, str] = {}
    if not folder.is_dir():
        return found
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
    for p in sorted(folder.iterdir(), key=lambda q: (q.stem, rank.get(q.suffix.lower(), 99))):
        if p.suffix.lower() in rank and p.stem not in found and p.is_file():
            found[p.stem] = p.name
    return found


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (PIL reads only the header here)."""
    with Image.open(path) as im:
        return im.size


def list_paths(paths: Iterable[object], count: int) -> str:
    """The first MAX_LISTED paths, then how many more."""
    shown = [str(p) for p in list(paths)[:MAX_LISTED]]
    more = f" (and {count - len(shown)} more)" if count > len(shown) else ""
    return ", ".join(shown) + more
