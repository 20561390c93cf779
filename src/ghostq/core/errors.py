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

    def __init__(self, message: str) -> None:
        # keys and values come from the user's file: a line break inside one must not split the error
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))


def printable_one_line(message: str) -> str:
    """The message on one line with control characters shown escaped (`\\x1b`), so no error can drive the terminal."""
    return " ".join("".join(_escape_char(c) for c in word) for word in message.split())


def _escape_char(char: str) -> str:
    """`char` itself when printable, else its Python escape (`\\x1b`, `\\u202e`)."""
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
