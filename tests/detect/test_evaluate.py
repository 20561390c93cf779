"""COCO evaluation against pycocotools itself, edge cases, input validation, dispatch."""

from __future__ import annotations

import copy
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.detect.evaluate import evaluate, evaluate_coco, evaluate_voc, load_ground_truth

CLASSES = ["small-vehicle", "plane", "ship", "storage-tank"]  # storage-tank never appears in the GT


def _generated(seed: int = 0, n_images: int = 6) -> tuple[dict, list[dict]]:
    """GT in ghostq's COCO style (difficult: difficult = ignore = 1, iscrowd 0) and jittered detections."""
    rng = np.random.default_rng(seed)
    anns, dets = [], []
    for image_id in range(1, n_images + 1):
        for _ in range(rng.integers(3, 9)):
            cat = int(rng.integers(1, 4))
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(8, 60, 2)
            difficult = int(rng.random() < 0.15)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "difficult": difficult,
                    "ignore": difficult,
                }
            )
            for _copy in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, or found twice
                jit = rng.normal(0, 0.06, 4) * [w, h, w, h]
                cat_d = cat if rng.random() > 0.1 else int(rng.integers(1, 5))  # some wrong classes
                dets.append(
                    {
                        "image_id": image_id,
                        "category_id": cat_d,
                        "bbox": [x + jit[0], y + jit[1], max(w + jit[2], 1.0), max(h + jit[3], 1.0)],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(rng.integers(0, 4)):  # background false positives
            x, y = rng.uniform(0, 400, 2)
            dets.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 5)),
                    "bbox": [x, y, 20.0, 20.0],
                    "score": float(rng.random()),
                }
            )
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    images = [{"id": i, "file_name": f"{i}.png", "width": 512, "height": 512} for i in range(1, n_images + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _pycocotools(gt_path: Path, dets_path: Path) -> COCOeval:
    with redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(dets_path)), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_equals_pycocotools(tmp_path: Path, seed: int) -> None:
    gt, dets = _generated(seed)
    # What pycocotools needs to ignore difficult boxes: iscrowd 1 (the conversion evaluate_coco does itself).
    crowd = copy.deepcopy(gt)
    for ann in crowd["annotations"]:
        ann["iscrowd"] = ann["difficult"]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "crowd.json").write_text(json.dumps(crowd))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    ev = _pycocotools(tmp_path / "crowd.json", tmp_path / "dets.json")

    res = evaluate_coco(tmp_path / "gt.json", tmp_path / "dets.json")
    assert res["mAP50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert res["mAP50_95"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert 0.1 < res["mAP50_95"] < res["mAP50"] < 1.0  # a real, non-trivial case
    prec = ev.eval["precision"][:, :, :, 0, 2]  # area all, 100 dets
    for k, name in enumerate(CLASSES[:3]):
        p = prec[:, :, k]
        assert res["per_class"][name]["AP50"] == pytest.approx(p[0][p[0] > -1].mean(), abs=1e-12)
        assert res["per_class"][name]["AP50_95"] == pytest.approx(p[p > -1].mean(), abs=1e-12)
    assert res["per_class"]["storage-tank"] == {"AP50": None, "AP50_95": None}  # no GT: null, not in the mean
    assert res["num_images"] == 6 and res["num_dets"] == len(dets)
    # The same numbers from in-memory objects, which are left untouched.
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    assert evaluate_coco(gt, dets) == res
    assert gt == gt_before and dets == dets_before


@pytest.mark.parametrize("metric", ["coco", "voc07", "voc12"])
def test_difficult_is_neither_positive_nor_false_positive(metric: str) -> None:
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [20, 0, 10, 10],
                "iscrowd": 0,
                "difficult": 1,
                "ignore": 1,
            },
        ],
    }
    on_easy = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8}
    on_difficult = {"image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "score": 0.9}
    # Were the difficult box a positive, recall would stop at 1/2; were its detection a FP, precision at 1/2.
    assert evaluate(gt, [on_easy], metric)["mAP50"] == pytest.approx(1.0)
    assert evaluate(gt, [on_difficult, on_easy], metric)["mAP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("metric", ["coco", "voc07", "voc12"])
def test_no_detections(metric: str) -> None:
    gt, _ = _generated()
    res = evaluate(gt, [], metric)
    assert res["mAP50"] == 0.0 and res["num_dets"] == 0
    assert [v["AP50"] for v in res["per_class"].values()] == [0.0, 0.0, 0.0, None]
    if metric == "coco":
        assert res["mAP50_95"] == 0.0


@pytest.mark.parametrize("metric", ["coco", "voc07", "voc12"])
def test_detection_on_image_without_gt_is_false_positive(metric: str) -> None:
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "ship"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0}],
    }
    hit = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}
    stray = {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}  # image 2 has no GT
    ship = {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9}  # class without GT
    assert evaluate(gt, [hit, ship], metric)["mAP50"] == pytest.approx(1.0)
    res = evaluate(gt, [hit, stray, ship], metric)
    # FP then TP: precision 1/2 at recall 1. VOC12 = 0.5, VOC07 = 11 * 0.5 / 11; COCO interpolates the same.
    assert res["mAP50"] == pytest.approx(0.5)
    assert res["per_class"]["ship"]["AP50"] is None


