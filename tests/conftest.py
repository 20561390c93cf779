"""Shared fixtures: the real sample folder (skips with the reason when absent), small generated data."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RS_SAMPLES = REPO.parent / "shared" / "rs_samples"


@pytest.fixture(autouse=True)
def _restore_sigchld():  # noqa: ANN202
    """Undo the SIGCHLD handler a torch DataLoader with workers leaves installed, so no test inherits it.

    Left in place, every later child exit runs that Python handler on faulthandler's alternate signal stack; once
    ONNX Runtime or OpenVINO has switched on AMX tile state (Sapphire Rapids CPUs) the signal frame no longer fits
    there and the kernel kills pytest with SIGSEGV (si_code SI_KERNEL, no traceback).
    """
    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)


@pytest.fixture
def rs_samples() -> Path:
    """Path of ../shared/rs_samples; the test is skipped (with the reason) when it is absent."""
    if not RS_SAMPLES.is_dir():
        pytest.skip(
            f"real sample files not found at {RS_SAMPLES} (tests marked realdata need ../shared/rs_samples)"
        )
    return RS_SAMPLES
