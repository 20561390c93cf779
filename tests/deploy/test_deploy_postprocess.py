"""numpy NMS and decoding equal the torch reference (ghostq.detect.nms / ghostq.detect.postprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.core.detections import (
    DecodeSettings,
    Detections,
    decode,
    decode_outputs,
    from_graph_nms,
)
from ghostq.core.nms import batched_nms

torch = pytest.importorskip("torch")


def _grid_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes on an integer grid: many exact ties of IoU (and of IoU == threshold)."""
    xy = rng.integers(0, 12, size=(n, 2))
    wh = rng.integers(1, 6, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_nms_equals_torch_reference(seed: int) -> None:
    from ghostq.detect.nms import batched_nms as torch_nms

    rng = np.random.default_rng(seed)
    n = 300
    boxes = _grid_boxes(rng, n) if seed % 2 == 0 else (rng.random((n, 4)) * 50).astype(np.float32)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    scores = rng.choice(np.linspace(0.1, 1.0, 7), n).astype(np.float32)  # many score ties
    labels = rng.integers(0, 3, n)
    for thr in (0.5, 1 / 3, 0.25):  # 1/3 and 1/4 are IoUs of grid boxes: ties at the threshold
        ours = batched_nms(boxes, scores, labels, thr)
        ref = torch_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), thr).numpy()
        np.testing.assert_array_equal(ours, ref)


def test_nms_basics() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.1], np.float32)
    labels = np.array([0, 0, 1, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [2, 0, 3]  # class 1 never suppresses class 0
    assert batched_nms(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int), 0.5).tolist() == []
    # IoU equal to the threshold does not suppress (strictly greater)
    two = np.array([[0, 0, 2, 1], [1, 0, 3, 1]], np.float32)  # IoU 1/3
    assert batched_nms(two, np.array([0.9, 0.8], np.float32), np.zeros(2, int), 1 / 3).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        batched_nms(np.zeros((3, 5)), np.zeros(3), np.zeros(3, int), 0.5)


@pytest.mark.parametrize("topk", [3000, 40])
def test_decode_equals_torch_postprocess(topk: int) -> None:
    from ghostq.detect.models.output import DetectorOutput
    from ghostq.detect.postprocess import postprocess

    rng = np.random.default_rng(0)
    b, n, c, size = 2, 200, 4, 64
    logits = rng.normal(-1.0, 2.0, (b, n, c)).astype(np.float32)
    xy = rng.random((b, n, 2)).astype(np.float32) * 60 - 4
    boxes = np.concatenate([xy, xy + rng.random((b, n, 2)).astype(np.float32) * 20 + 1], axis=-1)
    out = DetectorOutput(torch.from_numpy(logits), torch.from_numpy(boxes), torch.zeros(n, 2), torch.ones(n))
    ref = postprocess(out, 0.05, 0.5, 50, pre_nms_topk=topk, head="sigmoid", image_size=(size, size))
    scores = torch.from_numpy(logits).sigmoid().numpy()
    ours = decode(scores, boxes, DecodeSettings(0.05, 0.5, 50, topk), image_size=(size, size))
    for r, o in zip(ref, ours, strict=True):
        np.testing.assert_array_equal(o.labels, r.labels.numpy())
        np.testing.assert_array_equal(o.scores, r.scores.numpy())
        np.testing.assert_array_equal(o.boxes, r.boxes.numpy())
        assert o.boxes.min() >= 0 and o.boxes.max() <= size


def test_from_graph_nms_reads_valid_rows_and_filters() -> None:
    boxes = np.array([[[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]], np.float32)
    scores = np.array([[0.3, 0.9, 0.8]], np.float32)
    classes = np.array([[1, 0, 2]], np.int32)
    dets = from_graph_nms(np.array([[2]]), boxes, scores, classes, DecodeSettings(score_threshold=0.5))
    assert len(dets) == 1 and dets[0].labels.tolist() == [0] and dets[0].scores.tolist() == [pytest.approx(0.9)]
    dets = from_graph_nms(np.array([[3]]), boxes, scores, classes, DecodeSettings(score_threshold=0.1, max_det=2))
    assert dets[0].labels.tolist() == [0, 2]  # highest first, max_det rows


def test_decode_outputs_names_the_contract() -> None:
    with pytest.raises(ValueError, match="none of"):
        decode_outputs({"logits": np.zeros((1, 2, 3))}, DecodeSettings(), None)
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        DecodeSettings(iou_threshold=0.0)


def test_from_flat_nms_splits_the_batch() -> None:
    from ghostq.core.detections import from_flat_nms

    det_batch = np.array([0, 1, 0, 1], np.int64)
    boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
    scores = np.array([0.2, 0.9, 0.7, 0.01], np.float32)
    labels = np.array([3, 1, 2, 0], np.int64)
    dets = from_flat_nms(det_batch, boxes, scores, labels, 3, DecodeSettings(score_threshold=0.05))
    assert [len(d) for d in dets] == [2, 1, 0]
    assert dets[0].labels.tolist() == [2, 3] and dets[0].boxes.tolist() == [boxes[2].tolist(), boxes[0].tolist()]
    out = {"det_batch": det_batch, "det_boxes": boxes, "det_scores": scores, "det_labels": labels}
    assert [len(d) for d in decode_outputs(out, DecodeSettings(), None, batch_size=2)] == [2, 2]
    with pytest.raises(ValueError, match="batch size"):
        decode_outputs(out, DecodeSettings(), None)
