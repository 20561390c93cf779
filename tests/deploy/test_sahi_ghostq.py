"""The SAHI wrapper of benchmarks/sahi_ghostq.py: SAHI slices, a ghostq runtime detects, SAHI merges; every
object of a dense scene comes back once, in image pixels (skipped without the optional extra `sahi`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from test_tiled_dense import BrightSquares, _dense_scene

from ghostq.core.detections import DecodeSettings

pytest.importorskip("sahi", reason="the SAHI comparison needs the optional extra: pip install -e '.[sahi]'")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sahi_ghostq.py"


def _module():
    spec = importlib.util.spec_from_file_location("sahi_ghostq", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("postprocess", ["NMS", "GREEDYNMM"])
def test_sahi_slices_a_ghostq_runtime_and_finds_every_square_once(postprocess):
    image, gt = _dense_scene(side=600)
    rt = BrightSquares(256, DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=100))
    dets = _module().sahi_detect(rt, image, 256, 64, postprocess, standard_pred=False)
    assert len(dets) == len(gt) > rt.decode.max_det
    order = np.lexsort((dets.boxes[:, 0], dets.boxes[:, 1]))
    np.testing.assert_allclose(dets.boxes[order], gt[np.lexsort((gt[:, 0], gt[:, 1]))], atol=0.5)
