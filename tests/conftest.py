"""Shared fixtures: the real sample folder (skips with the reason when absent), small generated data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RS_SAMPLES = REPO.parent / "shared" / "rs_samples"


@pytest.fixture
def rs_samples() -> Path:
    """Path of ../shared/rs_samples; the test is skipped (with the reason) when it is absent."""
    if not RS_SAMPLES.is_dir():
        pytest.skip(
            f"real sample files not found at {RS_SAMPLES} (tests marked realdata need ../shared/rs_samples)"
        )
    return RS_SAMPLES
