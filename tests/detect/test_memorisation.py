"""The memorisation metric on a hand case: which flipped objects the model predicts as their noisy class."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.detect.memorisation import NoisyObjects, memorisation_shares, object_outcomes


def _box(x: float) -> list[float]:
    return [x, 0.0, x + 10.0, 10.0]


def test_hand_case_outcomes_and_shares() -> None:
    # image 1: four flipped objects (true -> noisy) and one clean one
    img1 = NoisyObjects(np.array([_box(0), _box(20), _box(40), _box(60), _box(80)]),
                        true_labels=np.array([0, 1, 2, 3, 4]), noisy_labels=np.array([5, 6, 7, 8, 4]))
    dets1 = (np.array([_box(0), _box(0.5), _box(20), _box(40), _box(80)]),
             np.array([0.9, 0.4, 0.8, 0.7, 0.6]),
             np.array([5, 0, 1, 9, 4]))
    # object 0: the best overlapping detection says 5 (its noisy class) -> noisy, the weaker true-class one loses
    # object 1: predicted 1, its true class -> true; object 2: predicted 9 -> other; object 3: nothing -> missed
    assert object_outcomes(img1, *dets1) == ["noisy", "true", "other", "missed", "true"]
    # image 2: one flipped object predicted as its noisy class, no clean ones
    img2 = NoisyObjects(np.array([_box(0)]), np.array([2]), np.array([3]))
    dets2 = (np.array([_box(1)]), np.array([0.3]), np.array([3]))  # IoU 9/11 = 0.82
    shares = memorisation_shares([img1, img2], [dets1, dets2])
    assert shares["flipped"]["n"] == 5
    assert shares["flipped"]["noisy"] == pytest.approx(2 / 5)
    assert shares["flipped"]["true"] == pytest.approx(1 / 5)
    assert shares["flipped"]["other"] == pytest.approx(1 / 5)
    assert shares["flipped"]["missed"] == pytest.approx(1 / 5)
    assert shares["clean"] == {"n": 1, "noisy": 0.0, "true": 1.0, "other": 0.0, "missed": 0.0}


def test_low_overlap_is_missed_and_no_detections() -> None:
    obj = NoisyObjects(np.array([_box(0)]), np.array([0]), np.array([1]))
    far = (np.array([_box(6)]), np.array([0.9]), np.array([1]))  # IoU 4/16 = 0.25 < 0.5
    assert object_outcomes(obj, *far) == ["missed"]
    assert object_outcomes(obj, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) == ["missed"]
    empty = memorisation_shares([], [])
    assert empty["flipped"]["n"] == 0 and np.isnan(empty["flipped"]["noisy"])


def test_mismatched_inputs_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        object_outcomes(NoisyObjects(np.zeros((2, 4)), np.array([0]), np.array([1])), np.zeros((0, 4)), [], [])
    with pytest.raises(ValueError, match="images"):
        memorisation_shares([NoisyObjects(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], [])
