"""DetectionLoss end to end: it trains a free-parameter head; empty batches, bad boxes, hooks."""

from __future__ import annotations

import math

import pytest
import torch

from ghostq.detect.boxes import bbox_iou
from ghostq.detect.losses import Assignment, DetectionLoss
from ghostq.detect.models.output import DetectorOutput, Targets


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return bbox_iou(a, b, kind="iou")

NUM_CLASSES = 3


def grid(size: int, strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    pts, st = [], []
    for s in strides:
        r = torch.arange(size // s, dtype=torch.float32) * s + s / 2
        y, x = torch.meshgrid(r, r, indexing="ij")
        pts.append(torch.stack([x.flatten(), y.flatten()], -1))
        st.append(torch.full((x.numel(),), float(s)))
    return torch.cat(pts), torch.cat(st)


class FakeHead(torch.nn.Module):
    """Free parameters shaped as a head's output: logits, and box sides as log distances in strides (ltrb)."""

    def __init__(self, batch: int, head: str, size: int = 64, strides: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.points, self.strides = grid(size, strides)
        n = len(self.points)
        g = torch.Generator().manual_seed(0)
        if head == "sigmoid":  # class prior 0.01, as a detector's bias initialisation gives
            bias = torch.full((NUM_CLASSES,), -math.log(99))
        else:  # background prior 0.99
            bias = torch.zeros(NUM_CLASSES + 1)
            bias[NUM_CLASSES] = math.log(99 * NUM_CLASSES)
        self.logits = torch.nn.Parameter(bias + 0.01 * torch.randn(batch, n, len(bias), generator=g))
        self.ltrb = torch.nn.Parameter(0.1 * torch.randn(batch, n, 4, generator=g))  # sides of ~1 stride

    def forward(self) -> DetectorOutput:
        d = self.ltrb.exp() * self.strides[None, :, None]
        boxes = torch.cat([self.points - d[..., :2], self.points + d[..., 2:]], -1)
        return DetectorOutput(self.logits, boxes, self.points, self.strides)


def targets_two_images() -> Targets:
    """Image 0: a 6 x 12 px vehicle (class 1) and a 20 x 22 px object (class 2); image 1: no object."""
    return Targets(
        boxes=torch.tensor([[[25.0, 30.0, 31.0, 42.0], [36.0, 6.0, 56.0, 28.0]], [[0.0] * 4, [0.0] * 4]]),
        labels=torch.tensor([[1, 2], [0, 0]]),
        mask=torch.tensor([[True, True], [False, False]]),
    )


@pytest.mark.parametrize(
    ("head", "cls_loss", "box_loss"),
    [("sigmoid", "varifocal", "giou"), ("sigmoid", "bce", "ciou"), ("softmax", "ce", "giou")],
)
def test_loss_trains_a_fake_head(head: str, cls_loss: str, box_loss: str) -> None:
    torch.manual_seed(0)
    model = FakeHead(2, head)
    targets = targets_two_images()
    loss_fn = DetectionLoss(NUM_CLASSES, head=head, cls_loss=cls_loss, box_loss=box_loss)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    first = None
    for _ in range(100):
        total, parts = loss_fn(model(), targets)
        assert torch.isfinite(total)
        first = first if first is not None else total.item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < 0.3 * first
    assert parts["num_fg"] > 2

    out = model()
    scores = loss_fn.scores(out.cls_logits.detach())
    for m in range(2):
        c = int(targets.labels[0, m])
        best = scores[0, :, c].argmax()  # the detection that NMS would keep for this object
        assert scores[0, best, c] > 0.5  # up from the 0.01 prior
        assert (
            scores[0, best, c] > 5 * scores[0, best].sort().values[-2]
        )  # ... and well above the other classes
        assert iou(out.boxes[0, best].detach(), targets.boxes[0, m]) > 0.8
    assert scores[1].max() < 0.05  # the empty image stays background


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("empty", ["no_columns", "all_padding"])
def test_batch_without_objects_is_finite(head: str, empty: str) -> None:
    model = FakeHead(2, head)
    t = targets_two_images()
    if empty == "no_columns":
        t = Targets(t.boxes[:, :0], t.labels[:, :0], t.mask[:, :0])
    else:
        t = Targets(t.boxes, t.labels, torch.zeros_like(t.mask))
    total, parts = DetectionLoss(NUM_CLASSES, head=head)(model(), t)
    assert torch.isfinite(total) and total.item() > 0
    assert parts["box"] == 0 and parts["num_fg"] == 0 and parts["cls"] > 0
    total.backward()
    assert model.logits.grad is not None and torch.isfinite(model.logits.grad).all()
    assert model.ltrb.grad is not None and (model.ltrb.grad == 0).all()  # in the graph, with zero gradient


@pytest.mark.parametrize("box_loss", ["giou", "ciou"])
def test_degenerate_boxes_never_give_nan(box_loss: str) -> None:
    model = FakeHead(1, "sigmoid")
    out = model()
    boxes = out.boxes.detach().clone()
    boxes[0, ::3] = boxes[0, ::3, [2, 3, 0, 1]]  # inverted predictions
    boxes[0, 1::3, 2:] = boxes[0, 1::3, :2]  # zero-area predictions
    boxes.requires_grad_()
    targets = Targets(
        boxes=torch.tensor([[[20.0, 20.0, 20.0, 30.0], [5.0, 5.0, 5.0, 5.0], [40.0, 40.0, 30.0, 30.0]]]),
        labels=torch.tensor([[0, 1, 2]]),
        mask=torch.ones(1, 3, dtype=torch.bool),
    )
    total, parts = DetectionLoss(NUM_CLASSES, box_loss=box_loss)(
        DetectorOutput(out.cls_logits, boxes, out.points, out.strides), targets
    )
    assert torch.isfinite(total) and all(math.isfinite(v) for v in parts.values())
    total.backward()
    assert torch.isfinite(boxes.grad).all() and torch.isfinite(model.logits.grad).all()


def test_total_is_the_weighted_sum_of_the_parts() -> None:
    model = FakeHead(2, "sigmoid")
    total, parts = DetectionLoss(NUM_CLASSES, cls_weight=0.5, box_weight=7.5)(model(), targets_two_images())
    assert set(parts) == {"cls", "box", "num_fg"}
    assert total.item() == pytest.approx(0.5 * parts["cls"] + 7.5 * parts["box"], rel=1e-5)


def test_bad_configuration_and_shapes() -> None:
    with pytest.raises(ValueError, match="head must be one of"):
        DetectionLoss(NUM_CLASSES, head="softplus")
    with pytest.raises(ValueError, match="'varifocal' is for a sigmoid head, not 'softmax'"):
        DetectionLoss(NUM_CLASSES, head="softmax", cls_loss="varifocal")
    with pytest.raises(ValueError, match="unknown box loss"):
        DetectionLoss(NUM_CLASSES, box_loss="l1")
    out = FakeHead(2, "sigmoid")()  # K = C logits given to a softmax loss that needs C + 1
    with pytest.raises(ValueError, match=r"softmax head with 3 classes gives \[B, N, 4\]"):
        DetectionLoss(NUM_CLASSES, head="softmax")(out, targets_two_images())


def test_logit_transform_applies_to_the_classification_loss_only() -> None:
    model = FakeHead(2, "softmax")
    out, targets = model(), targets_two_images()
    seen: list[tuple[int, ...]] = []

    def to_zero(z: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(z.shape))
        return z * 0

    plain = DetectionLoss(NUM_CLASSES, head="softmax")
    _, ref = plain(out, targets)
    _, zeroed = DetectionLoss(NUM_CLASSES, head="softmax", logit_transform=to_zero)(out, targets)
    assert seen == [tuple(out.cls_logits.shape)]
    assert zeroed["num_fg"] == ref["num_fg"] and zeroed["box"] == pytest.approx(ref["box"])  # same assignment
    # With all-zero logits, every anchor's CE over its soft target is log(C + 1).
    n = out.cls_logits.shape[0] * out.cls_logits.shape[1]
    normalizer = max(1.0, plain.assign(out, targets).box_weights.sum().item())
    assert zeroed["cls"] == pytest.approx(n * math.log(NUM_CLASSES + 1) / normalizer, rel=1e-5)


def test_assignment_hook_can_rewrite_targets() -> None:
    model = FakeHead(2, "sigmoid")
    out, targets = model(), targets_two_images()
    calls: list[Assignment] = []

    def drop_all(a: Assignment, o: DetectorOutput, t: Targets) -> Assignment:
        calls.append(a)
        a.cls_weights = torch.zeros_like(a.cls_weights)
        a.box_weights = torch.zeros_like(a.box_weights)
        return a

    total, parts = DetectionLoss(NUM_CLASSES, assignment_hook=drop_all)(out, targets)
    assert len(calls) == 1 and calls[0].num_fg > 0
    assert parts["cls"] == 0 and parts["box"] == 0 and total.item() == 0
