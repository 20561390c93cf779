"""ODNL / Open-sampling labels, the assignment hook, open-set pasting, and a tiny training run with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostq.core.config import load_config
from ghostq.core.errors import GhostqError
from ghostq.core.records import ImageRecord
from ghostq.detect.data.open_set_paste import (
    OPEN_SET_LABEL,
    OpenSetPasteDataset,
    collate_open_set,
    folder_patches,
    paste_patches,
    synthetic_patches,
)
from ghostq.detect.data.torch_dataset import DetectionDataset
from ghostq.detect.losses import Assignment, DetectionLoss
from ghostq.detect.losses.open_set import OpenSetHook, OpenSetLabeler, complementary_prior
from ghostq.detect.models.output import DetectorOutput, Targets

REPO = Path(__file__).resolve().parents[3]
CHI2_999 = {4: 18.467, 2: 13.816}  # chi-square quantile 0.999 by degrees of freedom


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_complementary_prior_hand_values() -> None:
    # counts (10, 1, 3, 4, 5) of 23: beta = c / 23, alpha = (10 + 1) / 23, alpha - beta = (11 - c) / 23
    # -> (1, 10, 8, 7, 6) / 23, normalised by 32 / 23: (1, 10, 8, 7, 6) / 32
    gamma = complementary_prior([10, 1, 3, 4, 5])
    assert torch.allclose(gamma, torch.tensor([1, 10, 8, 7, 6]) / 32.0)
    assert torch.allclose(complementary_prior([7, 7, 7]), torch.full((3,), 1 / 3))  # balanced -> uniform
    assert torch.allclose(complementary_prior([5]), torch.ones(1))
    with pytest.raises(ValueError):
        complementary_prior([0, 0])


def test_open_sampling_labels_follow_the_formula() -> None:
    counts = [10, 1, 3, 4, 5]
    gamma = torch.tensor([1, 10, 8, 7, 6]) / 32.0
    lab = OpenSetLabeler(5, "open_sampling", eta=0.5, class_counts=counts, generator=torch.Generator().manual_seed(0))
    labels, weights = lab.draw(50_000)
    observed = torch.bincount(labels, minlength=5).float()
    assert chi_square(observed, gamma) < CHI2_999[4]
    assert torch.allclose(observed / 50_000, gamma, atol=0.01)
    # weight of a sample labelled c: lambda * K * Gamma_c
    assert torch.allclose(weights, 0.5 * 5 * gamma[labels])
    assert lab.draw(0)[0].numel() == 0


def test_odnl_labels_are_uniform_and_fresh() -> None:
    lab = OpenSetLabeler(3, "odnl", eta=2.5, generator=torch.Generator().manual_seed(0))
    labels, weights = lab.draw(30_000)
    assert chi_square(torch.bincount(labels, minlength=3).float(), torch.full((3,), 1 / 3)) < CHI2_999[2]
    assert (weights == 2.5).all()
    with pytest.raises(ValueError, match="method"):
        OpenSetLabeler(3, "mixup")


def _assignment(b: int = 1, n: int = 200) -> tuple[Assignment, Targets]:
    """Anchors 0..99 assigned to GT 0 (in-distribution, class 2), 100..199 to GT 1 (open-set)."""
    gt_index = torch.cat([torch.zeros(100), torch.ones(100)]).long()[None].expand(b, n).clone()
    a = Assignment(
        labels=torch.where(gt_index == 0, 2, 0),
        boxes=torch.zeros(b, n, 4),
        scores=torch.full((b, n), 0.7),
        fg_mask=torch.ones(b, n, dtype=torch.bool),
        gt_index=gt_index,
        cls_weights=torch.ones(b, n),
        box_weights=torch.full((b, n), 0.7),
    )
    targets = Targets(
        boxes=torch.zeros(b, 2, 4),
        labels=torch.tensor([[2, 0]]).expand(b, 2),
        mask=torch.ones(b, 2, dtype=torch.bool),
        open_set=torch.tensor([[False, True]]).expand(b, 2),
    )
    return a, targets


def test_hook_relabels_open_set_anchors_afresh_each_iteration() -> None:
    hook = OpenSetHook(OpenSetLabeler(5, "odnl", eta=0.5, generator=torch.Generator().manual_seed(0)))
    a, targets = _assignment()
    out = None  # the hook does not read the output
    first, second = hook(a, out, targets), hook(a, out, targets)
    open_ = slice(100, 200)
    # in-distribution anchors untouched
    assert (first.labels[0, :100] == 2).all() and (first.cls_weights[0, :100] == 1).all()
    assert (first.box_weights[0, :100] == 0.7).all()
    # open-set anchors: random labels, weight eta, no box loss, t_hat kept
    assert (first.cls_weights[0, open_] == 0.5).all() and (first.box_weights[0, open_] == 0).all()
    assert (first.scores[0, open_] == 0.7).all()
    assert len(first.labels[0, open_].unique()) == 5
    # ... and different labels at the next iteration
    assert (first.labels[0, open_] != second.labels[0, open_]).float().mean() > 0.5
    assert (a.labels[0, open_] == 0).all()  # the input assignment is not modified
    # targets without open-set flags pass unchanged
    plain = Targets(targets.boxes, targets.labels, targets.mask)
    assert hook(a, out, plain) is a


def _grid_output(head: str, nc: int = 3) -> DetectorOutput:
    r = torch.arange(8, dtype=torch.float32) * 8 + 4
    y, x = torch.meshgrid(r, r, indexing="ij")
    points = torch.stack([x.flatten(), y.flatten()], -1)
    logits = torch.randn(1, 64, nc + (head == "softmax"), generator=torch.Generator().manual_seed(1))
    boxes = torch.cat([points - 6, points + 6], -1)[None]
    return DetectorOutput(logits.requires_grad_(), boxes, points, torch.full((64,), 8.0), head)


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_open_set_objects_through_detection_loss(head: str) -> None:
    out = _grid_output(head)
    boxes = torch.tensor([[[8.0, 8.0, 24.0, 24.0], [36.0, 36.0, 56.0, 56.0]]])
    flagged = Targets(boxes, torch.tensor([[1, 0]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([[False, True]]))
    only_in = Targets(boxes[:, :1], torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool))
    hook = OpenSetHook(OpenSetLabeler(3, "odnl", eta=1.0))
    loss = DetectionLoss(3, head=head, cls_loss="bce" if head == "sigmoid" else "ce", assignment_hook=hook)
    total, parts = loss(out, flagged)
    ref_total, ref = loss(out, only_in)
    assert torch.isfinite(total)
    assert parts["box"] == pytest.approx(ref["box"])  # open-set boxes add no box loss nor normaliser mass
    assert parts["num_fg"] > ref["num_fg"]  # their anchors are trained (on random labels)
    assert parts["cls"] != pytest.approx(ref["cls"])
    total.backward()
    assert torch.isfinite(out.cls_logits.grad).all()


# ------------------------------------------------------------------------------------------ pasting
def test_synthetic_patches_are_distractor_cutouts() -> None:
    patches = synthetic_patches(n=8, seed=0)
    assert len(patches) == 8
    for p in patches:
        assert p.rgb.dtype == np.uint8 and p.rgb.shape[:2] == p.alpha.shape
        assert 3 <= max(p.alpha.shape) <= 96 and p.alpha.max() == 1.0
        assert p.alpha.mean() > 0.3  # cropped to the drawn object


def test_paste_adds_boxes_away_from_objects() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    rng = np.random.default_rng(0)
    red = [type(p)(np.full_like(p.rgb, (200, 10, 10)), np.ones_like(p.alpha)) for p in synthetic_patches(4)]
    obj = np.array([[0.0, 0.0, 32.0, 64.0]])  # left half is taken
    out, pasted = paste_patches(img, obj, red, rng, count=3)
    assert len(pasted) >= 1
    for x0, y0, x1, y1 in pasted:
        assert x1 > x0 and y1 > y0
        overlap = max(0.0, 32 - x0) * (y1 - y0)
        assert overlap <= 0.1 * (x1 - x0) * (y1 - y0) + 1e-6
        assert (out[int(y0) : int(y1), int(x0) : int(x1), 0] == 200).any()


def test_folder_patches_and_errors(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 6), (1, 2, 3, 255)).save(tmp_path / "a.png")
    Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "b.jpg")
    patches = folder_patches(tmp_path)
    assert [p.rgb.shape for p in patches] == [(6, 10, 3), (5, 5, 3)]
    with pytest.raises(GhostqError, match="not found"):
        folder_patches(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GhostqError, match="no images"):
        folder_patches(tmp_path / "empty")


def test_paste_dataset_and_collate(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), (90, 120, 70)).save(tmp_path / "im.png")
    rec = ImageRecord("im.png", tmp_path / "im.png", 64, 64, boxes=[[4, 4, 20, 20]], labels=[1], difficult=[False])
    base = DetectionDataset([rec, rec], img_size=64, train=True, augment=None)
    ds = OpenSetPasteDataset(base, synthetic_patches(8), per_image=2)
    item = ds[0]
    assert (item[2] == OPEN_SET_LABEL).sum() == item[4]["open_set"] >= 1
    assert torch.equal(ds[0][0], item[0])  # deterministic per (seed, epoch, index)
    _, targets, _ = collate_open_set([ds[0], ds[1]])
    assert targets.open_set is not None and targets.open_set.shape == targets.labels.shape
    assert (targets.labels >= 0).all()
    assert targets.open_set.sum() == sum(int((ds[i][2] == OPEN_SET_LABEL).sum()) for i in range(2))
    assert not targets.open_set[:, 0].any()  # the real object


def test_tiny_training_with_open_set_and_logit_clip(tmp_path: Path) -> None:
    from ghostq.stages.train import train

    cfg = load_config(
        REPO / "configs" / "smoke.yaml",
        [
            f"run.root={tmp_path}",
            "run.name=os",
            "data.synthetic.images=8",
            "data.img_size=64",
            "data.synthetic.size=64",
            "train.batch_size=4",
            "train.threads=1",
            "model.head=softmax",
            "loss.cls=ce",
            "loss.logit_clip={bound: 3}",
            "loss.open_set={method: open_sampling, eta: 0.5}",
        ],
    )
    result = train(cfg, show_progress=False)
    metrics = json.loads((tmp_path / "os" / "fp" / "metrics.json").read_text())
    assert metrics["epochs_done"] == 1 and 0.0 <= metrics["mAP50"] <= 1.0
    assert np.isfinite(metrics["history"][0]["loss"])
    assert result.model is not None
