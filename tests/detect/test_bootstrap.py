"""Paired bootstrap: the weighted re-accumulation equals pycocotools, and the interval is right on hand cases."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ghostq.detect.bootstrap import coco_map, coco_matches, map_difference, paired_bootstrap
from ghostq.detect.evaluate import evaluate_coco


def _dataset(seed: int, num_images: int = 12, num_classes: int = 3) -> tuple[dict, list[dict]]:
    """Random ground truth (some difficult boxes, small and large) and noisy detections with distinct scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 512, "height": 512} for i in range(num_images)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(num_classes)]
    anns, dets = [], []
    for img in images:
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(8, 150, 2)
            x, y = rng.uniform(0, 350, 2)
            c = int(rng.integers(1, num_classes + 1))
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0, "difficult": int(rng.random() < 0.1)})
            if rng.random() < 0.8:  # found, with some localisation error
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                dets.append({"image_id": img["id"], "category_id": c, "bbox": [x + j[0], y + j[1], w, h]})
        for _ in range(rng.integers(0, 4)):  # false positives
            dets.append({"image_id": img["id"], "category_id": int(rng.integers(1, num_classes + 1)),
                         "bbox": [*rng.uniform(0, 400, 2).tolist(), *rng.uniform(10, 100, 2).tolist()]})
    for d, s in zip(dets, rng.permutation(len(dets)) / len(dets) + 1e-3, strict=True):
        d["score"] = float(s)
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_weights_equal_pycocotools(seed: int) -> None:
    gt, dets = _dataset(seed)
    ref = evaluate_coco(gt, dets)
    got = coco_map(coco_matches(gt, dets))
    assert got["mAP50"] == pytest.approx(ref["mAP50"], abs=1e-12)
    assert got["mAP50_95"] == pytest.approx(ref["mAP50_95"], abs=1e-12)


def test_weight_two_equals_a_copy_of_the_image() -> None:
    gt, dets = _dataset(3)
    dup = 4  # image id 5 (index 4) counted twice
    gt2, dets2 = copy.deepcopy(gt), copy.deepcopy(dets)
    new_id = len(gt["images"]) + 1
    gt2["images"].append({"id": new_id, "width": 512, "height": 512})
    for a in gt["annotations"]:
        if a["image_id"] == dup + 1:
            gt2["annotations"].append({**a, "id": len(gt2["annotations"]) + 1, "image_id": new_id})
    dets2 += [{**d, "image_id": new_id} for d in dets if d["image_id"] == dup + 1]
    weights = np.ones(len(gt["images"]))
    weights[dup] = 2
    weights[7] = 0  # and image index 7 left out
    gt2["images"] = [im for im in gt2["images"] if im["id"] != 8]
    gt2["annotations"] = [a for a in gt2["annotations"] if a["image_id"] != 8]
    dets2 = [d for d in dets2 if d["image_id"] != 8]
    ref = evaluate_coco(gt2, dets2)
    got = coco_map(coco_matches(gt, dets), weights)
    assert got["mAP50"] == pytest.approx(ref["mAP50"], abs=1e-12)
    assert got["mAP50_95"] == pytest.approx(ref["mAP50_95"], abs=1e-12)


def test_constant_shift_gives_a_degenerate_interval() -> None:
    x = np.random.default_rng(0).random(50)
    out = paired_bootstrap(lambda w: w @ x / w.sum(), lambda w: w @ (x + 0.1) / w.sum(), 50, draws=200)
    assert out["diff"] == pytest.approx(0.1)
    assert out["ci"] == pytest.approx([0.1, 0.1])
    assert out["significant"] is True


def test_interval_of_a_mean_difference_matches_the_normal_approximation() -> None:
    """For a difference of means the bootstrap percentile interval is close to mean +- 1.96 sd / sqrt(n)."""
    rng = np.random.default_rng(1)
    n = 400
    a = rng.normal(0.0, 1.0, n)
    b = a + rng.normal(0.05, 0.5, n)  # paired: b shares a's per-image value
    out = paired_bootstrap(lambda w: w @ a / w.sum(), lambda w: w @ b / w.sum(), n, draws=1000, seed=0)
    d = b - a
    half = 1.96 * d.std(ddof=1) / np.sqrt(n)
    assert out["diff"] == pytest.approx(d.mean())
    assert out["ci"][0] == pytest.approx(d.mean() - half, abs=0.25 * half)
    assert out["ci"][1] == pytest.approx(d.mean() + half, abs=0.25 * half)
    again = paired_bootstrap(lambda w: w @ a / w.sum(), lambda w: w @ b / w.sum(), n, draws=1000, seed=0)
    assert again["ci"] == out["ci"]  # fixed seed: same interval


def test_map_difference_of_identical_and_of_better_detections() -> None:
    gt, dets = _dataset(4, num_images=20)
    same = map_difference(gt, dets, dets, draws=100)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and not same["significant"]
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    better = map_difference(gt, dets, perfect, metric="mAP50_95", draws=200)
    assert better["b"] == pytest.approx(1.0)
    assert better["ci"][0] > 0 and better["significant"]


def test_map_differences_equals_one_run_per_metric() -> None:
    """Both metrics from one set of draws are each what their own run gives (same seed: same draws)."""
    from ghostq.detect.bootstrap import map_differences

    gt, dets = _dataset(5, num_images=16)
    _, other = _dataset(6, num_images=16)
    both = map_differences(gt, dets, other, draws=150, seed=3)
    assert list(both) == ["mAP50", "mAP50_95"]
    for metric, got in both.items():
        assert got == map_difference(gt, dets, other, metric=metric, draws=150, seed=3)
    assert both["mAP50"]["ci"] != both["mAP50_95"]["ci"]
