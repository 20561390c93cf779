"""The `ghostq` command (typer): thin wrappers that parse arguments and call a library function."""

from __future__ import annotations

import sys

from ghostq.cli import data_commands, data_tools, eval_commands  # noqa: F401  (registers the commands)
from ghostq.cli.app import app, console
from ghostq.errors import GhostqError


def main() -> None:
    """Entry point: run the app; a GhostqError becomes one red line and exit code 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except GhostqError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as err:  # click's usage errors carry their own exit code
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise
