"""`ghostq data convert` and `ghostq data check`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ghostq.cli.app import console, data_app
from ghostq.core.atomic import atomic_write_json
from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset
from ghostq.core.writable import require_writable_file
from ghostq.detect.data.check import DEFAULT_TOLERANCE, check_dataset, summarize
from ghostq.detect.data.coco_json import write_coco_json
from ghostq.detect.data.formats import annotations_only_formats, format_names, load_dataset

# typer shows the values as the allowed choices (`dior-r` is a value, not a Python name).
DataFormat = Enum("DataFormat", {f.replace("-", "_"): f for f in format_names()}, type=str)  # type: ignore[misc]

_FORMAT = typer.Option(..., "--format", "-f", help="dataset format", case_sensitive=False)
_ROOT = typer.Option(..., "--root", help="dataset folder (coco: the json file or its folder)")
_ANN_ONLY = typer.Option(
    False,
    "--annotations-only",
    help=f"keep images absent locally when the annotations state their size ({', '.join(annotations_only_formats())})",
)
_RESOLUTION = typer.Option(
    None, "--resolution", help="VEDAI only: 512 or 1024 (default: what exists, 512 first)"
)
_IMAGE_DIR = typer.Option(None, "--image-dir", help="COCO only: folder the json's file_name values are under")


def _options(
    fmt: str, resolution: int | None, image_dir: Path | None, annotations_only: bool = False
) -> dict[str, Any]:
    """Loader options from the format-specific flags; a flag given for a format it does not apply to is refused."""
    options: dict[str, Any] = {}
    sized = annotations_only_formats()
    if annotations_only and fmt not in sized:
        raise GhostqError(
            f"--annotations-only works for {', '.join(sized)} only (their annotations state "
            f"each image's size); {fmt} files do not, so its images are needed"
        )
    if resolution is not None:
        if fmt != "vedai":
            raise GhostqError(f"--resolution applies to vedai only, not {fmt}")
        options["resolution"] = resolution
    if image_dir is not None:
        if fmt != "coco":
            raise GhostqError(f"--image-dir applies to coco only, not {fmt}")
        options["image_dir"] = image_dir
    return options


def _summary(ds: Dataset, out: Path) -> dict[str, Any]:
    counts = ds.class_counts()
    difficult = dict.fromkeys(ds.classes, 0)
    for rec in ds.records:
        for label, diff in zip(rec.labels, rec.difficult, strict=True):
            difficult[ds.classes[int(label)]] += int(diff)
    return {
        "format": ds.format,
        "root": str(ds.root),
        "out": str(out),
        "images": len(ds.records),
        "objects": sum(counts.values()),
        "skipped": len(ds.missing),
        "missing": list(ds.missing),
        "per_class": counts,
        "difficult_per_class": difficult,
    }


@data_app.command("convert")
def convert(
    fmt: DataFormat = _FORMAT,
    root: Path = _ROOT,
    out: Path = typer.Option(..., "--out", help="COCO json to write"),
    skip_missing: bool = typer.Option(
        False, "--skip-missing", help="convert the images that exist; skip annotations whose image is missing"
    ),
    annotations_only: bool = _ANN_ONLY,
    resolution: int | None = _RESOLUTION,
    image_dir: Path | None = _IMAGE_DIR,
    json_path: Path | None = typer.Option(None, "--json", help="also write the summary as JSON"),
) -> None:
    """Convert a dataset to COCO json (any detection tool reads it)."""
    name = DataFormat(fmt).value
    options = _options(name, resolution, image_dir, annotations_only)
    require_writable_file(out, "COCO json (--out)")
    if json_path is not None:
        require_writable_file(json_path, "summary JSON (--json)")
    ds = load_dataset(name, root, skip_missing=skip_missing, require_images=not annotations_only, **options)
    write_coco_json(ds, out)
    summary = _summary(ds, out)
    table = Table(title=f"{name} -> {out}", show_footer=True)
    table.add_column("class", footer="total")
    table.add_column("objects", justify="right", footer=str(summary["objects"]))
    table.add_column("difficult", justify="right", footer=str(sum(summary["difficult_per_class"].values())))
    for cls, n in summary["per_class"].items():
        if n:
            table.add_row(cls, str(n), str(summary["difficult_per_class"][cls]))
    console.print(table)
    empty = sum(1 for n in summary["per_class"].values() if n == 0)
    console.print(
        f"images: {summary['images']}  objects: {summary['objects']}  "
        f"classes without objects: {empty} of {len(ds.classes)}",
        highlight=False,
    )
    if ds.missing:
        console.print(
            f"[yellow]skipped {len(ds.missing)} images that are missing[/yellow] (first: {ds.missing[0]})",
            highlight=False,
        )
    if json_path is not None:
        atomic_write_json(json_path, summary)


@data_app.command("check")
def check(
    fmt: DataFormat = _FORMAT,
    root: Path = _ROOT,
    json_path: Path | None = typer.Option(None, "--json", help="write the problems as JSON"),
    tolerance: float = typer.Option(
        DEFAULT_TOLERANCE, "--tolerance", help="px a box may extend beyond the image"
    ),
    no_decode: bool = typer.Option(
        False, "--no-decode", help="read image headers only (fast; no corrupt-image check)"
    ),
    annotations_only: bool = _ANN_ONLY,
    resolution: int | None = _RESOLUTION,
    image_dir: Path | None = _IMAGE_DIR,
) -> None:
    """Report every problem of a dataset (file:line and what is wrong); exit 1 when there is an error."""
    name = DataFormat(fmt).value
    options = _options(name, resolution, image_dir, annotations_only)
    if json_path is not None:
        require_writable_file(json_path, "problem report (--json)")
    problems = check_dataset(
        name,
        root,
        tolerance=tolerance,
        decode_images=not no_decode,
        require_images=not annotations_only,
        **options,
    )
    counts = summarize(problems)
    if json_path is not None:
        atomic_write_json(
            json_path,
            {
                "format": name,
                "root": str(root),
                **counts,
                "problems": [p.to_dict() for p in problems],
            },
        )
    if problems:
        table = Table(title=f"{name} dataset at {root}")
        table.add_column("severity")
        table.add_column("file:line", overflow="fold")
        table.add_column("problem", overflow="fold")
        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            where = _relative(p.path, root) + (f":{p.line}" if p.line is not None else "")
            table.add_row(f"[{colour}]{p.severity}[/{colour}]", where, p.message)
        console.print(table)
    style = "red" if counts["errors"] else ("yellow" if counts["warnings"] else "green")
    console.print(
        f"[{style}]{counts['errors']} errors, {counts['warnings']} warnings[/{style}]", highlight=False
    )
    if counts["errors"]:
        raise typer.Exit(code=1)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
