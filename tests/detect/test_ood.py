"""OOD scores per detection: hand-computed MSP and energy, and their path through postprocess."""

from __future__ import annotations

import math

import pytest
import torch

from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.ood import energy_score, msp_score, ood_score
from ghostq.detect.postprocess import postprocess

LN3 = math.log(3)


def test_msp_hand_values() -> None:
    # softmax C+1: background logit (5) dropped; softmax(0, ln 3) = (0.25, 0.75) -> 1 - 0.75 = 0.25
    assert msp_score(torch.tensor([0.0, LN3, 5.0]), "softmax").item() == pytest.approx(0.25)
    # sigmoid: sigmoid(0, ln 3) = (0.5, 0.75) -> 1 - 0.75 = 0.25
    assert msp_score(torch.tensor([0.0, LN3]), "sigmoid").item() == pytest.approx(0.25)


def test_energy_hand_values() -> None:
    # softmax: -logsumexp(0, ln 3) = -ln(1 + 3) = -1.386294
    assert energy_score(torch.tensor([0.0, LN3, 5.0]), "softmax").item() == pytest.approx(-math.log(4))
    # T = 2: -2 logsumexp(0, ln 3 / 2) = -2 ln(1 + sqrt 3) = -2.010106
    assert energy_score(torch.tensor([0.0, LN3, 5.0]), "softmax", 2.0).item() == pytest.approx(-2.010106, abs=1e-5)
    # sigmoid (joint energy): -(ln(1 + e^0) + ln(1 + 3)) = -ln 8 = -2.079442
    assert energy_score(torch.tensor([0.0, LN3]), "sigmoid").item() == pytest.approx(-math.log(8))


def test_confident_detection_scores_lower_than_ambiguous() -> None:
    confident, ambiguous = torch.tensor([8.0, -4.0, -4.0]), torch.tensor([1.0, 1.0, 1.0])
    for head in ("sigmoid", "softmax"):
        for method in ("msp", "energy"):
            s = ood_score(torch.stack([confident, ambiguous]), head, method)
            assert s[0] < s[1], (head, method)
    with pytest.raises(ValueError, match="unknown OOD score"):
        ood_score(confident, "sigmoid", "entropy")


@pytest.mark.parametrize("method", ["msp", "energy"])
def test_postprocess_carries_the_score_of_each_detection_anchor(method: str) -> None:
    logits = torch.tensor([[[4.0, -3.0], [0.5, 0.2], [-9.0, -9.0]]])  # sigmoid head, C = 2
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [20.0, 20.0, 30.0, 30.0]]])
    out = DetectorOutput(logits, boxes, torch.zeros(3, 2), torch.full((3,), 8.0), "sigmoid")
    det = postprocess(out, score_threshold=0.5, ood=method)[0]
    expected = ood_score(logits[0], "sigmoid", method)
    # anchor 0 (class 0, 0.98) and anchor 1 (class 0, 0.62; class 1, 0.55) are detected, anchor 2 is not
    assert det.ood is not None and len(det.ood) == len(det) == 3
    rows = {tuple(b.tolist()): o.item() for b, o in zip(det.boxes, det.ood, strict=True)}
    assert rows[(0.0, 0.0, 10.0, 10.0)] == pytest.approx(expected[0].item())
    assert rows[(50.0, 50.0, 60.0, 60.0)] == pytest.approx(expected[1].item())
    assert postprocess(out, score_threshold=0.5)[0].ood is None
