"""Atomic writes: write a temporary file in the target's folder, then rename it over the target.

A crash or a bad input mid-write never leaves a half-written artifact and never destroys the previous one.
The file gets the mode an ordinary `open(..., "w")` would give (0666 & ~umask), not mkstemp's 0600. A process
killed mid-write leaves its temporary (`.NAME.*.tmp*`); `ghostq.core.runs` removes those in a run folder it locks.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_GLOB = ".*.tmp*"  # the names atomic_path gives its temporaries


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so the process-wide value is never changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write `obj` as JSON to `path` atomically (NaN is refused: JSON has no NaN)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")
