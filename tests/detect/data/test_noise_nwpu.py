"""Asymmetric noise with NWPU VHR-10's look-alike classes (issue 12): only the named pairs flip."""

from __future__ import annotations

import numpy as np

from ghostq.detect.data.classes import NWPU_VHR10
from ghostq.detect.data.noise import add_label_noise


def test_nwpu_look_alikes() -> None:
    rng = np.random.default_rng(0)
    names = list(NWPU_VHR10)
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1 + k % len(names), "iscrowd": 0, "area": 100.0,
             "bbox": [float(rng.uniform(0, 50)), float(rng.uniform(0, 50)), 10.0, 10.0]} for k in range(4000)]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}], "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    noisy, changes = add_label_noise(coco, "asymmetric", 0.4, seed=0)
    cid = {n: i + 1 for i, n in enumerate(names)}
    pairs = {(c["old_category_id"], c["new_category_id"]) for c in changes}
    expect = {("tennis court", "basketball court"), ("basketball court", "tennis court"),
              ("baseball diamond", "ground track field"), ("ground track field", "baseball diamond"),
              ("ship", "harbor"), ("ship", "vehicle"), ("harbor", "ship"), ("vehicle", "ship")}
    assert pairs == {(cid[a], cid[b]) for a, b in expect}
    # airplane, storage tank and bridge have no look-alike: never changed, and not eligible
    eligible = sum(a["category_id"] not in (cid["airplane"], cid["storage tank"], cid["bridge"]) for a in anns)
    assert noisy["ghostq_noise"]["eligible"] == eligible
    assert abs(len(changes) / eligible - 0.4) < 0.04
    from_ship = [c["new_category_id"] for c in changes if c["old_category_id"] == cid["ship"]]
    assert 0.4 < np.mean(np.asarray(from_ship) == cid["harbor"]) < 0.6  # ship -> harbor or vehicle, evenly
