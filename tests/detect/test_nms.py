"""batched_nms equals a plain-Python greedy class-wise NMS (the definition), on random and crafted cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostq.detect.nms import batched_nms, nms


def reference_nms(
    boxes: list[list[float]], scores: list[float], labels: list[int], threshold: float
) -> list[int]:
    """Greedy NMS by the book: stable sort by score (descending), keep a box unless a kept box of its label
    overlaps it with IoU > threshold (strict)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        suppressed = False
        for j in kept:
            if labels[j] != labels[i]:
                continue
            u1, v1, u2, v2 = boxes[j]
            inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
            union = max(0.0, x2 - x1) * max(0.0, y2 - y1) + max(0.0, u2 - u1) * max(0.0, v2 - v1) - inter
            if union > 0 and inter / union > threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


def _run(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, t: float) -> tuple[list, list]:
    got = batched_nms(boxes, scores, labels, t).tolist()
    want = reference_nms(boxes.tolist(), scores.tolist(), labels.tolist(), t)
    return got, want


def test_iou_equal_to_threshold_does_not_suppress() -> None:
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8])
    labels = torch.zeros(2, dtype=torch.int64)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, labels, 0.49).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([0, 1]), 0.49).tolist() == [0, 1]  # other class


def test_chain_and_ties_by_input_order() -> None:
    # 0 suppresses 1; 1 would have suppressed 2, but 1 is gone, so 2 stays (greedy, not "fast NMS")
    boxes = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    # equal scores: the earlier box wins
    same = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10]])
    assert nms(same, torch.tensor([0.5, 0.5]), 0.5).tolist() == [0]
    assert nms(same.flip(0), torch.tensor([0.5, 0.5]), 0.5).tolist() == [0]


def test_empty_and_validation() -> None:
    keep = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert keep.dtype == torch.int64 and keep.numel() == 0
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        batched_nms(torch.zeros(3, 5), torch.zeros(3), torch.zeros(3, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="scores"):
        batched_nms(torch.zeros(3, 4), torch.zeros(2), torch.zeros(3, dtype=torch.int64), 0.5)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    n = draw(st.integers(0, 40))
    coord = st.integers(0, 12)
    boxes = []
    for _ in range(n):
        x, y = draw(coord), draw(coord)
        boxes.append([x, y, x + draw(st.integers(0, 6)), y + draw(st.integers(0, 6))])  # zero-size boxes too
    scores = draw(st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.5, 0.9]), min_size=n, max_size=n))  # many ties
    labels = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    threshold = draw(st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.6, 0.75, 1.0]))
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
            torch.tensor(labels, dtype=torch.int64), threshold)


@settings(max_examples=300, deadline=None, database=None)
@given(_cases())
def test_matches_reference_on_small_integer_boxes(case: tuple) -> None:
    """Integer coordinates on a small grid: many duplicates, IoUs exactly at the thresholds, score ties."""
    got, want = _run(*case)
    assert got == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_across_blocks(seed: int) -> None:
    """1300 boxes (three blocks of the implementation), clustered so suppression crosses block edges."""
    g = torch.Generator().manual_seed(seed)
    n = 1300
    centres = torch.rand(40, 2, generator=g) * 200
    xy = centres[torch.randint(0, 40, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 4
    wh = torch.rand(n, 2, generator=g) * 20 + 8
    boxes = torch.cat((xy, xy + wh), 1).round()  # rounding adds exact ties
    scores = (torch.rand(n, generator=g) * 20).round() / 20
    labels = torch.randint(0, 3 if seed else 1, (n,), generator=g)
    got, want = _run(boxes, scores, labels, 0.5)
    assert got == want
    assert 0 < len(got) < n


def test_long_suppression_chain_across_blocks() -> None:
    """Box i overlaps only its neighbours: greedy keeps every other box (the iteration's worst case)."""
    n = 1100
    x = torch.arange(n, dtype=torch.float32)
    boxes = torch.stack((x, torch.zeros(n), x + 4, torch.ones(n)), 1)  # neighbour IoU 3/5, next 2/6
    scores = torch.linspace(1, 0, n)
    keep = batched_nms(boxes, scores, torch.zeros(n, dtype=torch.int64), 0.5)
    assert keep.tolist() == list(range(0, n, 2))
