"""`ghostq run CONFIG`: every stage in order (train, compress, export + verify, bench, report) in one session.

Each stage skips itself when its config and inputs are unchanged, so a rerun after a crash redoes only what is
missing. A config that differs from the run's `config.yaml` in what a finished stage was built from stops before
any work (naming the keys; `--force` redoes every stage). The run folder stays locked, the device and process
group joined and the dataset prepared once, for the whole command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ghostq.core.atomic import atomic_write_json
from ghostq.core.config import Config
from ghostq.stages.bench import bench
from ghostq.stages.compress import compress
from ghostq.stages.export import run_export
from ghostq.stages.report import report
from ghostq.stages.runner import STAGE_SECTIONS, Session, session
from ghostq.stages.train import train

STAGES = ("train", "compress", "export", "bench", "report")


def run_pipeline(cfg: Config, force: bool = False, say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run every stage of `cfg` in order; returns the report path and each stage's status."""
    with session(cfg, "ghostq run") as s:
        if not force:
            s.require_same_config(list(STAGE_SECTIONS))
        return _run_stages(s, force, say)
    raise AssertionError("unreachable")  # the session does not swallow exceptions


def _run_stages(s: Session, force: bool, say: Callable[[str], Any]) -> dict[str, Any]:
    cfg, status = s.cfg, {}

    def shown(skipped: bool) -> str:
        return "skipped (current)" if skipped else "done"

    say("[1/5] train")
    status["train"] = shown(train(cfg, force=force, show_progress=True, within=s).skipped)
    say("[2/5] compress")
    status["compress"] = shown(compress(cfg, force=force, within=s).skipped)
    say("[3/5] export + verify")
    exported = run_export(cfg, force=force, within=s)
    status["export"] = shown(exported.skipped)
    for msg in exported.messages:
        say(f"      {msg}")
    say("[4/5] bench (ONNX Runtime, models interleaved)")
    status["bench"] = shown(not bench(cfg, force=force, within=s))
    say("[5/5] report")
    written = report(cfg.run_dir)
    status["report"] = "done"
    s.run.write_config(cfg.model_dump(mode="json"))  # every stage is now built from this config
    summary = {"report": str(written), "stages": status}
    atomic_write_json(s.run / "run_summary.json", summary)
    return summary
