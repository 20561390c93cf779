"""The typer application objects; command modules register on them (one module per command group)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="ghostq",
    help="Remote-sensing detectors: robust training, GHOST compression, ONNX/TensorRT export, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Datasets: convert, check, tile, synthesize, add label noise.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
