"""Tiled prediction: detections of an object straddling a tile border merge into one box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostq.core.config import EvalConfig
from ghostq.core.errors import GhostqError
from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.predict import detect_image, list_images, predict_paths


class BrightBlobDetector(torch.nn.Module):
    """Stand-in detector: one detection per input, the bounding box of its bright pixels (class 0)."""

    head_type = "sigmoid"

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        boxes, logits = [], []
        for img in x:
            ys, xs = torch.nonzero(img.mean(0) > 0.9, as_tuple=True)
            if len(xs):
                boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float())
                logits.append(torch.tensor([4.0]))
            else:
                boxes.append(torch.zeros(4))
                logits.append(torch.tensor([-20.0]))
        return DetectorOutput(
            torch.stack(logits)[:, None, :], torch.stack(boxes)[:, None, :], torch.zeros(1, 2), torch.ones(1)
        )


def _scene(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def test_object_across_tile_border_is_one_detection() -> None:
    # tiles of 256 with overlap 96 over a 600 x 300 image: windows start at x = 0, 160, 320, 344
    box = (230, 100, 290, 140)  # cut by the first tile's right edge (x = 256), whole in the second tile
    image = _scene(600, 300, box)
    eval_cfg = EvalConfig(score_threshold=0.5, iou_threshold=0.5, max_det=10)
    boxes, scores, labels = detect_image(BrightBlobDetector(), image, 256, eval_cfg, tile=256, overlap=96)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], box, atol=1.5)
    assert labels.tolist() == [0] and scores[0] > 0.9


def test_without_tiling_whole_image_is_seen() -> None:
    box = (10, 20, 50, 60)
    boxes, _, _ = detect_image(
        BrightBlobDetector(), _scene(200, 100, box), 256, EvalConfig(score_threshold=0.5)
    )
    np.testing.assert_allclose(boxes[0], box, atol=1.5)


def test_predict_paths_writes_png_coco_and_dota(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(_scene(300, 200, (100, 50, 140, 90))).save(img_dir / "scene1.png")
    summary = predict_paths(
        BrightBlobDetector(),
        list_images([img_dir]),
        ("car",),
        128,
        3,
        EvalConfig(score_threshold=0.5),
        tmp_path / "out",
        tile=128,
        overlap=48,
    )
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
