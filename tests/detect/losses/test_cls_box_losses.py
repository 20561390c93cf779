"""IoU / GIoU / CIoU, the box losses and the classification losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from ghostq.detect.boxes import bbox_iou
from ghostq.detect.losses import (
    BOX_LOSSES,
    bce,
    ce,
    ciou_loss,
    get_box_loss,
    get_cls_loss,
    giou_loss,
    list_cls_losses,
    register_cls_loss,
    soft_one_hot,
    varifocal,
)
from ghostq.detect.losses import cls_losses as cls_module


def iou(a, b):
    return bbox_iou(a, b, kind="iou")


def giou(a, b):
    return bbox_iou(a, b, kind="giou")


def ciou(a, b):
    return bbox_iou(a, b, kind="ciou")


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------- IoU family


def test_iou_giou_ciou_hand_values() -> None:
    # Shifted squares: inter 1, union 7, enclosing 3 x 3, centres (1,1) and (2,2).
    a, b = t([0, 0, 2, 2]), t([1, 1, 3, 3])
    assert iou(a, b).item() == pytest.approx(1 / 7)
    assert giou(a, b).item() == pytest.approx(1 / 7 - 2 / 9)
    assert ciou(a, b).item() == pytest.approx(1 / 7 - 2 / 18)  # same aspect ratio: v = 0

    # Different aspect ratios: inter 4, union 12, enclosing 4 x 4 (c^2 = 32), rho^2 = 2.
    a, b = t([0, 0, 4, 2]), t([0, 0, 2, 4])
    v = 4 / math.pi**2 * (math.atan(2 / 4) - math.atan(4 / 2)) ** 2
    alpha = v / (1 - 1 / 3 + v)
    assert ciou(a, b).item() == pytest.approx(1 / 3 - 2 / 32 - alpha * v)

    # Disjoint: IoU 0, GIoU = -(3 - 2) / 3.
    a, b = t([0, 0, 1, 1]), t([2, 0, 3, 1])
    assert iou(a, b).item() == 0
    assert giou(a, b).item() == pytest.approx(-1 / 3)

    same = t([3, 4, 10, 20])
    for fn in (iou, giou, ciou):
        assert fn(same, same).item() == pytest.approx(1.0)


def test_iou_broadcasts_and_is_scale_free() -> None:
    a = torch.rand(5, 1, 2) * 50
    a = torch.cat([a, a + torch.rand(5, 1, 2) * 30 + 1], -1)  # [5, 1, 4]
    b = torch.rand(1, 7, 2) * 50
    b = torch.cat([b, b + torch.rand(1, 7, 2) * 30 + 1], -1)  # [1, 7, 4]
    for fn in (iou, giou, ciou):
        out = fn(a, b)
        assert out.shape == (5, 7)
        torch.testing.assert_close(fn(a / 8, b / 8), out, rtol=1e-4, atol=1e-5)


def test_degenerate_boxes_are_finite_with_finite_gradients() -> None:
    boxes_a = t([0, 0, 0, 0], [5, 5, 5, 9], [5, 5, 2, 2], [0, 0, 4, 4], [1, 1, 1, 1])
    boxes_b = t([0, 0, 0, 0], [5, 5, 5, 9], [0, 0, 4, 4], [9, 9, 3, 3], [1, 1, 1, 1]).float()
    a = boxes_a.float().requires_grad_()
    for fn in (iou, giou, ciou, giou_loss, ciou_loss):
        out = fn(a, boxes_b)
        assert torch.isfinite(out).all(), fn.__name__
        (grad,) = torch.autograd.grad(out.sum(), a)
        assert torch.isfinite(grad).all(), fn.__name__


def test_box_losses() -> None:
    a, b = t([0, 0, 2, 2]), t([1, 1, 3, 3])
    assert giou_loss(a, b).item() == pytest.approx(1 - (1 / 7 - 2 / 9))
    assert ciou_loss(a, b).item() == pytest.approx(1 - (1 / 7 - 2 / 18))
    assert giou_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert set(BOX_LOSSES) == {"giou", "ciou"}
    assert get_box_loss("ciou") is ciou_loss
    with pytest.raises(ValueError, match="unknown box loss 'diou'; known: ciou, giou"):
        get_box_loss("diou")


# ------------------------------------------------------ classification losses

# Two anchors, two classes: anchor 0 foreground of class 1 with t_hat 0.6, anchor 1 background.
LOGITS = torch.tensor([[[0.5, -1.0], [2.0, 0.3]]])
LABELS = torch.tensor([[1, 2]])
SCORES = torch.tensor([[0.6, 0.0]])
FG = torch.tensor([[True, False]])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce_ref(x: float, q: float) -> float:
    return -(q * math.log(sig(x)) + (1 - q) * math.log(1 - sig(x)))


def test_soft_one_hot() -> None:
    assert soft_one_hot(LABELS, SCORES, 2).tolist() == [[[0.0, 0.6000000238418579], [0.0, 0.0]]]


def test_bce_hand_values() -> None:
    out = bce(LOGITS, LABELS, SCORES, FG, 2)
    expected = [[[bce_ref(0.5, 0), bce_ref(-1.0, 0.6)], [bce_ref(2.0, 0), bce_ref(0.3, 0)]]]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_varifocal_hand_values() -> None:
    out = varifocal(LOGITS, LABELS, SCORES, FG, 2, alpha=0.75, gamma=2.0)

    def neg(x: float) -> float:  # -alpha p^gamma log(1 - p)
        return -0.75 * sig(x) ** 2 * math.log(1 - sig(x))

    q = 0.6
    pos = -q * (q * math.log(sig(-1.0)) + (1 - q) * math.log(1 - sig(-1.0)))
    torch.testing.assert_close(out, torch.tensor([[[neg(0.5), pos], [neg(2.0), neg(0.3)]]]))


def test_ce_hand_values() -> None:
    logits = torch.tensor([[[0.5, -1.0, 0.2], [2.0, 0.3, -0.4]]])  # 2 classes + background
    out = ce(logits, LABELS, SCORES, FG, 2)
    lse0 = math.log(math.exp(0.5) + math.exp(-1.0) + math.exp(0.2))
    lse1 = math.log(math.exp(2.0) + math.exp(0.3) + math.exp(-0.4))
    pos = -(0.6 * (-1.0 - lse0) + 0.4 * (0.2 - lse0))  # t_hat on class 1, 1 - t_hat on background
    neg = -(-0.4 - lse1)
    torch.testing.assert_close(out, torch.tensor([[pos, neg]]))
    torch.testing.assert_close(
        ce(logits, LABELS, SCORES, FG, 2, bg_weight=0.25), torch.tensor([[pos, 0.25 * neg]])
    )


@pytest.mark.parametrize("fn", [bce, varifocal])
def test_sigmoid_losses_pull_the_probability_to_the_soft_target(fn) -> None:  # noqa: ANN001
    x = torch.zeros(1, 1, 2, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(300):
        loss = fn(x, torch.tensor([[1]]), torch.tensor([[0.7]]), torch.tensor([[True]]), 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = torch.sigmoid(x.detach())[0, 0]
    assert p[1].item() == pytest.approx(0.7, abs=0.02)
    assert p[0].item() < 0.1


def test_ce_pulls_the_softmax_to_the_soft_target() -> None:
    x = torch.zeros(1, 1, 3, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(300):
        loss = ce(x, torch.tensor([[1]]), torch.tensor([[0.7]]), torch.tensor([[True]]), 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = torch.softmax(x.detach(), -1)[0, 0]
    assert p[1].item() == pytest.approx(0.7, abs=0.02) and p[2].item() == pytest.approx(0.3, abs=0.02)


def test_registry() -> None:
    assert {"bce", "varifocal"} <= set(list_cls_losses("sigmoid"))
    assert "ce" in list_cls_losses("softmax") and "ce" not in list_cls_losses("sigmoid")
    loss = get_cls_loss("varifocal", head="sigmoid")
    assert loss.fn is varifocal and loss.heads == frozenset({"sigmoid"})
    with pytest.raises(ValueError, match="unknown classification loss 'focal'"):
        get_cls_loss("focal")
    with pytest.raises(ValueError, match="'ce' is for a softmax head, not 'sigmoid'"):
        get_cls_loss("ce", head="sigmoid")
    with pytest.raises(ValueError, match="heads must be"):
        register_cls_loss("x", heads=("sigmoid", "other"))


def test_register_new_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cls_module, "_REGISTRY", dict(cls_module._REGISTRY))

    @register_cls_loss("scaled_ce", heads=("softmax",))
    def scaled_ce(logits, target_labels, target_scores, fg_mask, num_classes, scale=2.0):  # noqa: ANN001, ANN202
        return scale * ce(logits, target_labels, target_scores, fg_mask, num_classes)

    assert "scaled_ce" in list_cls_losses("softmax")
    assert get_cls_loss("scaled_ce").fn is scaled_ce
    with pytest.raises(ValueError, match="already registered"):
        register_cls_loss("ce", heads=("softmax",))(scaled_ce)
