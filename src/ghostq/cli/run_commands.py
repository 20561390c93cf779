"""`ghostq run` and `ghostq report`."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="experiment YAML (e.g. configs/demo.yaml)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. train.epochs=3"),
    force: bool = typer.Option(
        False, "--force", help="rerun every stage even when current, also under a config that differs from the run's"
    ),
) -> None:
    """Every stage in order (train, compress, export + verify, bench, report), skipping finished ones.

    Stops before any work when the run folder is in use, not writable, or was finished under a different config."""
    from ghostq.stages.config import load_config
    from ghostq.stages.run import run_pipeline

    cfg = load_config(config, overrides or [])
    summary = run_pipeline(cfg, force=force, say=lambda msg: console.print(msg, highlight=False))
    console.print(f"report: {summary['report']}", highlight=False)


@app.command("report")
def report_command(run_dir: Path = typer.Argument(..., help="run folder, e.g. runs/demo")) -> None:
    """Write report.md (+ PNG charts) from a run folder's JSON artifacts."""
    from ghostq.stages.report import report

    console.print(f"wrote {report(run_dir)}", highlight=False)
