"""The `ghostq` command (typer): thin wrappers that parse arguments and call a library function."""

from __future__ import annotations

import sys

from rich.markup import escape

from ghostq.cli import (  # noqa: F401  (importing registers the commands)
    bench_commands,
    compress_commands,
    data_commands,
    data_tools,
    eval_commands,
    export_commands,
    predict_commands,
    run_commands,
    train_commands,
)
from ghostq.cli.app import app, console
from ghostq.errors import GhostqError


def main() -> None:
    """Entry point: typer handles usage errors itself; a GhostqError becomes one red line and exit code 2."""
    try:
        app()
    except GhostqError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
