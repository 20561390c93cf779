"""`ghostq train`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ghostq.cli.app import app, console


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="experiment YAML (e.g. configs/demo.yaml)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. train.epochs=3"),
    resume: bool = typer.Option(
        False, "--resume", help="continue from fp/last.pt exactly (refuses settings it cannot honour, e.g. train.lr)"
    ),
    force: bool = typer.Option(
        False, "--force", help="retrain even when fp/ is current or was trained under a different config"
    ),
    stop_after: int = typer.Option(
        None,
        "--stop-after",
        min=1,
        help="stop after N epochs in this call (e.g. a time-limited job); --resume continues",
    ),
) -> None:
    """Train the full-precision detector; writes runs/<name>/fp/{best.pt,last.pt,metrics.json,curves.png}."""
    from ghostq.stages.config import load_config
    from ghostq.stages.train import train

    cfg = load_config(config, overrides or [])
    result = train(cfg, resume=resume, force=force, stop_after=stop_after)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    m = result.metrics
    if result.skipped:
        console.print(f"train: {result.run_dir / 'fp'} is current (same config and data); --force retrains")
    mAP50 = m.get("mAP50")
    shown = f"{mAP50:.4f}" if isinstance(mAP50, float) else "n/a"
    console.print(
        f"best val mAP50 {shown} (epoch {m.get('best_epoch')}); "
        f"{m.get('train_seconds')} s training; checkpoint {result.best_path}"
    )
