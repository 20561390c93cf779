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
    incremental_commands,
    predict_commands,
    run_commands,
    train_commands,
)
from ghostq.cli.app import app, console
from ghostq.core.errors import GhostqError, printable_one_line


def main() -> None:
    """Entry point: typer handles usage errors itself; a GhostqError, or an OSError that escaped a command
    (disk full, permission denied), becomes one red line and exit code 2 instead of a traceback."""
    try:
        app()
    except GhostqError as err:
        _fail(str(err))
    except OSError as err:
        _fail(os_error_line(err))


def os_error_line(err: OSError) -> str:
    """`<file>: <reason>` (or `<file> -> <other>: <reason>` for a rename) of an OSError."""
    reason = err.strerror or str(err) or type(err).__name__
    files = [str(f) for f in (err.filename, err.filename2) if f is not None]
    return f"{' -> '.join(files)}: {reason}" if files else reason


def _fail(message: str) -> None:
    """Print `error: <message>` as one red line, control characters escaped, and exit with code 2."""
    console.print(f"[red]error:[/red] {escape(printable_one_line(message))}", highlight=False, soft_wrap=True)
    sys.exit(2)
