"""The bench stage: time the exported ONNX files interleaved on the configured runtime -> bench/ort_cpu.json,
and draw the INT8 (CPU form) model's detections on a few val images into predict/ for the report."""

from __future__ import annotations

from pathlib import Path

from ghostq.core.config import Config
from ghostq.stages.runner import Session, session

EXPORTED = ("model_fp32.onnx", "model_fp16.onnx", "model_int8.onnx", "model_int8_cpu.onnx")


def bench(cfg: Config, *, force: bool = False, within: Session | None = None) -> bool:
    """Run the bench stage of `cfg`; False when it was current and skipped."""
    from ghostq.core.atomic import atomic_write_json
    from ghostq.deploy.bench import BenchSettings, compare

    with session(cfg, "ghostq bench", device=False, given=within) as s:
        export = s.run / "export"
        files = [export / f for f in EXPORTED if (export / f).is_file()]
        digest = s.digest("bench")
        if s.is_current("bench", digest, files, force=force):
            return False
        b = cfg.bench
        settings = BenchSettings(batches=tuple(b.batches), warmup=b.warmup, iters=b.iters, threads=b.threads or None)
        with s.record("bench", digest, files) as stage:
            timings = compare(files, backend=b.backend, settings=settings)
            stage.add_artifact(atomic_write_json(s.run / "bench" / "ort_cpu.json", timings))
            for png in _sample_predictions(s):
                stage.add_artifact(png)
        return True
    raise AssertionError("unreachable")  # the session does not swallow exceptions


def _sample_predictions(s: Session) -> list[Path]:
    """Draw the INT8 (CPU form) model's detections on `bench.samples` val images into predict/."""
    from ghostq.deploy import load_runtime
    from ghostq.deploy.predict import predict_paths

    model = s.run / "export" / "model_int8_cpu.onnx"
    if s.cfg.bench.samples == 0 or not model.is_file():
        return []
    paths = [r.path for r in s.data().val[: s.cfg.bench.samples]]
    with load_runtime(model, backend="ort-cpu") as rt:
        predict_paths(rt, paths, s.run / "predict")
    return sorted((s.run / "predict").glob("*.png"))
