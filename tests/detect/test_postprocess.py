"""postprocess on crafted DetectorOutputs, and the letterbox inverse."""

from __future__ import annotations

import pytest
import torch

from ghostq.detect.models import build_detector
from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.postprocess import Detections, postprocess, scale_boxes_to_original

BIG, SMALL = 6.0, -9.0  # logits: sigmoid(6) = 0.9975, sigmoid(-9) = 1.2e-4


def _crafted(head: str = "sigmoid") -> DetectorOutput:
    """Two images, 4 points, 3 classes. Image 0: points 0 and 1 overlap (IoU 0.81) and both say class 1;
    point 2 says class 0 and class 2 (multi-label); point 3 says nothing. Image 1: nothing."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 10, 10], [20.0, 20, 30, 30], [40.0, 40, 50, 50]])
    logits = torch.full((2, 4, 3), SMALL)
    logits[0, 0, 1], logits[0, 1, 1] = BIG, BIG - 1  # point 0 wins the NMS
    logits[0, 2, 0], logits[0, 2, 2] = BIG - 2, BIG - 3
    if head == "softmax":  # background logit: high where nothing is, 0 elsewhere
        bg = torch.tensor([[0.0, 0.0, 0.0, 10.0], [10.0, 10.0, 10.0, 10.0]])
        logits = torch.cat((logits, bg[..., None]), dim=-1)
    points = (boxes[:, :2] + boxes[:, 2:]) / 2
    return DetectorOutput(logits, boxes.expand(2, 4, 4).clone(), points, torch.full((4,), 8.0))


def test_sigmoid_head_multilabel_nms_and_order() -> None:
    dets = postprocess(_crafted(), score_threshold=0.05, iou_threshold=0.6)
    assert len(dets) == 2 and all(isinstance(d, Detections) for d in dets)
    d0 = dets[0]
    assert d0.labels.tolist() == [1, 0, 2]  # point 1 suppressed by point 0; point 2 twice, two classes
    assert d0.boxes.tolist() == [[0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30]]
    expected = torch.tensor([BIG, BIG - 2, BIG - 3]).sigmoid()
    torch.testing.assert_close(d0.scores, expected)
    assert len(dets[1]) == 0
    assert dets[1].boxes.shape == (0, 4) and dets[1].labels.dtype == torch.int64


def test_thresholds_max_det_and_topk() -> None:
    out = _crafted()
    assert len(postprocess(out, iou_threshold=0.9)[0]) == 4  # IoU 0.81 < 0.9: no suppression
    assert len(postprocess(out, score_threshold=0.99)[0]) == 1  # only sigmoid(6)
    assert postprocess(out, max_det=2)[0].labels.tolist() == [1, 0]
    assert postprocess(out, pre_nms_topk=1)[0].labels.tolist() == [1]
    # default threshold 0.001 keeps nothing of the SMALL logits (1.2e-4)
    assert len(postprocess(out)[0]) == 3
    with pytest.raises(ValueError):
        postprocess(out, max_det=0)


def test_softmax_head_takes_foreground_probabilities() -> None:
    out = _crafted("softmax")
    dets = postprocess(out, score_threshold=0.05, head="softmax")
    assert dets[0].labels.tolist() == [1, 0, 2]
    probs = out.cls_logits[0, 2].softmax(-1)
    torch.testing.assert_close(dets[0].scores[1:], probs[[0, 2]])
    assert len(dets[1]) == 0  # background everywhere
    # read as a sigmoid head, the background logit would become a 4th class
    assert 3 in postprocess(out, score_threshold=0.05, head="sigmoid")[0].labels.tolist()


def test_head_type_is_taken_from_the_model_output() -> None:
    model = build_detector("csp_n", 2, head="softmax").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    auto = postprocess(out, score_threshold=0.0)[0]
    assert auto.labels.max().item() <= 1  # never the background index 2
    explicit = postprocess(out, score_threshold=0.0, head="softmax")[0]
    assert torch.equal(auto.scores, explicit.scores)


def test_clip_to_image_size() -> None:
    out = _crafted()
    out.boxes[0, 0] = torch.tensor([-5.0, -5.0, 70.0, 10.0])
    d = postprocess(out, score_threshold=0.05, image_size=(64, 48))[0]
    assert d.boxes[0].tolist() == [0, 0, 48, 10]


def test_scale_boxes_to_original_inverts_the_letterbox() -> None:
    orig = torch.tensor([[10.0, 20.0, 110.0, 70.0]])
    ratio, pad = 0.5, (0.0, 16.0)  # 200x100 image into a 100x100 input: x_in = x * 0.5 + pad
    letterboxed = orig * ratio + torch.tensor([pad[0], pad[1], pad[0], pad[1]])
    torch.testing.assert_close(scale_boxes_to_original(letterboxed, ratio, pad), orig)
    rx, ry = 0.5, 0.25
    stretched = orig * torch.tensor([rx, ry, rx, ry]) + torch.tensor([3.0, 4.0, 3.0, 4.0])
    torch.testing.assert_close(scale_boxes_to_original(stretched, (rx, ry), (3, 4)), orig)
    clipped = scale_boxes_to_original(torch.tensor([[-10.0, 0.0, 120.0, 60.0]]), 1.0, (0, 0), (50, 100))
    assert clipped.tolist() == [[0, 0, 100, 50]]
