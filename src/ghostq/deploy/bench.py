"""Latency benchmark of deployed models: warm-up, N timed runs per batch size, percentiles, throughput, memory.

What is timed: one ``Runtime.run(batch)`` = input from host memory to outputs in host memory (host <-> device
copies included on GPUs), no letterbox, no decoding, no NMS outside the graph. The input is a fixed random
batch in [0, 1] (seeded). The garbage collector is paused while timing. Threads are fixed: CPU backends get
``threads`` (default: every core this process may use) intra-op threads and one inter-op thread.

``compare`` interleaves models (A B A B ..., warm-up interleaved too) so that drift of the machine (clocks,
heat, other load) falls on every model alike, and reports ``ratio = p50(A) / p50(B)`` (> 1: B is faster).
Its ONNX Runtime sessions do not spin (idle threads sleep): a session whose threads busy-wait after its run
would take the cores from the next model in the interleaving.

On a Jetson, ``tegrastats`` runs alongside the timed runs: mean / max input power, GPU load, RAM, and the
energy per image = mean input power x mean latency / batch.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Runtime, default_backend, get_backend, load_runtime
from ghostq.deploy.jetson import TegrastatsMonitor, is_jetson, summarize
from ghostq.deploy.machine import cpu_threads_default, machine_info, memory_mb

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class BenchSettings:
    """How a model is timed."""

    batches: tuple[int, ...] = (1,)  # batch sizes, each timed separately
    warmup: int = 10  # untimed runs per batch size first (allocations, kernel selection, clocks ramp up)
    iters: int = 100  # timed runs per batch size
    threads: int | None = None  # CPU threads; None: every core this process may use
    seed: int = 0  # of the random input
    telemetry: bool = True  # tegrastats alongside the timed runs (Jetson only)

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise GhostqError(f"batch sizes must be >= 1, got {list(self.batches)}")
        if self.warmup < 0 or self.iters < 1:
            raise GhostqError(f"need warmup >= 0 and iters >= 1, got {self.warmup} and {self.iters}")
        if self.threads is not None and self.threads < 1:
            raise GhostqError(f"threads must be >= 1, got {self.threads}")

    def resolved_threads(self) -> int:
        return self.threads or cpu_threads_default()


def latency_stats(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    """p50/p90/p95/p99, mean, std (sample), min, max in ms, and throughput in images/s (batch / mean)."""
    t = np.asarray(times_ms, np.float64)
    out = {f"p{p}_ms": float(np.percentile(t, p)) for p in PERCENTILES}
    out["mean_ms"] = float(t.mean())
    out["std_ms"] = float(t.std(ddof=1)) if len(t) > 1 else 0.0
    out["min_ms"], out["max_ms"] = float(t.min()), float(t.max())
    out["throughput_ips"] = batch * 1000.0 / out["mean_ms"] if out["mean_ms"] > 0 else float("inf")
    out["iters"] = len(t)
    return out


def random_batch(runtime: Runtime, batch: int, seed: int) -> np.ndarray:
    s, c = runtime.info.img_size, runtime.info.in_channels
    return np.random.default_rng(seed).random((batch, c, s, s), dtype=np.float32)


def _time_once(runtime: Runtime, x: np.ndarray) -> float:
    t0 = time.perf_counter_ns()
    runtime.run(x)
    return (time.perf_counter_ns() - t0) / 1e6


def _timed(fn: Callable[[], None], monitor: bool) -> list[Any]:
    """Run fn with gc paused (and tegrastats alongside when asked); returns the telemetry samples."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        if monitor:
            with TegrastatsMonitor() as mon:
                fn()
            return mon.samples
        fn()
        return []
    finally:
        if enabled:
            gc.enable()


def _telemetry(samples: list[Any], stats: dict[str, float], batch: int) -> dict[str, Any]:
    tele = summarize(samples)
    if "power_mw_mean" in tele:
        tele["energy_mj_per_image"] = tele["power_mw_mean"] * stats["mean_ms"] / 1000.0 / batch
    return tele


def bench_runtime(runtime: Runtime, settings: BenchSettings) -> dict[str, Any]:
    """Time one loaded runtime at every batch size of ``settings``."""
    monitor = settings.telemetry and is_jetson()
    results: dict[str, Any] = {}
    for batch in settings.batches:
        x = random_batch(runtime, batch, settings.seed)
        for _ in range(settings.warmup):
            runtime.run(x)
        times: list[float] = []

        def loop(x: np.ndarray = x, times: list[float] = times) -> None:
            for _ in range(settings.iters):
                times.append(_time_once(runtime, x))

        samples = _timed(loop, monitor)
        stats = latency_stats(times, batch)
        entry: dict[str, Any] = {**stats, "times_ms": [round(t, 4) for t in times], **memory_mb()}
        if monitor:
            entry["telemetry"] = _telemetry(samples, stats, batch)
        results[str(batch)] = entry
    return results


