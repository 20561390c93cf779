"""Dataset loaders (DESIGN §2): one file per format, each registering its scan function.

- ``common``: problems (`Issues`, `Problem`), parsed objects and entries, the field parsers every format uses;
- ``registry``: ``register_format``, ``format_names()``, ``get_format()`` (formats found by scanning this package);
- ``load``: ``load_dataset`` / ``load_annotated``, records built from any format's scan;
- ``coco``, ``dior`` (DIOR and DIOR-R), ``dota``, ``nwpu``, ``vedai``: the formats; ``dota_writer`` writes labelTxt.

This package's namespace offers the loading entry points; a format module imports from ``common`` and
``registry`` only, never from here.
"""

from ghostq.detect.data.formats.common import Entry, Issues, Problem
from ghostq.detect.data.formats.load import load_annotated, load_dataset
from ghostq.detect.data.formats.registry import annotations_only_formats, format_names, get_format

__all__ = [
    "Entry",
    "Issues",
    "Problem",
    "annotations_only_formats",
    "format_names",
    "get_format",
    "load_annotated",
    "load_dataset",
]
