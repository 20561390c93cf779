"""Reading user files defensively: bounded sizes, regular files only, JSON that cannot exhaust the interpreter.

Every reader of a user file (annotation text / XML, COCO json, detections json, noise input) goes through
here, so a link to `/dev/zero`, a FIFO, a 4,301-digit integer or JSON nested 100,000 deep is one
`DataFormatError` naming the file (and line where known), never a hang, a memory blow-up or a traceback.
Torch-free: `ghostq.detect.evaluate` and the noise tool use it too.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import stat
import sys
from pathlib import Path
from typing import Any

from ghostq.core.errors import DataFormatError

MAX_ANNOTATION_BYTES = 64 * 2**20  # one image's label file (text or XML); real ones are a few kB
MAX_JSON_BYTES = 2 * 2**30  # a COCO / detections json (COCO train2017 is 450 MB)
MAX_JSON_DEPTH = 64  # COCO needs 4 (object > list > object > list); deeper is not an annotation file
_INT_DIGITS = sys.get_int_max_str_digits() or 4300
_LONG_INT = re.compile(rb"[0-9]{%d,}" % (_INT_DIGITS + 1))

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40
_short.maxlong = 40
_short.maxlevel = 3


def shown(value: Any) -> str:
    """A short repr for error messages: long strings, huge ints and deep nesting are abbreviated."""
    return _short.repr(value)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_limited(path: str | Path, limit: int = MAX_ANNOTATION_BYTES) -> bytes:
    """The bytes of a regular file no larger than `limit`; DataFormatError otherwise (never blocks on a FIFO)."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows links: a link to /dev/zero is a character device here
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except (OSError, ValueError) as err:
        raise DataFormatError(path, f"cannot read: {getattr(err, 'strerror', None) or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataFormatError(path, f"is {_kind(st.st_mode)}, not a regular file; skipped")
    if st.st_size > limit:
        raise DataFormatError(path, f"file is {st.st_size:,} bytes, more than the {limit:,} a reader takes")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat
    except OSError as err:
        raise DataFormatError(path, f"cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise DataFormatError(path, f"file is more than the {limit:,} bytes a reader takes")
    return data


class _NotFinite(ValueError):
    """Raised by the json hooks of `parse_json_bytes(finite=True)` for NaN / Infinity / 1e400."""


def _finite_float(token: str) -> float:
    value = float(token)
    if value != value or value in (float("inf"), float("-inf")):
        raise _NotFinite(token)
    return value


def _no_constant(token: str) -> float:
    raise _NotFinite(token)


def parse_json_bytes(data: bytes, path: str | Path, check_depth: bool = False, finite: bool = False) -> Any:
    """json.loads with one-line errors for bad JSON, non-UTF-8 bytes, over-long integers and deep nesting.

    json.loads itself stops at about 1,000 levels (RecursionError, reported here). `check_depth` also refuses
    anything deeper than MAX_JSON_DEPTH, for callers that copy or re-dump the whole object recursively; it
    costs about as much as the parse, so readers that only index known keys leave it off. `finite` refuses
    NaN, Infinity and numbers beyond the float range anywhere in the file (for callers that write it back:
    JSON has no NaN).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(path, f"not UTF-8 text (byte {err.start})", data[: err.start].count(b"\n") + 1) from None
    hooks: dict[str, Any] = {"parse_float": _finite_float, "parse_constant": _no_constant} if finite else {}
    try:
        obj = json.loads(text.removeprefix("\ufeff"), **hooks)
    except _NotFinite as err:
        m = re.search(re.escape(str(err)).encode(), data)
        line = data[: m.start()].count(b"\n") + 1 if m else None
        message = f"number {shown(str(err))} is not finite (JSON has no NaN / Infinity)"
        raise DataFormatError(path, message, line) from None
    except json.JSONDecodeError as err:
        raise DataFormatError(path, f"not valid JSON: {err.msg} (column {err.colno})", err.lineno) from None
    except RecursionError:
        raise DataFormatError(path, "JSON nested too deeply to read (about 1,000 levels or more)") from None
    except ValueError:  # Python's integer-string limit: an integer with more than 4300 digits
        m = _LONG_INT.search(data)
        line = data[: m.start()].count(b"\n") + 1 if m else None
        raise DataFormatError(path, f"a number with more than {_INT_DIGITS} digits", line) from None
    if check_depth and json_depth(obj, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise DataFormatError(path, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return obj


def load_json_file(
    path: str | Path, limit: int = MAX_JSON_BYTES, check_depth: bool = False, finite: bool = False
) -> Any:
    """Read and parse a json file within `limit` bytes; every problem is one DataFormatError naming the file."""
    return parse_json_bytes(read_limited(path, limit), path, check_depth, finite)


def json_depth(obj: Any, stop: int) -> int:
    """Nesting depth of lists / dicts (a scalar is 0), walked without recursion; stops early past `stop`."""
    deepest = 0
    stack = [(obj, 1)] if isinstance(obj, (list, dict)) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))
    return deepest