def open_for_timing(
    path: str | Path, backend: str | None, settings: BenchSettings, interleaved: bool, **kw: Any
) -> Runtime:
    """Load a model for timing: CPU backends get the settings' threads; interleaved ONNX Runtime sessions do not
    spin."""
    entry = get_backend(backend or default_backend(path))
    backend = entry.name
    threads = settings.resolved_threads() if entry.cpu_threads else None  # CPU backends: threads fixed
    if interleaved and "spinning" in entry.options:
        kw.setdefault("spinning", False)  # a session's idle threads must not busy-wait while the next one runs
    return load_runtime(path, backend, threads=threads, **kw)


def bench_model(
    path: str | Path, backend: str | None = None, settings: BenchSettings = BenchSettings(), **kw: Any
) -> dict[str, Any]:
    """Load ``path`` on ``backend`` and time it; the result records the model, settings and machine."""
    before = memory_mb().get("rss_mb")
    with open_for_timing(path, backend, settings, False, **kw) as rt:
        after = memory_mb().get("rss_mb")
        results = bench_runtime(rt, settings)
        return {
            "kind": "bench",
            "runtime": rt.describe(),
            "input": [rt.info.in_channels, rt.info.img_size, rt.info.img_size],
            "settings": _settings_dict(settings),
            "timed": "Runtime.run: host input -> host outputs; no letterbox, no decoding",
            "load_rss_mb": (after - before) if before is not None and after is not None else None,
            "batches": results,
            "machine": machine_info(),
        }


