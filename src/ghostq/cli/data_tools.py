"""`ghostq data synth`, `ghostq data split` and `ghostq data noise`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import typer
from rich.table import Table

from ghostq.cli.app import console, data_app
from ghostq.core.atomic import atomic_write_json
from ghostq.core.errors import GhostqError
from ghostq.core.progress import count_progress
from ghostq.core.writable import require_writable_dir, require_writable_file

JsonOpt = typer.Option(None, "--json", help="Also write the summary as JSON to this path.", dir_okay=False)


def _require_outputs(out_dir: Path | None, out_file: Path | None, json_path: Path | None) -> None:
    """Fail before any work when an output location cannot be written (one line naming it)."""
    if out_dir is not None:
        require_writable_dir(out_dir, "output folder (--out)")
    if out_file is not None:
        require_writable_file(out_file, "output file (--out)")
    if json_path is not None:
        require_writable_file(json_path, "summary JSON (--json)")


def _report(title: str, rows: dict[str, Any], json_path: Path | None, summary: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)
    if json_path is not None:
        atomic_write_json(json_path, summary)


@data_app.command("synth")
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Output folder (empty, or a previous synthetic set).", file_okay=False
    ),
    images: int = typer.Option(200, "--images", min=1, help="Number of images."),
    size: int = typer.Option(
        384, "--size", min=64, max=8192, help="Image side in px (object sizes do not change)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed: same seed, same bytes."),
    ir: bool = typer.Option(
        False, "--ir", help="Also write an infrared image per image (images_ir/<stem>.png)."
    ),
    val_frac: float = typer.Option(
        0.2, "--val-frac", min=0.0, max=0.95, help="Share of images in val.json (0: none)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into a non-empty folder that is not a synthetic set."
    ),
    json_path: Path | None = JsonOpt,
) -> None:
    """Generate the built-in synthetic aerial set (DOTA layout + COCO json + preview.png)."""
    from ghostq.detect.data.synthetic import generate_synthetic

    _require_outputs(out, None, json_path)
    t0 = time.perf_counter()
    with count_progress("synth", images) as progress:
        ds = generate_synthetic(
            out, images=images, size=size, seed=seed, ir=ir, val_frac=val_frac, force=force, progress=progress
        )
    seconds = time.perf_counter() - t0
    counts = ds.class_counts()
    summary = {
        "out": str(ds.root),
        "images": len(ds.records),
        "size": size,
        "seed": seed,
        "ir": ir,
        "val_frac": val_frac,
        "objects": sum(counts.values()),
        "class_counts": counts,
        "seconds": round(seconds, 3),
    }
    _report(
        "synthetic set",
        {
            "folder": ds.root,
            "images": f"{len(ds.records)} x {size} px",
            **{f"  {k}": v for k, v in counts.items()},
            "time": f"{seconds:.1f} s ({1000 * seconds / len(ds.records):.0f} ms/image)",
        },
        json_path,
        summary,
    )


@data_app.command("split")
def split(
    fmt: str = typer.Option(
        ..., "--format", help="Dataset format of --root (dota, dior, dior-r, nwpu, vedai, coco, airbus)."
    ),
    root: Path = typer.Option(..., "--root", exists=True, file_okay=False, help="Dataset folder."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Output folder for the tiles."),
    tile: int = typer.Option(1024, "--tile", min=1, help="Tile side in px."),
    overlap: int = typer.Option(200, "--overlap", min=0, help="Overlap of neighbouring tiles in px."),
    min_area: float = typer.Option(
        0.7,
        "--min-area",
        min=0.0,
        max=1.0,
        help="Objects keeping less than this share of their area are marked ignore.",
    ),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Leave out tiles without objects."),
    skip_missing: bool = typer.Option(
        False, "--skip-missing", help="Skip annotations whose image is missing."
    ),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder that is not a split."),
    json_path: Path | None = JsonOpt,
) -> None:
    """Tile large images into overlapping tiles (DOTA_devkit style), labels clipped per tile."""
    from ghostq.detect.data.formats import load_dataset
    from ghostq.detect.data.tiling import split_dataset

    if overlap >= tile:
        raise GhostqError(f"--overlap ({overlap}) must be smaller than --tile ({tile})")
    if min_area <= 0:
        raise GhostqError("--min-area must be > 0")
    _require_outputs(out, None, json_path)
    ds = load_dataset(fmt, root, skip_missing=skip_missing)
    with count_progress("split", len(ds.records)) as progress:
        tiles = split_dataset(
            ds,
            out,
            tile=tile,
            overlap=overlap,
            min_area_frac=min_area,
            skip_empty=skip_empty,
            force=force,
            progress=progress,
        )
    ignored = int(sum(r.difficult.sum() for r in tiles.records))
    objects = int(sum(r.num_objects for r in tiles.records))
    summary = {
        "out": str(tiles.root),
        "source_images": len(ds.records),
        "tiles": len(tiles.records),
        "objects": objects,
        "difficult_or_ignored": ignored,
        "tile": tile,
        "overlap": overlap,
        "min_area_frac": min_area,
    }
    _report(
        "tiles",
        {
            "folder": tiles.root,
            "images": len(ds.records),
            "tiles": len(tiles.records),
            "objects": objects,
            "difficult / ignored": ignored,
        },
        json_path,
        summary,
    )


@data_app.command("noise")
def noise(
    ann: Path = typer.Option(..., "--ann", exists=True, dir_okay=False, help="Input COCO json."),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="Output COCO json (must differ from --ann)."),
    kind: Literal["symmetric", "asymmetric", "pairflip", "drop", "jitter"] = typer.Option(
        ..., "--kind", help="Kind of noise."
    ),
    rate: float = typer.Option(
        ..., "--rate", min=0.0, max=1.0, help="Probability that an annotation changes."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed."),
    jitter: float = typer.Option(
        0.1, "--jitter", min=0.001, max=0.5, help="jitter: largest edge shift, as a share of the box size."
    ),
    mapping: Path | None = typer.Option(
        None,
        "--map",
        exists=True,
        dir_okay=False,
        help="asymmetric: JSON {class: look-alike or [look-alikes]}.",
    ),
    json_path: Path | None = JsonOpt,
) -> None:
    """Add label noise to a COCO json; the changes are recorded in the output under `ghostq_noise`."""
    from ghostq.core.errors import DataFormatError
    from ghostq.detect.data.noise import add_label_noise, load_coco
    from ghostq.detect.data.reading import MAX_ANNOTATION_BYTES, load_json_file

    if out.resolve() == ann.resolve():
        raise GhostqError(f"{out}: --out must differ from --ann (the clean labels would be lost)")
    _require_outputs(None, out, json_path)
    similar = None
    if mapping is not None:
        similar = load_json_file(mapping, MAX_ANNOTATION_BYTES)
        if not isinstance(similar, dict):
            raise DataFormatError(mapping, "must be a JSON object {class: look-alike or [look-alikes]}")
    noisy, changes = add_label_noise(load_coco(ann), kind, rate, seed, similar, jitter=jitter)
    atomic_write_json(out, noisy)
    rec = noisy["ghostq_noise"]
    share = len(changes) / rec["eligible"] if rec["eligible"] else 0.0
    summary = {
        "ann": str(ann),
        "out": str(out),
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "eligible": rec["eligible"],
        "changed": len(changes),
        "changed_share": round(share, 6),
    }
    _report(
        "label noise",
        {
            "output": out,
            "kind": kind,
            "rate": rate,
            "eligible annotations": rec["eligible"],
            "changed": f"{len(changes)} ({share:.1%})",
        },
        json_path,
        summary,
    )
