"""End-to-end latency, image file to boxes: decode + letterbox + inference + decoding / NMS (+ tiling), per image.

Each image is timed with one clock (``perf_counter_ns``) read at every step boundary, so the steps of an image sum
to its total exactly: ``decode`` (file -> H x W x C uint8), ``letterbox`` (every tile letterboxed into the float
batch), ``inference`` (``Runtime.run``, host to host), ``postprocess`` (score threshold, top-k, class-wise NMS,
boxes back to image pixels; with tiling also the merge across tiles). Percentiles per step and of the total, and
each step's share of the mean total, are reported; batch 1 without tiling (one image per inference), tiles in
batches of ``batch_size`` with it.

Two pipelines over the same runtime, so a change is measured before and after in one interleaved run:
- ``baseline``: the code as it was before issue 13 (``load_input_image``, the uint8-canvas letterbox stacked and
  transposed into a new float batch, ``Runtime.infer`` with :func:`ghostq.core.detections.decode`);
- ``fast``: one-copy decode, the letterbox written straight into a reused float batch
  (:func:`ghostq.deploy.preprocess.preprocess` with ``out``), vectorised decoding / NMS
  (:mod:`ghostq.deploy.postprocess`). Both give the same detections (tested).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ghostq.core.detections import Detections, decode_outputs
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Runtime
from ghostq.core.tiling import load_input_image, merge_tiles, prediction_windows, to_image_frame
from ghostq.deploy.bench import backend_cell, latency_stats
from ghostq.deploy.machine import machine_info
from ghostq.deploy.postprocess import decode_outputs_fast
from ghostq.deploy.preprocess import Letterbox, letterbox_image, preprocess

STEPS = ("decode", "letterbox", "inference", "postprocess")
PIPELINES = ("fast", "baseline")


@dataclass(frozen=True)
class E2ESettings:
    """How images are timed end to end."""

    rounds: int = 3  # passes over the image list (each image timed once per pass)
    warmup: int = 3  # untimed images first (each runtime / pipeline)
    tile: int | None = None  # tile side (None: the whole image, letterboxed)
    overlap: int = 200  # tile overlap
    batch_size: int = 8  # tiles per inference

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.warmup < 0 or self.batch_size < 1:
            raise GhostqError(f"need rounds >= 1, warmup >= 0, batch_size >= 1; got {self.rounds}, {self.warmup}, "
                              f"{self.batch_size}")  # fmt: skip
        if self.tile is not None and (self.tile < 32 or not 0 <= self.overlap < self.tile):
            raise GhostqError(f"--tile must be >= 32 and --overlap in [0, tile), got {self.tile}, {self.overlap}")


class StepClock:
    """Time spent per step of one image, from one clock read at each step boundary (ns, integers)."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STEPS, 0)
        self.start = self.last = time.perf_counter_ns()

    def mark(self, step: str) -> None:
        now = time.perf_counter_ns()
        self.spent[step] += now - self.last
        self.last = now

    def total(self) -> int:
        return self.last - self.start


def read_image(path: Path, channels: int) -> np.ndarray:
    """An RGB image file as H x W x 3 uint8 with one copy (PIL's decode into numpy); other modes and RGB + IR
    inputs through :func:`ghostq.core.tiling.load_input_image`, which converts them."""
    if channels == 3:
        try:
            with Image.open(path) as im:
                if im.mode == "RGB":
                    im.load()
                    return np.asarray(im)
        except OSError:
            pass  # the full reader names the file in its error
    return load_input_image(path, channels)


def _preprocess_baseline(images: list[np.ndarray], size: int) -> tuple[np.ndarray, list[Letterbox]]:
    """The letterbox before issue 13: a uint8 canvas per image, stacked, transposed, converted, divided."""
    canvases, boxes = zip(*(letterbox_image(im, size) for im in images), strict=True)
    batch = np.stack(canvases).transpose(0, 3, 1, 2).astype(np.float32)
    batch /= np.float32(255.0)
    return np.ascontiguousarray(batch), list(boxes)


class Pipeline:
    """Image file -> detections in image pixels on one runtime, timed step by step (``fast`` or ``baseline``)."""

    def __init__(self, runtime: Runtime, kind: str, settings: E2ESettings) -> None:
        if kind not in PIPELINES:
            raise GhostqError(f"pipeline must be one of {', '.join(PIPELINES)}, got {kind!r}")
        self.runtime, self.kind, self.settings = runtime, kind, settings
        self._buffers: dict[int, np.ndarray] = {}  # batch size -> reused float batch (fast)

    def _batch(self, crops: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        size = self.runtime.info.img_size
        if self.kind == "baseline":
            return _preprocess_baseline(crops, size)
        buf = self._buffers.get(len(crops))
        if buf is None:
            buf = self._buffers[len(crops)] = np.empty((len(crops), crops[0].shape[2], size, size), np.float32)
        return preprocess(crops, size, out=buf)

    def detect(self, path: Path, clock: StepClock) -> Detections:
        """Detections of one image file; each step's time added to ``clock``."""
        rt, s = self.runtime, self.settings
        info = rt.info
        image = load_input_image(path, info.in_channels) if self.kind == "baseline" else read_image(
            path, info.in_channels)  # fmt: skip
        clock.mark("decode")
        height, width = image.shape[:2]
        windows = prediction_windows(width, height, s.tile, s.overlap)
        step = info.batch or s.batch_size
        boxes, scores, labels, cuts = [], [], [], []
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in chunk]
            if info.batch is not None:
                crops += [crops[-1]] * (step - len(crops))
            batch, placements = self._batch(crops)
            clock.mark("letterbox")
            outputs = rt.run(batch)
            clock.mark("inference")
            decode = decode_outputs if self.kind == "baseline" else decode_outputs_fast  # baseline = Runtime.infer
            dets = decode(outputs, rt.decode, (info.img_size, info.img_size), batch_size=len(batch))
            for det, lb, window in zip(dets, placements, chunk, strict=False):
                b, cut = to_image_frame(det.boxes, lb.ratio, lb.pad, window, width, height)
                boxes.append(b)
                scores.append(det.scores)
                labels.append(det.labels)
                cuts.append(cut)
            clock.mark("postprocess")
        out = Detections(np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels))
        if len(windows) > 1:
            # as deploy.predict.detect_image: up to max_det per tile survive the merge
            out = merge_tiles(out, np.concatenate(cuts), rt.decode.iou_threshold, rt.decode.max_det * len(windows))
        clock.mark("postprocess")
        return out


