"""Pascal VOC AP (VOC07 11-point, VOC12 area): hand-computed cases and agreement with the devkit's loop."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.detect.evaluate import evaluate_voc
from ghostq.detect.voc_ap import box_iou, class_ap, voc_ap


def _gt(annotations: list[tuple[int, int, list[float], int]], n_images: int = 3) -> dict:
    """COCO GT from (image_id, category_id, xyxy, difficult); categories car=1, plane=2, ship=3."""
    anns = [
        {
            "id": k + 1,
            "image_id": i,
            "category_id": c,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "iscrowd": 0,
            "difficult": d,
            "ignore": d,
        }
        for k, (i, c, b, d) in enumerate(annotations)
    ]
    return {
        "images": [{"id": i} for i in range(1, n_images + 1)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "plane"}, {"id": 3, "name": "ship"}],
    }


def _det(image_id: int, category_id: int, xyxy: list[float], score: float) -> dict:
    x1, y1, x2, y2 = xyxy
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": score,
    }


# Class "car": image 1 has A [0,0,10,10], B [20,0,30,10] and the difficult D [40,0,50,10]; image 2 has
# C [0,0,10,10]; image 3 has no GT. npos = 3 (A, B, C; D is difficult). Detections, by score:
#   0.90 img1 [0,0,10,10]   IoU(A) = 1                      -> TP (A matched)
#   0.80 img1 [1,0,11,10]   IoU(A) = 90/110 = 0.82, A taken  -> FP (duplicate)
#   0.70 img1 [40,0,50,10]  best GT is D (difficult)         -> ignored (neither TP nor FP)
#   0.60 img2 [50,50,60,60] no overlap                        -> FP
#   0.55 img1 [60,60,70,70] no overlap                        -> FP
#   0.50 img2 [0,0,10,10]   IoU(C) = 1                        -> TP
#   0.30 img3 [0,0,10,10]   image without GT                  -> FP
# B is never found. Counted sequence TP FP FP FP TP FP:
#   cum TP   1    1    1    1    2    2
#   cum FP   0    1    2    3    3    4
#   recall  1/3  1/3  1/3  1/3  2/3  2/3
#   prec     1   1/2  1/3  1/4  2/5  1/3
# VOC07, 11 samples t = 0, .1, ..., 1 of max{prec : recall >= t}:
#   t = 0, .1, .2, .3 -> 1 (recall 1/3 reached) ; t = .4, .5, .6 -> max(2/5, 1/3) = 2/5 ; t = .7 .. 1 -> 0
#   AP07 = (4 * 1 + 3 * 2/5) / 11 = 5.2 / 11 = 0.472727...
# VOC12, envelope (max precision at recall >= r): 1 on (0, 1/3], 2/5 on (1/3, 2/3], 0 beyond:
#   AP12 = 1/3 * 1 + 1/3 * 2/5 = 1.4 / 3 = 0.466667
# (Were the detection on D a FP, the sequence would be TP FP FP FP FP TP FP: AP07 = (4 + 3 * 1/3) / 11,
#  AP12 = 1/3 + 1/3 * 1/3; were D a positive, recall would be out of 4.)
# Class "plane": one GT on image 2 found exactly -> AP 1. Class "ship": no GT, one detection -> None, not
# in the mean. mAP = (AP_car + 1) / 2.
HAND_GT = _gt(
    [
        (1, 1, [0, 0, 10, 10], 0),
        (1, 1, [20, 0, 30, 10], 0),
        (1, 1, [40, 0, 50, 10], 1),
        (2, 1, [0, 0, 10, 10], 0),
        (2, 2, [30, 30, 50, 50], 0),
    ]
)
HAND_DETS = [
    _det(1, 1, [0, 0, 10, 10], 0.90),
    _det(1, 1, [1, 0, 11, 10], 0.80),
    _det(1, 1, [40, 0, 50, 10], 0.70),
    _det(2, 1, [50, 50, 60, 60], 0.60),
    _det(1, 1, [60, 60, 70, 70], 0.55),
    _det(2, 1, [0, 0, 10, 10], 0.50),
    _det(3, 1, [0, 0, 10, 10], 0.30),
    _det(2, 2, [30, 30, 50, 50], 0.95),
    _det(3, 3, [5, 5, 9, 9], 0.40),
]


@pytest.mark.parametrize(("use_07", "car_ap"), [(True, 5.2 / 11), (False, 1.4 / 3)])
def test_hand_computed_voc_ap(use_07: bool, car_ap: float) -> None:
    res = evaluate_voc(HAND_GT, HAND_DETS, use_07_metric=use_07)
    assert res["metric"] == ("voc07" if use_07 else "voc12")
    assert res["per_class"]["car"] == {"AP50": pytest.approx(car_ap), "num_gt": 3, "num_dets": 7}
    assert res["per_class"]["plane"] == {"AP50": pytest.approx(1.0), "num_gt": 1, "num_dets": 1}
    assert res["per_class"]["ship"] == {"AP50": None, "num_gt": 0, "num_dets": 1}
    assert res["mAP50"] == pytest.approx((car_ap + 1.0) / 2)
    assert res["num_images"] == 3 and res["num_dets"] == 9


@pytest.mark.parametrize("use_07", [True, False])
def test_detection_on_difficult_is_neither_tp_nor_fp(use_07: bool) -> None:
    # GT: A [0,0,10,10] normal, D [20,0,30,10] difficult. Detections: 0.9 on D, 0.8 on A.
    # Ignored: the curve is the single point (recall 1, precision 1) -> AP 1 for both metrics.
    # Counted as FP it would be FP, TP -> precision 1/2 at recall 1 -> AP 0.5.
    gt = _gt([(1, 1, [0, 0, 10, 10], 0), (1, 1, [20, 0, 30, 10], 1)], n_images=1)
    dets = [_det(1, 1, [20, 0, 30, 10], 0.9), _det(1, 1, [0, 0, 10, 10], 0.8)]
    res = evaluate_voc(gt, dets, use_07_metric=use_07)
    assert res["per_class"]["car"]["AP50"] == pytest.approx(1.0)
    assert res["per_class"]["car"]["num_gt"] == 1  # the difficult box is no positive
    # An undetected difficult box costs nothing either: only A detected -> recall 1/1.
    res = evaluate_voc(gt, dets[1:], use_07_metric=use_07)
    assert res["per_class"]["car"]["AP50"] == pytest.approx(1.0)


def test_duplicate_takes_no_second_best_gt() -> None:
    # GT P [0,0,10,10] and Q [2,0,12,10]. Detections 0.9 [0,0,10,10] -> TP on P; 0.8 [0.5,0,10.5,10]:
    # IoU(P) = 95/105 = 0.905 (best), IoU(Q) = 85/115 = 0.739 >= 0.5 but not the best -> P, already matched
    # -> FP: the devkit does not fall back to Q. Sequence TP FP, npos 2: recall 1/2, 1/2; precision 1, 1/2.
    # VOC12 = 1/2 * 1 = 0.5; VOC07: t = 0 .. .5 (6 samples; .5 reached exactly) -> 1, rest 0 -> 6/11.
    gt = _gt([(1, 1, [0, 0, 10, 10], 0), (1, 1, [2, 0, 12, 10], 0)], n_images=1)
    dets = [_det(1, 1, [0, 0, 10, 10], 0.9), _det(1, 1, [0.5, 0, 10.5, 10], 0.8)]
    assert evaluate_voc(gt, dets, use_07_metric=False)["mAP50"] == pytest.approx(0.5)
    assert evaluate_voc(gt, dets, use_07_metric=True)["mAP50"] == pytest.approx(6 / 11)


def test_box_iou_continuous_convention() -> None:
    # [0,0,10,10] vs [5,0,15,10]: 50 / 150 = 1/3 (the +1-pixel convention would give 66 / 154).
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]))
    assert iou == pytest.approx(np.array([[1 / 3, 0.0, 1.0]]))
    assert box_iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0  # empty union


def test_voc_ap_curves() -> None:
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0


def _devkit_ap(gt_img, gt_boxes, gt_diff, det_img, det_boxes, det_scores, use_07):
    """Transcription of the devkit's voc_eval loop (continuous IoU, IoU >= 0.5) and voc_ap, as a reference."""
    recs = {
        i: {
            "bbox": gt_boxes[gt_img == i],
            "difficult": gt_diff[gt_img == i],
            "det": [False] * int((gt_img == i).sum()),
        }
        for i in np.unique(np.concatenate([gt_img, det_img]))
    }
    npos = int((~gt_diff).sum())
    order = np.argsort(-det_scores, kind="stable")
    nd = len(order)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        r = recs[det_img[order[d]]]
        bb = det_boxes[order[d]]
        ovmax, jmax = -np.inf, -1
        bbgt = r["bbox"]
        if bbgt.size > 0:
            iw = np.maximum(np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]), 0.0)
            ih = np.maximum(np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]), 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0]) * (bb[3] - bb[1])
                + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1])
                - inters
            )
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
        if ovmax >= 0.5:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_07", [True, False])
