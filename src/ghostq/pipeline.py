"""`ghostq run CONFIG`: every stage in order (data, train, compress, export + verify, bench, report).

Each stage skips itself when its config and inputs are unchanged, so a rerun after a crash redoes only what is
missing. A config that differs from the run's `config.yaml` in what a finished stage was built from stops before
any work (name the keys; `--force` redoes every stage). The run folder stays locked for the whole command.
Sits on top of every layer (like the CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ghostq.core.config import Config, config_hash
from ghostq.core.runs import RunDir

STAGES = ("train", "compress", "export", "bench", "report")
EXPORTED = ("model_fp32.onnx", "model_fp16.onnx", "model_int8.onnx", "model_int8_cpu.onnx")


def bench_stage(cfg: Config, force: bool = False) -> bool:
    """Time the exported ONNX files interleaved on the configured runtime -> bench/ort_cpu.json; sample PNGs.

    Returns False when the stage was current and skipped."""
    from ghostq.core.atomic import atomic_write_json
    from ghostq.deploy.bench import BenchSettings, compare

    run = RunDir(cfg.run_dir)
    files = [run / "export" / f for f in EXPORTED if (run / "export" / f).is_file()]
    out = run / "bench" / "ort_cpu.json"
    digest = config_hash(cfg, ["bench"])
    if not force and run.is_current("bench", digest, files):
        return False
    b = cfg.bench
    settings = BenchSettings(batches=tuple(b.batches), warmup=b.warmup, iters=b.iters, threads=b.threads or None)
    with run.stage("bench", digest, files) as stage:
        stage.add_artifact(atomic_write_json(out, compare(files, backend=b.backend, settings=settings)))
        for png in _sample_predictions(cfg, run):
            stage.add_artifact(png)
    return True


def _sample_predictions(cfg: Config, run: RunDir) -> list[Path]:
    """Draw the INT8 (CPU form) model's detections on a few val images into predict/."""
    from ghostq.deploy import load_runtime
    from ghostq.deploy.predict import predict_paths
    from ghostq.detect.data.prepare import prepare_data

    model = run / "export" / "model_int8_cpu.onnx"
    if cfg.bench.samples == 0 or not model.is_file():
        return []
    paths = [r.path for r in prepare_data(cfg).val[: cfg.bench.samples]]
    with load_runtime(model, backend="ort-cpu") as rt:
        predict_paths(rt, paths, run / "predict")
    return sorted((run / "predict").glob("*.png"))


def stage_sections() -> dict[str, list[str]]:
    """The config sections each stage's artifacts are built from (what its config hash covers)."""
    from ghostq.compress.pipeline import SECTIONS as COMPRESS_SECTIONS
    from ghostq.detect.train import TRAIN_SECTIONS
    from ghostq.export.pipeline import SECTIONS as EXPORT_SECTIONS

    return {"train": list(TRAIN_SECTIONS), "compress": [*COMPRESS_SECTIONS, "compress"],
            "export": [*EXPORT_SECTIONS, "export"], "bench": ["bench"]}


def run_pipeline(cfg: Config, force: bool = False, say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run every stage of `cfg` in order; returns the report path and each stage's status."""
    run = RunDir(cfg.run_dir)
    with run.lock("ghostq run"):
        if not force:
            run.require_same_config(cfg.model_dump(mode="json"), stage_sections())
        return _run_stages(cfg, run, force, say)


def _run_stages(cfg: Config, run: RunDir, force: bool, say: Callable[[str], Any]) -> dict[str, Any]:
    from ghostq.compress.pipeline import compress
    from ghostq.core.atomic import atomic_write_json
    from ghostq.deploy.report import write_report
    from ghostq.detect.train import train
    from ghostq.export.pipeline import run_export

    status: dict[str, str] = {}
    say("[1/5] train")
    status["train"] = "skipped (current)" if train(cfg, force=force).skipped else "done"
    say("[2/5] compress")
    status["compress"] = "skipped (current)" if compress(cfg, force=force).skipped else "done"
    say("[3/5] export + verify")
    exported = run_export(cfg, force=force)
    status["export"] = "skipped (current)" if exported.skipped else "done"
    for msg in exported.messages:
        say(f"      {msg}")
    say("[4/5] bench (ONNX Runtime, models interleaved)")
    status["bench"] = "done" if bench_stage(cfg, force=force) else "skipped (current)"
    say("[5/5] report")
    report = write_report(cfg.run_dir)
    status["report"] = "done"
    run.write_config(cfg.model_dump(mode="json"))  # every stage is now built from this config
    summary = {"report": str(report), "stages": status}
    atomic_write_json(run / "run_summary.json", summary)
    return summary
