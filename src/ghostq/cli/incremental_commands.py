"""`ghostq incremental`: add classes to a trained detector without its old data (ACIL, one phase per call)."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console
from ghostq.core.errors import GhostqError


@app.command("incremental")
def incremental_command(
    config: Path = typer.Argument(..., help="experiment YAML (its data section: the base data, formats)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. data.root=/data/NWPU"),
    model: Path = typer.Option(..., "--model", help="fp/best.pt (base fit) or a checkpoint this command wrote"),
    out: Path = typer.Option(..., "--out", help="the new checkpoint (the --model file is kept)"),
    data: Path | None = typer.Option(None, "--data", help="a phase: the new data's root (only this is read)"),
    fmt: str | None = typer.Option(None, "--format", help="format of --data (default: the config's data.format)"),
    classes: str | None = typer.Option(None, "--classes", help="a phase: the new classes, comma-separated"),
    all_images: bool = typer.Option(False, "--all-images", help="a phase: also the images with none of --classes"),
    buffer_dim: int = typer.Option(1024, "--buffer-dim", min=1, help="base fit: width of the random buffer"),
    gamma: float = typer.Option(0.1, "--gamma", min=0.0, help="base fit: ridge regularisation (> 0)"),
    keep: float = typer.Option(0.1, "--keep", help="base fit: share of background points kept (seeded)"),
    background_weight: float | None = typer.Option(
        None, "--background-weight", help="base fit: weight of a kept one (default 1/keep: unbiased)"),
    seed: int = typer.Option(0, "--seed", min=0, help="base fit: seed of the buffer and the background draws"),
) -> None:
    """Base fit of an analytic head, or one phase of new classes on new data; writes --out."""
    from ghostq.stages.config import load_config
    from ghostq.stages.incremental import AnalyticSettings, incremental

    names = None if classes is None else [c.strip() for c in classes.split(",") if c.strip()]
    if classes is not None and not names:
        raise GhostqError(f"--classes {classes!r} names no class")
    if gamma <= 0 or not 0 < keep <= 1 or (background_weight is not None and background_weight <= 0):
        raise GhostqError(f"need --gamma > 0, 0 < --keep <= 1 and --background-weight > 0, got {gamma}, {keep}, "
                          f"{background_weight}")
    cfg = load_config(config, overrides or [])
    settings = AnalyticSettings(buffer_dim, gamma, seed, keep, background_weight)
    with console.status("fitting the analytic head"):
        r = incremental(cfg, model, out, data=data, fmt=fmt, classes=names, all_images=all_images,
                        settings=settings)
    p = r.phase
    console.print(f"phase {p['classes']}: {p['images']} images, {p['positives']} positive and "
                  f"{p['background_rows']} background points; classes now {r.classes}")
    console.print(f"kept of the old data: {r.kept_bytes:,} bytes (A and W per level); {r.seconds:.0f} s; "
                  f"checkpoint {r.out}")
