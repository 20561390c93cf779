"""Box ops against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from ghostq.detect.boxes import (
    bbox_iou,
    box_area,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    generalized_box_iou,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)

A = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
B = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
WIDE = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
TALL = torch.tensor([[0.0, 0.0, 2.0, 4.0]])


def test_conversions_hand_values_and_round_trip() -> None:
    b = torch.tensor([[10.0, 20.0, 40.0, 60.0]])
    assert xyxy_to_xywh(b).tolist() == [[10, 20, 30, 40]]
    assert xyxy_to_cxcywh(b).tolist() == [[25, 40, 30, 40]]
    assert xywh_to_xyxy(xyxy_to_xywh(b)).tolist() == b.tolist()
    assert cxcywh_to_xyxy(xyxy_to_cxcywh(b)).tolist() == b.tolist()
    batch = torch.rand(2, 5, 4) * 100
    assert xyxy_to_cxcywh(batch).shape == (2, 5, 4)


def test_area_and_clip() -> None:
    b = torch.tensor([[-5.0, 2.0, 30.0, 50.0], [3.0, 3.0, 1.0, 8.0]])
    assert box_area(b).tolist() == [35 * 48, 0]  # inverted box: 0
    assert clip_boxes(b, (40, 20)).tolist() == [[0, 2, 20, 40], [3, 3, 1, 8]]  # size = (height, width)


def test_pairwise_iou_and_giou_hand_values() -> None:
    # inter 1, union 4 + 4 - 1 = 7, enclosing box 3 x 3 = 9
    assert box_iou(A, B).item() == pytest.approx(1 / 7)
    assert generalized_box_iou(A, B).item() == pytest.approx(1 / 7 - 2 / 9)
    # disjoint: IoU 0, GIoU = -(C - U) / C with C = 4 x 2 = 8, U = 4 + 2 = 6
    far = torch.tensor([[3.0, 0.0, 4.0, 2.0]])
    assert box_iou(A, far).item() == 0
    assert generalized_box_iou(A, far).item() == pytest.approx(-(8 - 6) / 8)
    # identity, shape [N, M], symmetry
    many = torch.cat((A, B, WIDE))
    iou = box_iou(many, torch.cat((A, TALL)))
    assert iou.shape == (3, 2)
    assert iou[0, 0].item() == 1.0 and generalized_box_iou(A, A).item() == 1.0
    assert torch.equal(box_iou(many, many), box_iou(many, many).T)


def test_pairwise_iou_is_exact_at_a_threshold_and_empty_boxes_give_zero() -> None:
    half = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert box_iou(torch.tensor([[0.0, 0.0, 2.0, 1.0]]), half).item() == 0.5  # exactly, no epsilon
    empty = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(empty, empty).item() == 0.0
    assert not torch.isnan(generalized_box_iou(empty, empty)).any()


def test_elementwise_iou_kinds_hand_values() -> None:
    assert bbox_iou(A, B, "iou").item() == pytest.approx(1 / 7, abs=1e-6)
    assert bbox_iou(A, B, "giou").item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    # same aspect ratio -> v = 0; centres (1,1), (2,2): rho^2 = 2; enclosing diagonal^2 = 18
    assert bbox_iou(A, B, "ciou").item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    # WIDE vs TALL: IoU = 4 / 12; rho^2 = 2; c^2 = 4^2 + 4^2; v = 4/pi^2 (atan(1/2) - atan(2))^2
    iou = 1 / 3
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(2.0)) ** 2
    alpha = v / (1 - iou + v)
    assert bbox_iou(WIDE, TALL, "ciou").item() == pytest.approx(iou - 2 / 32 - alpha * v, abs=1e-6)
    assert bbox_iou(WIDE, TALL, "ciou").item() == pytest.approx(0.23708, abs=1e-4)
    with pytest.raises(ValueError, match="kind"):
        bbox_iou(A, B, "diou")


def test_elementwise_iou_broadcasts_and_matches_pairwise_diagonal() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 6, 2, generator=g) * 50
    a = torch.cat((xy, xy + torch.rand(2, 6, 2, generator=g) * 30 + 1), -1)
    xy = torch.rand(2, 6, 2, generator=g) * 50
    b = torch.cat((xy, xy + torch.rand(2, 6, 2, generator=g) * 30 + 1), -1)
    assert bbox_iou(a, b, "giou").shape == (2, 6)
    for i in range(2):
        torch.testing.assert_close(bbox_iou(a[i], b[i], "iou"), box_iou(a[i], b[i]).diagonal(),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(bbox_iou(a[i], b[i], "giou"), generalized_box_iou(a[i], b[i]).diagonal(),
                                   atol=1e-6, rtol=0)
    assert bbox_iou(a[:, :1], b, "iou").shape == (2, 6)  # broadcast one box against six


@pytest.mark.parametrize("kind", ["iou", "giou", "ciou"])
def test_elementwise_iou_gradients_are_finite_on_degenerate_boxes(kind: str) -> None:
    pred = torch.tensor([[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    target = torch.tensor([[5.0, 5.0, 5.0, 5.0], [10.0, 10.0, 12.0, 12.0]])
    loss = (1 - bbox_iou(pred, target, kind)).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    if kind != "iou":  # GIoU / CIoU pull disjoint boxes together; plain IoU has no gradient there
        assert pred.grad[1].abs().sum() > 0
