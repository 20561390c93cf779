"""Label noise: deterministic, recorded changes equal the diff, rates hold, flips follow the mapping."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.detect.data.classes import SYNTHETIC
from ghostq.detect.data.noise import KINDS, add_label_noise, load_coco, similar_map


def make_coco(n: int = 400, names: tuple[str, ...] = SYNTHETIC, seed: int = 0, crowd_every: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = [
        {"id": i + 1, "file_name": f"{i}.png", "width": 200, "height": 100} for i in range(max(1, n // 20))
    ]
    anns = []
    for k in range(n):
        x, y = rng.uniform(0, 150), rng.uniform(0, 60)
        w, h = rng.uniform(5, 50), rng.uniform(5, 40)
        anns.append(
            {
                "id": 1000 + k,
                "image_id": images[k % len(images)]["id"],
                "category_id": 1 + k % len(names),
                "bbox": [x, y, min(w, 200 - x), min(h, 100 - y)],
                "area": w * h,
                "iscrowd": int(bool(crowd_every) and k % crowd_every == 0),
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
        )
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
    }


def diff(before: dict, after: dict) -> dict[int, tuple]:
    """What changed per annotation id: ('drop',) | ('class', old, new) | ('bbox', old, new)."""
    out: dict[int, tuple] = {}
    new = {a["id"]: a for a in after["annotations"]}
    for a in before["annotations"]:
        b = new.get(a["id"])
        if b is None:
            out[a["id"]] = ("drop",)
        elif b["category_id"] != a["category_id"]:
            out[a["id"]] = ("class", a["category_id"], b["category_id"])
        elif b["bbox"] != a["bbox"]:
            out[a["id"]] = ("bbox", a["bbox"], b["bbox"])
    return out


def recorded(changes: list[dict]) -> dict[int, tuple]:
    out: dict[int, tuple] = {}
    for c in changes:
        if c.get("dropped"):
            out[c["annotation_id"]] = ("drop",)
        elif "new_bbox" in c:
            out[c["annotation_id"]] = ("bbox", c["old_bbox"], c["new_bbox"])
        else:
            out[c["annotation_id"]] = ("class", c["old_category_id"], c["new_category_id"])
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_input_untouched_and_changes_equal_the_diff(kind: str) -> None:
    coco = make_coco()
    frozen = copy.deepcopy(coco)
    noisy, changes = add_label_noise(coco, kind, 0.3, seed=7)
    assert coco == frozen
    again, changes2 = add_label_noise(coco, kind, 0.3, seed=7)
    assert again == noisy and changes2 == changes
    other, _ = add_label_noise(coco, kind, 0.3, seed=8)
    assert other != noisy
    assert recorded(changes) == diff(coco, noisy)
    assert len(changes) > 0
    rec = noisy["ghostq_noise"]
    assert (rec["kind"], rec["rate"], rec["seed"], rec["changes"]) == (kind, 0.3, 7, changes)
    anns = {a["id"]: a for a in coco["annotations"]}
    for c in changes:
        assert c["image_id"] == anns[c["annotation_id"]]["image_id"] and c["kind"] == kind
    json.dumps(noisy, allow_nan=False)  # the record travels with the file


@pytest.mark.parametrize("kind", ["symmetric", "pairflip", "drop", "jitter"])
def test_empirical_rate_matches(kind: str) -> None:
    coco = make_coco(20000, seed=1)
    _, changes = add_label_noise(coco, kind, 0.3, seed=3)
    assert abs(len(changes) / 20000 - 0.3) < 0.015


def test_symmetric_flips_to_a_uniform_other_class() -> None:
    coco = make_coco(20000, seed=2)
    _, changes = add_label_noise(coco, "symmetric", 0.5, seed=1)
    assert all(c["new_category_id"] != c["old_category_id"] for c in changes)
    from_one = [c["new_category_id"] for c in changes if c["old_category_id"] == 1]
    share = np.bincount(from_one, minlength=6)[2:] / len(from_one)
    assert np.allclose(share, 0.25, atol=0.03)


def test_asymmetric_default_mapping_of_the_synthetic_set() -> None:
    coco = make_coco(5000)
    noisy, changes = add_label_noise(coco, "asymmetric", 0.4, seed=0)
    pairs = {(c["old_category_id"], c["new_category_id"]) for c in changes}
    assert pairs == {(1, 2), (2, 1)}  # small <-> large vehicle only; planes, ships, tanks keep their labels
    eligible = sum(a["category_id"] in (1, 2) for a in coco["annotations"])
    assert noisy["ghostq_noise"]["eligible"] == eligible
    assert abs(len(changes) / eligible - 0.4) < 0.04
    assert noisy["ghostq_noise"]["mapping"] == {
        "small-vehicle": ["large-vehicle"],
        "large-vehicle": ["small-vehicle"],
    }


def test_asymmetric_user_mapping_by_name_and_id() -> None:
    names = ("car", "van", "truck", "pickup", "boat")
    coco = make_coco(3000, names=names)
    assert similar_map(coco["categories"]) == {1: [2], 2: [1], 3: [4], 4: [3]}  # VEDAI default
    _, changes = add_label_noise(
        coco, "asymmetric", 0.5, seed=0, classes_similar={"Boat": ["car", 3], 2: "pickup"}
    )
    pairs = {(c["old_category_id"], c["new_category_id"]) for c in changes}
    assert pairs == {(5, 1), (5, 3), (2, 4)}
    with pytest.raises(GhostqError, match="unknown class 'bus'.*car, van"):
        add_label_noise(coco, "asymmetric", 0.5, seed=0, classes_similar={"bus": "car"})


def test_pairflip_drop_and_jitter_details() -> None:
    coco = make_coco(2000)
    _, changes = add_label_noise(coco, "pairflip", 0.5, seed=0)
    assert all(c["new_category_id"] == c["old_category_id"] % 5 + 1 for c in changes)
    noisy, changes = add_label_noise(coco, "drop", 0.25, seed=0)
    assert len(noisy["annotations"]) == 2000 - len(changes)
    assert all(c["dropped"] and "old_bbox" in c for c in changes)
    noisy, changes = add_label_noise(coco, "jitter", 1.0, seed=0, jitter=0.2)
    assert noisy["ghostq_noise"]["jitter"] == 0.2
    new = {a["id"]: a for a in noisy["annotations"]}
    for c in changes:
        (x, y, w, h), (nx, ny, nw, nh) = c["old_bbox"], c["new_bbox"]
        assert 0 <= nx and 0 <= ny and nx + nw <= 200 + 1e-6 and ny + nh <= 100 + 1e-6 and nw > 0 and nh > 0
        assert abs(nx - x) <= 0.2 * w + 1e-3 and abs(nx + nw - x - w) <= 0.2 * w + 1e-3
        assert abs(ny - y) <= 0.2 * h + 1e-3 and abs(ny + nh - y - h) <= 0.2 * h + 1e-3
        seg = np.array(new[c["annotation_id"]]["segmentation"][0])
        assert seg[0::2].min() == pytest.approx(nx, abs=2e-3) and seg[1::2].max() == pytest.approx(
            ny + nh, abs=2e-3
        )
        assert new[c["annotation_id"]]["area"] == pytest.approx(nw * nh, abs=1e-2)


def test_crowd_never_changes_and_edge_rates() -> None:
    coco = make_coco(500, crowd_every=4)
    _, changes = add_label_noise(coco, "symmetric", 1.0, seed=0)
    crowd = {a["id"] for a in coco["annotations"] if a["iscrowd"]}
    assert len(changes) == 500 - len(crowd) and not crowd & {c["annotation_id"] for c in changes}
    noisy, changes = add_label_noise(coco, "drop", 0.0, seed=0)
    assert changes == [] and noisy["annotations"] == coco["annotations"]


def test_noise_twice_keeps_the_earlier_record() -> None:
    once, _ = add_label_noise(make_coco(), "drop", 0.1, seed=0)
    twice, _ = add_label_noise(once, "symmetric", 0.1, seed=1)
    assert twice["ghostq_noise"]["kind"] == "symmetric"
    assert twice["ghostq_noise"]["previous"]["kind"] == "drop"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "pairs"}, "unknown kind"),
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"seed": -1}, "seed"),
        ({"jitter": 0.0}, "jitter"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"kind": "symmetric", "rate": 0.1, "seed": 0, **kwargs}
    with pytest.raises(GhostqError, match=match):
        add_label_noise(make_coco(10), **args)


def test_single_category_cannot_flip() -> None:
    with pytest.raises(GhostqError, match="at least 2 categories"):
        add_label_noise(make_coco(10, names=("car",)), "symmetric", 0.5, seed=0)


def test_load_coco_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n "annotations": [}')
    with pytest.raises(DataFormatError, match=r"bad.json:2: not valid JSON"):
        load_coco(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DataFormatError, match="not a COCO annotation file"):
        load_coco(bad)
    bad.write_text('{"annotations": [{"id": 1}], "categories": []}')
    with pytest.raises(DataFormatError, match="without id/image_id"):
        load_coco(bad)
    with pytest.raises(DataFormatError, match="file not found"):
        load_coco(tmp_path / "none.json")


def make_records(n: int = 30, seed: int = 0) -> list:
    """Records with 1-6 objects each, every other one marked difficult in the first image."""
    from ghostq.core.records import ImageRecord

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(1, 7))
        xy = rng.uniform(0, 100, (k, 2)).astype(np.float32)
        wh = rng.uniform(4, 40, (k, 2)).astype(np.float32)
        out.append(ImageRecord(f"{i}.png", Path(f"{i}.png"), 200, 200, np.concatenate([xy, xy + wh], 1),
                               rng.integers(0, 3, k), np.arange(k) % 2 == 1 if i == 0 else np.zeros(k, bool)))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_add_record_noise_matches_the_coco_noise(kind: str) -> None:
    """Records noised in memory carry exactly the annotations add_label_noise writes, in record order."""
    from ghostq.core.records import Dataset
    from ghostq.detect.data.coco_json import dataset_to_coco
    from ghostq.detect.data.noise import add_record_noise

    ds = Dataset("coco", Path("."), SYNTHETIC[:3], make_records())
    noisy, summary = add_record_noise(ds, kind, 0.4, seed=3)
    expected, changes = add_label_noise(dataset_to_coco(ds), kind, 0.4, 3)
    assert summary == {"kind": kind, "rate": 0.4, "seed": 3, "objects": sum(r.num_objects for r in ds.records),
                       "changed": len(changes)} and changes
    assert dataset_to_coco(ds)["annotations"] == dataset_to_coco(Dataset("coco", Path("."), SYNTHETIC[:3],
                                                                         make_records()))["annotations"]
    got = dataset_to_coco(Dataset("coco", Path("."), SYNTHETIC[:3], noisy))["annotations"]
    key = ("image_id", "category_id", "iscrowd")
    assert [tuple(a[k] for k in key) for a in got] == [tuple(a[k] for k in key) for a in expected["annotations"]]
    assert np.allclose([a["bbox"] for a in got], [a["bbox"] for a in expected["annotations"]], atol=1e-3)
    if kind in ("symmetric", "asymmetric", "pairflip"):  # flips keep each box bit-exact
        assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(ds.records, noisy, strict=True))
