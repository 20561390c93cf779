"""The dataset-format registry: each format file registers its scan function; adding a format is one new file.

A format module decorates its scan function with ``@register_format("name")``. The registry finds every
module of this package by itself (``pkgutil``), so lookups never depend on what happened to be imported first;
``ghostq data convert --format`` and the config's ``data.format`` take their allowed values from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ghostq.core.errors import GhostqError
from ghostq.detect.data.formats.common import ScanFn


@dataclass(frozen=True)
class DatasetFormat:
    """One registered format: its name, its scan function, whether its annotations state each image's size."""

    name: str
    scan: ScanFn
    sizes_in_annotations: bool = False  # True: loadable without the image files (--annotations-only)


_FORMATS: dict[str, DatasetFormat] = {}
_discovered = False


def register_format(name: str, *, sizes_in_annotations: bool = False) -> Callable[[ScanFn], ScanFn]:
    """Decorator: register a scan function under ``name`` (a second, different function is refused)."""

    def add(scan: ScanFn) -> ScanFn:
        known = _FORMATS.get(name)
        if known is not None and known.scan is not scan:
            where = f"{known.scan.__module__}, {scan.__module__}"
            raise ValueError(f"dataset format {name!r} is registered twice ({where})")
        _FORMATS[name] = DatasetFormat(name, scan, sizes_in_annotations)
        return scan

    return add


def _discover() -> None:
    """Import every public module of this package once, so each format file has registered itself."""
    global _discovered
    if _discovered:
        return
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _discovered = True


def formats() -> Mapping[str, DatasetFormat]:
    """Every registered format by name, sorted by name (read-only)."""
    _discover()
    return MappingProxyType(dict(sorted(_FORMATS.items())))


def format_names() -> tuple[str, ...]:
    """Names a dataset format may take (`data.format` adds 'synthetic', which is generated, not loaded)."""
    return tuple(formats())


def annotations_only_formats() -> tuple[str, ...]:
    """Formats whose annotations state each image's size, so they load without the image files."""
    return tuple(name for name, f in formats().items() if f.sizes_in_annotations)


def get_format(name: str) -> DatasetFormat:
    """The registered format ``name``; a one-line GhostqError listing the formats when there is none."""
    found = formats().get(name)
    if found is None:
        raise GhostqError(f"unknown dataset format {name!r}; choose one of: {', '.join(format_names())}")
    return found
