"""Task-aligned assignment: a hand-checked case, tiny objects, crowds, padding, batching."""

from __future__ import annotations

import pytest
import torch

from ghostq.detect.boxes import bbox_iou
from ghostq.detect.losses import TaskAlignedAssigner


def iou(a, b):
    return bbox_iou(a, b, kind="iou")


def grid(size: int, strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (x, y) and strides of a square image, levels concatenated."""
    pts, st = [], []
    for s in strides:
        r = torch.arange(size // s, dtype=torch.float32) * s + s / 2
        y, x = torch.meshgrid(r, r, indexing="ij")
        pts.append(torch.stack([x.flatten(), y.flatten()], -1))
        st.append(torch.full((x.numel(),), float(s)))
    return torch.cat(pts), torch.cat(st)


def random_case(seed: int, b: int, m: int, size: int = 64, num_classes: int = 3, max_wh: float = 20.0):
    """Random GTs (some padded), predicted boxes around their points and random class probabilities."""
    pts, st = grid(size, (8, 16, 32))
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(b, m, 2, generator=g) * max_wh + 4
    c = torch.rand(b, m, 2, generator=g) * (size - 8) + 4
    gt_boxes = torch.cat([c - wh / 2, c + wh / 2], -1)
    gt_labels = torch.randint(0, num_classes, (b, m), generator=g)
    gt_mask = torch.rand(b, m, generator=g) > 0.2
    d = torch.rand(b, len(pts), 4, generator=g) * 16 + 2
    pred = torch.cat([pts - d[..., :2], pts + d[..., 2:]], -1)
    scores = torch.rand(b, len(pts), num_classes, generator=g)
    return scores, pred, pts, st, gt_boxes, gt_labels, gt_mask


def test_hand_checked_two_gts() -> None:
    # Five stride-8 points; GT A = [0,0,16,16] (class 0), GT B = [8,8,32,32] (class 1); p1 lies in both.
    pts = torch.tensor([[4.0, 4], [12, 12], [20, 20], [28, 28], [60, 60]])
    st = torch.full((5,), 8.0)
    pred = torch.tensor(
        [[[0.0, 0, 16, 16], [8, 8, 32, 32], [8, 8, 28, 28], [16, 16, 32, 32], [56, 56, 64, 64]]]
    )
    scores = torch.full((1, 5, 2), 0.5)
    gt_boxes = torch.tensor([[[0.0, 0, 16, 16], [8, 8, 32, 32]]])
    a = TaskAlignedAssigner(2, topk=2, alpha=1.0, beta=6.0, center_radius=0.0)(
        scores, pred, pts, st, gt_boxes, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool)
    )
    # A's candidates p0 (t = 0.5 * 1^6), p1 (0.5 * (1/12)^6): both in its top 2.
    # B's candidates p1 (0.5), p2 (0.5 * (400/576)^6 = 0.0561), p3 (0.5 * (4/9)^6 = 0.0039): p1 and p2.
    # p1 is claimed by both; its IoU with B (1) beats that with A (1/12): B keeps it.
    assert a.fg_mask.tolist() == [[True, True, True, False, False]]
    assert a.gt_index.tolist() == [[0, 1, 1, -1, -1]]
    assert a.labels.tolist() == [[0, 1, 1, 2, 2]]  # 2 = background (num_classes)
    # t_hat = t / max_t(GT) * max_iou(GT): A -> p0: 1; B -> p1: 1, p2: (400/576)^6.
    expected = torch.tensor([[1.0, 1.0, (400 / 576) ** 6, 0.0, 0.0]])
    torch.testing.assert_close(a.scores, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.boxes[0, :3], gt_boxes[0, [0, 1, 1]])
    assert a.boxes[0, 3:].abs().sum() == 0
    torch.testing.assert_close(a.box_weights, a.scores)
    assert a.cls_weights.eq(1).all()


def test_score_enters_the_metric() -> None:
    # Two points inside one GT with equal IoU: top-1 goes to the one with the higher class probability.
    pts = torch.tensor([[4.0, 4], [12, 4]])
    st = torch.full((2,), 8.0)
    pred = torch.tensor([[[0.0, 0, 10, 8], [6, 0, 16, 8]]])
    scores = torch.tensor([[[0.2, 0.9], [0.8, 0.1]]])  # class 0: p1 is higher
    gt_boxes = torch.tensor([[[0.0, 0, 16, 8]]])
    a = TaskAlignedAssigner(2, topk=1, center_radius=0.0)(
        scores, pred, pts, st, gt_boxes, torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool)
    )
    assert a.fg_mask.tolist() == [[False, True]]


@pytest.mark.parametrize("center_radius", [0.0, 1.0, 2.5])
def test_tiny_gt_without_inside_points_gets_positives(center_radius: float) -> None:
    # A 6 x 12 px vehicle at strides 8/16/32 on a 64 px image: no grid point lies strictly inside it.
    pts, st = grid(64, (8, 16, 32))
    gt = torch.tensor([[[30.0, 33.0, 36.0, 45.0]]])
    inside = (pts[:, 0] > 30) & (pts[:, 0] < 36) & (pts[:, 1] > 33) & (pts[:, 1] < 45)
    assert not inside.any()
    pred = torch.cat([pts - 8, pts + 8], -1)[None]
    a = TaskAlignedAssigner(3, center_radius=center_radius)(
        torch.full((1, len(pts), 3), 0.01),
        pred,
        pts,
        st,
        gt,
        torch.tensor([[2]]),
        torch.ones(1, 1, dtype=torch.bool),
    )
    assert a.num_fg >= 1
    assert (a.labels[a.fg_mask] == 2).all()
    if center_radius == 0.0:
        # Fallback: the nearest point of every level (centre (33, 39)): (36,36) @8, (40,40) @16, (48,48) @32.
        chosen = {tuple(p) for p in pts[a.fg_mask[0]].tolist()}
        assert chosen == {(36.0, 36.0), (40.0, 40.0), (48.0, 48.0)}
    else:
        assert a.num_fg > 3  # the centre prior gives a tiny object more than one point per level


@pytest.mark.parametrize("center_radius", [0.0, 2.5])
@pytest.mark.parametrize("seed", range(6))
def test_every_valid_gt_gets_a_positive(seed: int, center_radius: float) -> None:
    m = 12 if center_radius == 0.0 else 30  # 30 GTs on a 64 px image with 84 points: a crowd
    scores, pred, pts, st, gt_boxes, gt_labels, gt_mask = random_case(seed, b=3, m=m)
    topk = 13
    a = TaskAlignedAssigner(3, topk=topk, center_radius=center_radius)(
        scores, pred, pts, st, gt_boxes, gt_labels, gt_mask
    )
    for b in range(3):
        counts = torch.bincount(a.gt_index[b][a.fg_mask[b]], minlength=m)
        assert (counts[gt_mask[b]] >= 1).all(), counts
        assert (counts[~gt_mask[b]] == 0).all()  # padded GTs get nothing
        assert (counts <= topk).all()
    # Consistency of the per-anchor fields.
    assert ((a.gt_index >= 0) == a.fg_mask).all()
    assert (a.labels[~a.fg_mask] == 3).all()
    torch.testing.assert_close(a.labels[a.fg_mask], gt_labels.gather(1, a.gt_index.clamp_min(0))[a.fg_mask])
    assert (a.scores >= 0).all() and (a.scores <= 1).all() and (a.scores[~a.fg_mask] == 0).all()
    # The best positive of a GT gets the GT's best IoU over its positives as its target.
    for b in range(3):
        for g in torch.nonzero(gt_mask[b]).flatten().tolist():
            sel = a.gt_index[b] == g
            ious = iou(gt_boxes[b, g].expand(int(sel.sum()), 4), pred[b][sel])
            torch.testing.assert_close(a.scores[b][sel].max(), ious.max(), rtol=1e-4, atol=1e-6)


def test_no_gt() -> None:
    scores, pred, pts, st, gt_boxes, gt_labels, gt_mask = random_case(0, b=2, m=4)
    assigner = TaskAlignedAssigner(3)
    for a in (
        assigner(scores, pred, pts, st, gt_boxes[:, :0], gt_labels[:, :0], gt_mask[:, :0]),  # M = 0
        assigner(scores, pred, pts, st, gt_boxes, gt_labels, torch.zeros_like(gt_mask)),  # all padding
    ):
        assert a.num_fg == 0
        assert (a.labels == 3).all() and (a.gt_index == -1).all() and (a.scores == 0).all()
        assert a.labels.shape == (2, len(pts)) and a.boxes.shape == (2, len(pts), 4)


def test_batched_equals_per_image_and_chunked() -> None:
    case = random_case(3, b=4, m=6)
    full = TaskAlignedAssigner(3)(*case)
    chunked = TaskAlignedAssigner(3, max_chunk_elements=1)(*case)  # one image per chunk
    scores, pred, pts, st, gt_boxes, gt_labels, gt_mask = case
    for b in range(4):
        one = TaskAlignedAssigner(3)(
            scores[b : b + 1],
            pred[b : b + 1],
            pts,
            st,
            gt_boxes[b : b + 1],
            gt_labels[b : b + 1],
            gt_mask[b : b + 1],
        )
        assert torch.equal(one.gt_index[0], full.gt_index[b])
        torch.testing.assert_close(one.scores[0], full.scores[b])
    for name in ("labels", "fg_mask", "gt_index"):
        assert torch.equal(getattr(full, name), getattr(chunked, name)), name
    for name in ("boxes", "scores", "cls_weights", "box_weights"):  # float: equal up to rounding
        torch.testing.assert_close(getattr(full, name), getattr(chunked, name), msg=name)


def test_padded_labels_may_be_anything_but_valid_ones_are_checked() -> None:
    scores, pred, pts, st, gt_boxes, gt_labels, gt_mask = random_case(1, b=2, m=4)
    gt_labels = gt_labels.masked_fill(~gt_mask, -1)
    TaskAlignedAssigner(3)(scores, pred, pts, st, gt_boxes, gt_labels, gt_mask)
    with pytest.raises(ValueError, match=r"GT labels must lie in \[0, 3\)"):
        TaskAlignedAssigner(3)(scores, pred, pts, st, gt_boxes, gt_labels.masked_fill(gt_mask, 7), gt_mask)
