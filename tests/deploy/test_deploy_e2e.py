"""End-to-end timing and the fast pre/post-processing: the step breakdown sums to the total, the fast pipeline gives
the baseline's detections, the letterbox written into the float batch equals the canvas route bit for bit, and the
vectorised decoding / NMS equals ghostq.core's (ties and max_det included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx_models import scene
from PIL import Image

from ghostq.core.detections import DecodeSettings, decode
from ghostq.core.errors import GhostqError
from ghostq.core.nms import batched_nms
from ghostq.core.nms_fast import batched_nms_fast
from ghostq.deploy import load_runtime
from ghostq.deploy.e2e import STEPS, E2ESettings, Pipeline, StepClock, _preprocess_baseline, e2e_markdown, run_e2e
from ghostq.deploy.postprocess import decode_fast, top_candidates
from ghostq.deploy.predict import detect_image
from ghostq.deploy.preprocess import preprocess

pytest.importorskip("onnxruntime")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    scenes = {"a.png": (140, 90, (10, 20, 40, 50)), "b.jpg": (64, 64, (5, 5, 30, 60)),
              "c.png": (90, 200, (50, 120, 80, 190))}  # fmt: skip
    for name, (w, h, box) in scenes.items():
        Image.fromarray(scene(w, h, box)).save(folder / name)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("tile", [None, 64])
def test_steps_sum_to_the_total(blob_onnx: Path, images: list[Path], tile: int | None) -> None:
    with load_runtime(blob_onnx, threads=1) as rt:
        entries = [("fast", rt, "fast"), ("baseline", rt, "baseline")]
        result = run_e2e(entries, images, E2ESettings(rounds=2, warmup=1, tile=tile, overlap=16))
    assert result["entries"] == ["fast", "baseline"] and result["settings"]["tile"] == tile
    for label in ("fast", "baseline"):
        r = result["results"][label]
        assert r["sum_residual_ns"] == 0 and r["total"]["iters"] == 2 * len(images)
        per_image = np.sum([r["times_ms"][k] for k in STEPS], axis=0)  # rounded to 0.1 us per step
        np.testing.assert_allclose(per_image, r["times_ms"]["total"], atol=5e-4)
        step_means = sum(r["steps"][k]["mean_ms"] for k in STEPS)
        assert step_means == pytest.approx(r["total"]["mean_ms"], rel=1e-9)
        assert sum(r["share"].values()) == pytest.approx(1.0, rel=1e-9)
        assert all(r["steps"][k]["min_ms"] >= 0 for k in STEPS) and r["steps"]["inference"]["mean_ms"] > 0
        assert r["detections_mean"] >= 1.0 if tile else r["detections_mean"] == 1.0  # one bright rectangle each
    fast, base = result["results"]["fast"], result["results"]["baseline"]
    assert fast["detections_mean"] == base["detections_mean"]
    assert "decode p50 (share)" in e2e_markdown(result)


def test_step_clock_splits_one_reading() -> None:
    clock = StepClock()
    for step in (*STEPS, "postprocess"):
        clock.mark(step)
    assert sum(clock.spent.values()) == clock.total() >= 0


def test_fast_pipeline_gives_the_baseline_detections(blob_onnx: Path, images: list[Path]) -> None:
    with load_runtime(blob_onnx, threads=1) as rt:
        for tile in (None, 64):
            settings = E2ESettings(tile=tile, overlap=16)
            fast, base = Pipeline(rt, "fast", settings), Pipeline(rt, "baseline", settings)
            for path in images:
                a, b = fast.detect(path, StepClock()), base.detect(path, StepClock())
                assert len(a) == len(b) >= 1
                np.testing.assert_array_equal(a.labels, b.labels)
                np.testing.assert_array_equal(a.boxes, b.boxes)
                np.testing.assert_array_equal(a.scores, b.scores)
        for path in images:  # the fast pipeline is ghostq predict's path, tiled or not
            image = np.asarray(Image.open(path).convert("RGB"))
            want = detect_image(rt, image, tile=64, overlap=16)
            got = Pipeline(rt, "fast", E2ESettings(tile=64, overlap=16)).detect(path, StepClock())
            np.testing.assert_array_equal(got.boxes, want.boxes)
    with pytest.raises(GhostqError, match="pipeline must be"):
        Pipeline(rt, "turbo", E2ESettings())
    with pytest.raises(GhostqError, match="no images"):
        run_e2e([("x", rt, "fast")], [])


def test_letterbox_into_the_batch_equals_the_canvas_route() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        channels = int(rng.choice([1, 3, 4]))
        sizes = [(int(rng.integers(1, 200)), int(rng.integers(1, 200))) for _ in range(int(rng.integers(1, 4)))]
        imgs = [rng.integers(0, 256, (h, w, channels), dtype=np.uint8) for h, w in sizes]
        size = int(rng.choice([32, 64, 100]))
        want, want_lb = _preprocess_baseline(imgs, size)
        got, got_lb = preprocess(imgs, size)
        assert np.array_equal(got, want) and got_lb == want_lb, trial
        buf = np.empty_like(want)
        assert preprocess(imgs, size, out=buf)[0] is buf and np.array_equal(buf, want)
    with pytest.raises(ValueError, match="out must be"):
        preprocess([imgs[0]], size, out=np.empty((9, 1, 1, 1), np.float32))


def _clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = rng.uniform(0, 100, (max(1, n // 5), 2))
    c = centres[rng.integers(0, len(centres), n)] + rng.normal(0, rng.choice([0.5, 3.0, 10.0]), (n, 2))
    wh = rng.uniform(2, 30, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)


def test_vectorised_nms_equals_the_reference() -> None:
    rng = np.random.default_rng(1)
    for trial in range(150):
        n = int(rng.integers(0, 300))
        boxes = _clustered(rng, n)
        boxes = np.round(boxes) if trial % 3 == 0 else boxes  # exact ties of IoU
        scores = rng.random(n).astype(np.float32)
        scores = np.round(scores * 10) / 10 if trial % 2 == 0 else scores  # score ties
        labels = rng.integers(0, int(rng.integers(1, 6)), n)
        iou = float(rng.choice([0.3, 0.5, 0.7]))
        max_det = int(rng.choice([3, 50, 1000]))
        want = batched_nms(boxes, scores, labels, iou)[:max_det]
        np.testing.assert_array_equal(batched_nms_fast(boxes, scores, labels, iou, max_det), want, err_msg=str(trial))


@pytest.mark.parametrize("chunk", [16, 64])
def test_vectorised_nms_across_chunks_equals_the_reference(chunk: int, monkeypatch) -> None:
    """Small chunks: most boxes meet the kept ones through the x sweep (and the dense fallback), not the chunk."""
    import ghostq.core.nms_fast as nms_fast

    monkeypatch.setattr(nms_fast, "CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    for trial in range(60):
        n = int(rng.integers(0, 400))
        boxes = _clustered(rng, n)
        if trial % 2:  # spread groups over a 3000 px scene: the sweep scores few pairs
            off = rng.uniform(0, 3000, (1 + n // 20, 2))[rng.integers(0, 1 + n // 20, n)]
            boxes = (boxes + np.concatenate([off, off], 1)).astype(np.float32)
        boxes = np.round(boxes) if trial % 3 == 0 else boxes
        scores = rng.random(n).astype(np.float32)
        scores = np.round(scores * 10) / 10 if trial % 2 == 0 else scores
        labels = rng.integers(0, int(rng.integers(1, 4)), n)
        iou = float(rng.choice([0.3, 0.5, 0.7]))
        want = batched_nms(boxes, scores, labels, iou)
        np.testing.assert_array_equal(batched_nms_fast(boxes, scores, labels, iou), want, err_msg=str(trial))


def test_a_long_chain_of_overlaps_is_resolved_exactly() -> None:
    """Boxes each overlapping the next one only: past the fixed-point rounds the sequential walk decides."""
    n = 300
    x = np.arange(n, dtype=np.float32) * 4.0
    boxes = np.stack([x, np.zeros(n, np.float32), x + 10, np.full(n, 10, np.float32)], 1)
    scores = np.linspace(1, 0.1, n).astype(np.float32)
    labels = np.zeros(n, np.int64)
    np.testing.assert_array_equal(batched_nms_fast(boxes, scores, labels, 0.5), batched_nms(boxes, scores, labels, 0.5))


def test_vectorised_decode_equals_the_reference() -> None:
    rng = np.random.default_rng(2)
    assert top_candidates(np.array([0.5, 0.9, 0.5, 0.5, 0.1], np.float32), 0.2, 3).tolist() == [0, 1, 2]
    for trial in range(40):
        n, c = int(rng.integers(1, 300)), int(rng.integers(1, 6))
        scores = rng.random((2, n, c)).astype(np.float32) ** 3
        scores = np.round(scores * 20) / 20 if trial % 2 else scores
        xy = rng.uniform(-10, 70, (2, n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 20, (2, n, 2))], -1).astype(np.float32)
        s = DecodeSettings(float(rng.choice([0.001, 0.05, 0.3])), 0.6, int(rng.choice([5, 300])),
                           int(rng.choice([10, 100, 3000])))  # fmt: skip
        for want, got in zip(decode(scores, boxes, s, (64, 64)), decode_fast(scores, boxes, s, (64, 64)), strict=True):
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got.labels, want.labels)


def test_cli_e2e_writes_json(blob_onnx: Path, images: list[Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ghostq.cli.app import app

    out = tmp_path / "e2e.json"
    args = ["bench", "--model", str(blob_onnx), "--e2e", str(images[0].parent), "--rounds", "1", "--threads", "1",
            "--pipeline", "both", "--json", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["kind"] == "e2e" and data["entries"] == ["blob.onnx [fast]", "blob.onnx [baseline]"]
    assert data["machine"]["cpu_isa"]["int8"] and data["results"]["blob.onnx [fast]"]["sum_residual_ns"] == 0
    bad = CliRunner().invoke(app, ["bench", "--model", str(blob_onnx), "--e2e", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "--e2e image or folder not found" in f"{bad.output} {bad.exception}"
