"""Tiled predict on a dense image: more objects than `max_det` come back (one per object), whole-image
inference stops at `max_det` (the reason dense satellite scenes need tiling or a raised limit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ghostq.core.detections import DecodeSettings
from ghostq.core.runtime import ModelInfo, Runtime
from ghostq.core.tiling import CONTAINED, drop_cut_pieces
from ghostq.deploy.predict import detect_image

SLOTS = 4096  # candidate points of the fake graph


class BrightSquares(Runtime):
    """A stand-in detector: every bright connected blob of the input is one object (score 0.9)."""

    backend = "fake"

    def __init__(self, size: int, decode: DecodeSettings) -> None:
        super().__init__(decode)
        self.info = ModelInfo(path=Path("bright.fake"), img_size=size, in_channels=3, classes=("tank",))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        scores = np.zeros((len(batch), SLOTS, 1), np.float32)
        boxes = np.zeros((len(batch), SLOTS, 4), np.float32)
        for b, image in enumerate(batch):
            labels, _ = ndimage.label(image.mean(0) > 0.8)
            for k, (ys, xs) in enumerate(ndimage.find_objects(labels)[:SLOTS]):
                boxes[b, k] = (xs.start, ys.start, xs.stop, ys.stop)
                scores[b, k, 0] = 0.9
        return {"scores": scores, "boxes": boxes}

    def close(self) -> None:
        pass


def _dense_scene(side: int = 1000, step: int = 32, box: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a grid of white squares (an oil-tank farm): the image and the squares' boxes."""
    image = np.full((side, side, 3), 60, np.uint8)
    starts = np.arange(12, side - box, step)
    gt = np.array([(x, y, x + box, y + box) for y in starts for x in starts], np.float32)
    for x1, y1, x2, y2 in gt.astype(int):
        image[y1:y2, x1:x2] = 255
    return image, gt


def test_tiled_predict_returns_more_than_max_det_boxes_on_a_dense_image():
    image, gt = _dense_scene()
    assert len(gt) == 961
    rt = BrightSquares(256, DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=100))
    dets = detect_image(rt, image, tile=256, overlap=64)  # 36 tiles of <= 81 squares each
    assert len(dets) == len(gt) > rt.decode.max_det  # every square once: cut pieces merged away
    order = np.lexsort((dets.boxes[:, 0], dets.boxes[:, 1]))
    np.testing.assert_allclose(dets.boxes[order], gt[np.lexsort((gt[:, 0], gt[:, 1]))], atol=0.5)


def test_whole_image_inference_stops_at_max_det():
    image, gt = _dense_scene()
    rt = BrightSquares(1024, DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=100))
    assert len(detect_image(rt, image)) == 100 < len(gt)
    raised = BrightSquares(1024, DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=2000))
    assert len(detect_image(raised, image)) == len(gt)


def _drop_cut_pieces_pairwise(boxes: np.ndarray, labels: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """The definition, with the full pairwise matrix (what drop_cut_pieces computed before it was chunked)."""
    n = len(boxes)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=-1)
    inside = inter / np.maximum(area, 1e-6)[:, None]
    same = labels[:, None] == labels[None, :]
    covered = ((inside >= CONTAINED) & same & ~np.eye(n, dtype=bool) & ~cut[None, :]).any(1)
    return np.flatnonzero(~(cut & covered))


def test_chunked_drop_cut_pieces_equals_the_pairwise_definition():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 600):
        xy = rng.uniform(0, 200, (n, 2)).astype(np.float32)
        wh = rng.uniform(1, 30, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + wh], 1)
        inner = boxes[: n // 3] + np.float32(0.5) * np.array([1, 1, -1, -1], np.float32)  # pieces inside others
        boxes = np.concatenate([boxes, inner])
        labels = rng.integers(0, 3, len(boxes))
        labels[n:] = labels[: n // 3]
        cut = rng.uniform(size=len(boxes)) < 0.4
        np.testing.assert_array_equal(
            drop_cut_pieces(boxes, labels, cut), _drop_cut_pieces_pairwise(boxes, labels, cut)
        )
        if n == 600:
            assert len(drop_cut_pieces(boxes, labels, cut)) < len(boxes)  # the case is not vacuous


def test_cli_predict_max_det_bounds_each_tile_not_the_image(tmp_path):
    import json

    from onnx_models import make_blob_model, scene
    from PIL import Image
    from typer.testing import CliRunner

    from ghostq.cli.app import app

    model = make_blob_model(tmp_path / "blob128.onnx", size=128)  # one box per network input
    image = scene(400, 200, (20, 20, 60, 60))
    image[120:160, 300:340] = 255  # a second object, in another tile
    Image.fromarray(image).save(tmp_path / "two.png")

    def run(*extra: str) -> int:
        out = tmp_path / "out"
        args = ["predict", str(tmp_path / "two.png"), "--model", str(model), "--out", str(out), "--score", "0.5",
                "--max-det", "1", "--json", str(out / "s.json"), *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads((out / "s.json").read_text())["detections"]

    assert run("--tile", "128", "--overlap", "32") == 2  # more than --max-det: up to --max-det per tile kept