Entry = tuple[str, Runtime, str]  # (label, runtime, pipeline kind)


def _summary(clocks: list[StepClock]) -> dict[str, Any]:
    """Percentiles per step and of the total (ms), each step's share of the mean total, and the check that the
    steps sum to the total."""
    totals = [c.total() / 1e6 for c in clocks]
    steps = {k: latency_stats([c.spent[k] / 1e6 for c in clocks], 1) for k in STEPS}
    total = latency_stats(totals, 1)
    residual = max(abs(sum(c.spent.values()) - c.total()) for c in clocks)  # ns; 0 by construction
    return {
        "total": total,
        "steps": steps,
        "share": {k: steps[k]["mean_ms"] / total["mean_ms"] if total["mean_ms"] > 0 else 0.0 for k in STEPS},
        "sum_residual_ns": int(residual),
        "times_ms": {"total": [round(t, 4) for t in totals],
                     **{k: [round(c.spent[k] / 1e6, 4) for c in clocks] for k in STEPS}},
    }  # fmt: skip


def run_e2e(entries: Sequence[Entry], paths: Sequence[Path], settings: E2ESettings = E2ESettings()) -> dict[str, Any]:
    """Time every entry on every image, interleaved (image 1 on A, B, ...; image 2 on A, B, ...), ``rounds``
    passes; per entry the step and total percentiles and shares."""
    if not paths:
        raise GhostqError("--e2e found no images (give image files or folders holding .png / .jpg / .tif ...)")
    labels = [label for label, _, _ in entries]
    if len(set(labels)) != len(labels):
        raise GhostqError(f"e2e entries need distinct labels, got {labels}")
    pipes = [Pipeline(rt, kind, settings) for _, rt, kind in entries]
    for k in range(settings.warmup):
        for pipe in pipes:
            pipe.detect(Path(paths[k % len(paths)]), StepClock())
    clocks: list[list[StepClock]] = [[] for _ in pipes]
    counts: list[list[int]] = [[] for _ in pipes]
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(settings.rounds):
            for path in paths:
                for k, pipe in enumerate(pipes):
                    clock = StepClock()
                    dets = pipe.detect(Path(path), clock)
                    clocks[k].append(clock)
                    counts[k].append(len(dets))
    finally:
        if enabled:
            gc.enable()
    results = {}
    for (label, rt, kind), cl, n in zip(entries, clocks, counts, strict=True):
        results[label] = {**_summary(cl), "pipeline": kind, "runtime": rt.describe(),
                          "detections_mean": float(np.mean(n))}  # fmt: skip
    return {
        "kind": "e2e",
        "entries": labels,
        "images": [str(p) for p in paths],
        "settings": {"rounds": settings.rounds, "warmup": settings.warmup, "tile": settings.tile,
                     "overlap": settings.overlap, "batch_size": settings.batch_size},  # fmt: skip
        "decode_settings": {label: vars(rt.decode) for label, rt, _ in entries},
        "timed": "per image: " + " + ".join(STEPS) + " (one clock; the steps sum to the total)",
        "results": results,
        "machine": machine_info(),
    }


def e2e_markdown(result: dict[str, Any]) -> str:
    """A markdown table: per entry the total's p50 / p90 / p99 and each step's p50 and share of the mean."""
    head = "| model | backend | pipeline | total p50 | p90 | p99 | " + " | ".join(
        f"{k} p50 (share)" for k in STEPS) + " |"  # fmt: skip
    lines = [head, "|---|---|---|" + "---:|" * (3 + len(STEPS))]
    for label in result["entries"]:
        r = result["results"][label]
        t = r["total"]
        cells = [f"{r['steps'][k]['p50_ms']:.2f} ({100 * r['share'][k]:.0f}%)" for k in STEPS]
        lines.append(f"| {label} | {backend_cell(r['runtime'])} | {r['pipeline']} | {t['p50_ms']:.2f} | "
                     f"{t['p90_ms']:.2f} | {t['p99_ms']:.2f} | " + " | ".join(cells) + " |")  # fmt: skip
    s = result["settings"]
    lines += ["", f"{len(result['images'])} images x {s['rounds']} rounds, interleaved; ms; tile {s['tile']}; "
              f"share = step mean / total mean"]  # fmt: skip
    isa = result["machine"].get("cpu_isa")
    if isa:
        lines.append(f"Machine: {result['machine']['cpu']}; int8 {isa['int8']}, bf16 {isa['bf16']}")
    return "\n".join(lines) + "\n"
