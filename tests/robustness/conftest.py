"""Robustness tests plant bad inputs and check for the exact one-line error, the correct file, or unchanged inputs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Path:
    """A folder path that cannot be created or written, even as root: its parent is a regular file."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a regular file where a folder should be\n")
    return blocker / "out"