def test_agrees_with_devkit_loop(seed: int, use_07: bool) -> None:
    rng = np.random.default_rng(seed)
    n_img, n_gt = 5, 30
    gt_img = rng.integers(1, n_img + 1, n_gt)
    xy = rng.integers(0, 80, (n_gt, 2)).astype(float)
    gt_boxes = np.concatenate([xy, xy + rng.integers(4, 20, (n_gt, 2))], axis=1)
    gt_diff = rng.random(n_gt) < 0.2
    # Jittered copies of GT (some twice: duplicates), plus random boxes on random images (some without GT).
    src = rng.choice(n_gt, 40)
    det_boxes = gt_boxes[src] + rng.normal(0, 2.0, (40, 4))
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 0.5)
    det_img = gt_img[src]
    rand_xy = rng.uniform(0, 80, (15, 2))
    det_boxes = np.concatenate([det_boxes, np.concatenate([rand_xy, rand_xy + 10], axis=1)])
    det_img = np.concatenate([det_img, rng.integers(1, n_img + 3, 15)])
    det_scores = rng.random(len(det_img))
    expected = _devkit_ap(gt_img, gt_boxes, gt_diff, det_img, det_boxes, det_scores, use_07)
    got = class_ap(det_img, det_boxes, det_scores, gt_img, gt_boxes, gt_diff, use_07)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.0 < got < 1.0


def test_class_ap_none_without_positives() -> None:
    boxes = np.array([[0.0, 0, 10, 10]])
    assert (
        class_ap(np.array([1]), boxes, np.array([0.5]), np.array([1]), boxes, np.array([True]), True) is None
    )
    assert (
        class_ap(
            np.array([1]),
            boxes,
            np.array([0.5]),
            np.array([], dtype=int),
            np.zeros((0, 4)),
            np.array([], dtype=bool),
            False,
        )
        is None
    )
