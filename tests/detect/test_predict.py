"""Tiled prediction through the one predict path (:mod:`ghostq.deploy.predict`) with a stand-in runtime:
detections of an object straddling a tile border merge into one box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.core.detections import DecodeSettings
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import ModelInfo, Runtime
from ghostq.core.tiling import list_images
from ghostq.deploy.predict import detect_image, predict_paths


class BrightBlobRuntime(Runtime):
    """Stand-in runtime: one detection per input, the bounding box of its bright pixels (class 0)."""

    backend = "blob"

    def __init__(self, size: int, decode: DecodeSettings) -> None:
        super().__init__(decode)
        self.info = ModelInfo(Path("blob.pt"), size, 3, ("car",))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        boxes, scores = [], []
        for img in batch:
            ys, xs = np.nonzero(img.mean(0) > 0.9)
            found = len(xs) > 0
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if found else [0, 0, 0, 0])
            scores.append(0.98 if found else 0.0)
        return {"scores": np.float32(scores).reshape(-1, 1, 1), "boxes": np.float32(boxes).reshape(-1, 1, 4)}


def _scene(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def test_object_across_tile_border_is_one_detection() -> None:
    # tiles of 256 with overlap 96 over a 600 x 300 image: windows start at x = 0, 160, 320, 344
    box = (230, 100, 290, 140)  # cut by the first tile's right edge (x = 256), whole in the second tile
    image = _scene(600, 300, box)
    rt = BrightBlobRuntime(256, DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=10))
    dets = detect_image(rt, image, tile=256, overlap=96)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.boxes[0], box, atol=1.5)
    assert dets.labels.tolist() == [0] and dets.scores[0] > 0.9


def test_without_tiling_whole_image_is_seen() -> None:
    box = (10, 20, 50, 60)
    dets = detect_image(BrightBlobRuntime(256, DecodeSettings(score_threshold=0.5)), _scene(200, 100, box))
    np.testing.assert_allclose(dets.boxes[0], box, atol=1.5)


def test_predict_paths_writes_png_coco_and_dota(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(_scene(300, 200, (100, 50, 140, 90))).save(img_dir / "scene1.png")
    rt = BrightBlobRuntime(128, DecodeSettings(score_threshold=0.5))
    summary = predict_paths(rt, list_images([img_dir]), tmp_path / "out", tile=128, overlap=48)
    assert summary["images"] == 1 and summary["detections"] == 1
    coco = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert coco[0]["file_name"] == "scene1.png" and coco[0]["category_id"] == 1
    np.testing.assert_allclose(coco[0]["bbox"], [100, 50, 40, 40], atol=1.5)
    line = (tmp_path / "out" / "dota" / "Task2_car.txt").read_text().split()
    assert line[0] == "scene1" and len(line) == 6
    assert Image.open(tmp_path / "out" / "scene1.png").size == (300, 200)


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(GhostqError, match="no such image or folder"):
        list_images([tmp_path / "missing.png"])
    with pytest.raises(GhostqError, match="no images found"):
        list_images([tmp_path])
