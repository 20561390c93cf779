"""The report stage: report.md (+ PNG charts) from a run folder's JSON artifacts, under the run folder's lock."""

from __future__ import annotations

from pathlib import Path

from ghostq.core.errors import GhostqError
from ghostq.core.runs import RunDir


def report(run_dir: Path) -> Path:
    """Write `run_dir`/report.md; a folder without manifest.json is a one-line GhostqError."""
    from ghostq.deploy.report import write_report

    if not (run_dir / "manifest.json").is_file():
        raise GhostqError(f"{run_dir}: not a ghostq run folder (no manifest.json)")
    with RunDir(run_dir).lock("ghostq report"):
        return write_report(run_dir)
