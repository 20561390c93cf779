"""Check that an output location can be written before any work starts, so a long run never ends in OSError.

Probing with a real temporary file (not `os.access`) also catches read-only mounts and runs as root, where
permission bits say nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ghostq.core.errors import GhostqError


def require_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create `path` if needed and prove a file can be written in it; else one-line GhostqError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ghostq-write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise GhostqError(f"{path}: {what} is not writable ({reason}); choose another location") from None
    return path


def require_writable_file(path: str | Path, what: str = "output file") -> Path:
    """The folder of an output file must be writable and the path must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise GhostqError(f"{path}: {what} is a folder; give a file name")
    require_writable_dir(path.parent if str(path.parent) else Path("."), what=f"folder of the {what}")
    return path
