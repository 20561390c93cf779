"""Errors that reach the user as one clear line (file, line, what is wrong)."""

from __future__ import annotations

from pathlib import Path


class GhostqError(Exception):
    """Base of every error the CLI reports as one line instead of a traceback."""


class DataFormatError(GhostqError):
    """A dataset file that does not parse: names the file, the line (when known) and the problem."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(GhostqError):
    """A config that fails validation: names the file, the dotted key and what is allowed."""