def test_ground_truth_parsed_once_and_reused() -> None:
    gt, dets = _generated(3)
    truth = load_ground_truth(gt)
    assert load_ground_truth(truth) is truth
    assert evaluate_coco(truth, dets) == evaluate_coco(gt, dets)
    assert evaluate_voc(truth, dets, use_07_metric=True) == evaluate(gt, dets, "voc07")
    assert truth.ann_difficult.sum() == sum(a["difficult"] for a in gt["annotations"])


def _good() -> tuple[dict, list[dict]]:
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0}],
    }
    return gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}] * 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__(2, {**d[2], "image_id": 9}), "entry 2: unknown image_id 9"),
        (lambda d: d.__setitem__(1, {**d[1], "category_id": 5}), "entry 1: unknown category_id 5"),
        (lambda d: d.__setitem__(2, {**d[2], "score": float("nan")}), "entry 2: score is NaN"),
        (lambda d: d.__setitem__(0, {**d[0], "bbox": [0, 0, -3, 10]}), "entry 0: negative width"),
        (lambda d: d.__setitem__(1, {**d[1], "bbox": [0, 0, 10]}), "entry 1: 'bbox' must be 4 numbers"),
        (lambda d: d.__setitem__(1, {k: v for k, v in d[1].items() if k != "score"}), "entry 1: 'score'"),
        (lambda d: d.__setitem__(0, "box"), "entry 0: expected an object"),
    ],
)
def test_bad_detections(change, message: str) -> None:
    gt, dets = _good()
    dets = list(dets)
    change(dets)
    for metric in ("coco", "voc12"):
        with pytest.raises(DataFormatError, match=message) as info:
            evaluate(gt, dets, metric)
        assert "\n" not in str(info.value) and str(info.value).startswith("<detections>: ")


def test_bad_files(tmp_path: Path) -> None:
    gt, dets = _good()
    gt_path, dets_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(gt))
    dets_path.write_text(json.dumps({"annotations": dets}))
    with pytest.raises(DataFormatError, match=r"dets\.json: detections must be a list"):
        evaluate(gt_path, dets_path)
    dets_path.write_text('[\n{"image_id": 1,\n')
    with pytest.raises(DataFormatError, match=r"dets\.json:3: not valid JSON"):
        evaluate(gt_path, dets_path)
    with pytest.raises(DataFormatError, match=r"missing\.json: file not found"):
        evaluate(gt_path, tmp_path / "missing.json")
    dets_path.write_text(json.dumps(dets))
    gt_path.write_text(json.dumps(dets))  # a results list is no ground truth
    with pytest.raises(DataFormatError, match=r"gt\.json: not a COCO ground truth"):
        evaluate(gt_path, dets_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda g: g["annotations"][0].__setitem__("category_id", 4),
            r"annotations\[0\]: unknown category_id 4",
        ),
        (
            lambda g: g["annotations"][0].__setitem__("bbox", [0, 0, 5, -1]),
            r"annotations\[0\]: negative width",
        ),
        (lambda g: g["images"].append({"id": 1}), r"images\[1\]: duplicate id 1"),
        (
            lambda g: g["categories"].append({"id": 2, "name": "car"}),
            r"categories\[1\]: duplicate category name",
        ),
        (lambda g: g["annotations"].clear(), "no boxes"),
        (lambda g: g["annotations"][0].__setitem__("difficult", 1), "no boxes"),
        (lambda g: g.pop("categories"), "not a COCO ground truth"),
    ],
)
def test_bad_ground_truth(change, message: str) -> None:
    gt, dets = _good()
    change(gt)
    with pytest.raises(DataFormatError, match=message):
        evaluate(gt, dets[:1], "voc07")


def test_unknown_metric() -> None:
    gt, dets = _good()
    with pytest.raises(GhostqError, match="unknown metric 'map'"):
        evaluate(gt, dets, "map")