def _labels(paths: Sequence[str | Path]) -> list[str]:
    names = [Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def compare(
    paths: Sequence[str | Path], backend: str | None = None, settings: BenchSettings = BenchSettings(), **kw: Any
) -> dict[str, Any]:
    """Time several models interleaved (A B A B ...); ``ratio`` = p50(first) / p50(second) at the first batch
    size, ``ratios[batch][model]`` = p50(first) / p50(model) for every other model and batch size."""
    if len(paths) < 2:
        raise GhostqError("--compare needs at least two models")
    runtimes: list[Runtime] = []
    try:
        for p in paths:
            runtimes.append(open_for_timing(p, backend, settings, True, **kw))
        return compare_runtimes(list(zip(_labels(paths), runtimes, strict=True)), settings)
    finally:
        for rt in runtimes:
            rt.close()


def compare_runtimes(entries: Sequence[tuple[str, Runtime]], settings: BenchSettings) -> dict[str, Any]:
    """Time loaded runtimes interleaved (any mix of backends and files: ONNX Runtime and OpenVINO on the same
    files in one run); the result of :func:`compare`, labels as given."""
    labels = [label for label, _ in entries]
    runtimes = [rt for _, rt in entries]
    if len(set(labels)) != len(labels):
        raise GhostqError(f"interleaved models need distinct labels, got {labels}")
    shapes = {(rt.info.in_channels, rt.info.img_size) for rt in runtimes}
    if len(shapes) > 1:
        raise GhostqError(f"the models take different inputs ({sorted(shapes)}); compare like with like")
    monitor = settings.telemetry and is_jetson()
    per_batch: dict[str, Any] = {}
    ratios: dict[str, dict[str, float]] = {}
    for batch in settings.batches:
        x = random_batch(runtimes[0], batch, settings.seed)
        for _ in range(settings.warmup):
            for rt in runtimes:
                rt.run(x)
        times: list[list[float]] = [[] for _ in runtimes]

        def loop(x: np.ndarray = x, times: list[list[float]] = times) -> None:
            for _ in range(settings.iters):
                for k, rt in enumerate(runtimes):
                    times[k].append(_time_once(rt, x))

        samples = _timed(loop, monitor)
        stats = {label: latency_stats(t, batch) for label, t in zip(labels, times, strict=True)}
        for label, t in zip(labels, times, strict=True):
            stats[label]["times_ms"] = [round(v, 4) for v in t]
        entry: dict[str, Any] = {"models": stats, **memory_mb()}
        if monitor:  # one power trace for the interleaved run: shared by the models
            entry["telemetry"] = summarize(samples)
        per_batch[str(batch)] = entry
        first = stats[labels[0]]["p50_ms"]
        ratios[str(batch)] = {lab: first / stats[lab]["p50_ms"] for lab in labels[1:]}
    return {
        "kind": "compare",
        "models": labels,
        "ratio": ratios[str(settings.batches[0])][labels[1]] if len(labels) > 1 else 1.0,
        "ratio_definition": f"p50 latency of {labels[0]} / p50 latency of {labels[min(1, len(labels) - 1)]} at "
        f"batch {settings.batches[0]} (> 1: the second is faster)",
        "ratios": ratios,
        "runtimes": [rt.describe() for rt in runtimes],
        "settings": _settings_dict(settings),
        "timed": "Runtime.run: host input -> host outputs; no letterbox, no decoding; models interleaved",
        "batches": per_batch,
        "machine": machine_info(),
    }


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    return {
        "batches": list(settings.batches),
        "warmup": settings.warmup,
        "iters": settings.iters,
        "threads": settings.resolved_threads(),
        "seed": settings.seed,
    }


def markdown(result: dict[str, Any]) -> str:
    """A markdown table of a ``bench_model`` or ``compare`` result (latencies in ms)."""
    lines = [
        "| model | backend | batch | p50 | p90 | p95 | p99 | mean | std | images/s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if result["kind"] == "bench":
        rt = result["runtime"]
        rows = [(Path(rt["model"]).name, backend_cell(rt), b, e) for b, e in result["batches"].items()]
    else:
        backends = [backend_cell(r) for r in result["runtimes"]]
        rows = [
            (lab, backends[k], b, {**e["models"][lab], "peak_rss_mb": e.get("peak_rss_mb")})
            for b, e in result["batches"].items()
            for k, lab in enumerate(result["models"])
        ]
    for name, backend, b, e in rows:
        cells = [f"{e[k]:.2f}" for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms")]
        rss = e.get("peak_rss_mb")
        cells += [f"{e['throughput_ips']:.1f}", f"{rss:.0f}" if rss is not None else "-"]
        lines.append(f"| {name} | {backend} | {b} | " + " | ".join(cells) + " |")
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines += [
        "",
        f"Machine: {m['cpu']} ({m['cpu_usable']} usable cores); threads {result['settings']['threads']}; {versions}",
    ]
    isa = m.get("cpu_isa")
    if isa:
        lines.append(f"CPU instruction sets: int8 {isa['int8']}, bf16 {isa['bf16']}; flags {' '.join(isa['flags'])}")
    if m.get("gpus"):
        lines.append("GPU: " + "; ".join(g["name"] for g in m["gpus"]))
    if m.get("jetson"):
        j = m["jetson"]
        lines.append(f"Jetson: {j.get('model')}, L4T {j.get('l4t')}, power mode {j.get('power_mode')}")
    if result["kind"] == "compare":
        lines.append("")
        for b, r in result["ratios"].items():
            lines += [f"Batch {b}: p50({result['models'][0]}) / p50({lab}) = {v:.2f}" for lab, v in r.items()]
    return "\n".join(lines) + "\n"


def backend_cell(runtime: dict[str, Any]) -> str:
    """The backend with the precision it ran at ("ov-cpu (bf16)", "ort-cpu (int8)") when the runtime says."""
    precision = runtime.get("precision")
    return f"{runtime['backend']} ({precision})" if precision else str(runtime["backend"])


def plot_latency(result: dict[str, Any], path: str | Path) -> Path:
    """PNG of the latency distributions (one box per model and batch size, every timed run as a dot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GhostqError("plots need matplotlib (pip install matplotlib)") from None
    from ghostq.core.atomic import atomic_path

    series: list[tuple[str, list[float]]] = []
    for b, e in result["batches"].items():
        if result["kind"] == "bench":
            series.append((f"{Path(result['runtime']['model']).name}\nbatch {b}", e["times_ms"]))
        else:
            series += [(f"{Path(lab).name}\nbatch {b}", e["models"][lab]["times_ms"]) for lab in result["models"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(series)), 3.6), dpi=120)
    ax.boxplot([t for _, t in series], showfliers=False, whis=(1, 99))
    rng = np.random.default_rng(0)
    for k, (_, t) in enumerate(series, start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(t)), t, s=4, alpha=0.4, color="tab:blue")
    ax.set_xticks(range(1, len(series) + 1), [name for name, _ in series], fontsize=7)
    lo, hi = min(min(t) for _, t in series), max(max(t) for _, t in series)
    if lo > 0 and hi / lo > 20:  # models far apart: a log axis keeps the fast one readable
        ax.set_yscale("log")
    ax.set_ylabel("latency per run (ms)")
    ax.set_title("latency distribution (box: p25-p75, whiskers: p1-p99)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
