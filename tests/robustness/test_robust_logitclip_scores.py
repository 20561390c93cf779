"""LogitClip at inference: the bounded score range is mapped onto [0, 1], the same in torch and in the ONNX head.

Without the map a p = inf sigmoid head scores every background anchor at least sigmoid(-d) (0.119 at d = 2):
each passes a 0.05 threshold and max_det fills with background boxes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ghostq.detect.losses.robust import LogitClip, clipped_class_scores
from ghostq.detect.models import build_detector
from ghostq.detect.models.output import DetectorOutput
from ghostq.detect.postprocess import class_scores, postprocess

PREDICT_SCORE = 0.05  # `ghostq predict --score` default
SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _planted_output(num_objects: int = 4, background: int = 600, classes: int = 3, seed: int = 0) -> DetectorOutput:
    """Raw logits as a LogitClip-trained sigmoid head gives them: background anchors with every class logit
    strongly and nearly equally negative, a few object anchors (3 neighbours per object, one class high)."""
    g = torch.Generator().manual_seed(seed)
    logits = -6.0 + 0.6 * (torch.rand(background, classes, generator=g) - 0.5)
    xy = torch.rand(background, 2, generator=g) * 900
    boxes = torch.cat([xy, xy + 16 + 8 * torch.rand(background, 1, generator=g)], dim=1)  # small, scattered
    obj_logits, obj_boxes = [], []
    for k in range(num_objects):
        for j in range(3):  # three overlapping predictions of the same object
            z = torch.full((classes,), -5.0)
            z[k % classes] = 5.0 - j
            obj_logits.append(z)
            x0 = 1000.0 + 100 * k + j
            obj_boxes.append(torch.tensor([x0, 1000.0, x0 + 40, 1040.0]))
    cls = torch.cat([logits, torch.stack(obj_logits)])[None]
    all_boxes = torch.cat([boxes, torch.stack(obj_boxes)])[None]
    n = cls.shape[1]
    return DetectorOutput(cls, all_boxes, torch.zeros(n, 2), torch.full((n,), 8.0), "sigmoid")


def test_sigmoid_pinf_range_is_sigmoid_minus_d_to_sigmoid_d() -> None:
    clip = LogitClip(2.0, p=math.inf)
    lo, hi = clip.score_range("sigmoid", 3)
    assert lo == pytest.approx(_sigmoid(-2.0), abs=1e-12) and hi == pytest.approx(_sigmoid(2.0), abs=1e-12)
    assert lo == pytest.approx(0.1192, abs=1e-4)
    assert LogitClip(4.0, p=math.inf).score_range("sigmoid", 3)[0] == pytest.approx(0.0180, abs=1e-4)
    z = torch.tensor([[-9.0, -1.0, 0.0], [4.0, 0.0, -4.0], [0.5, 0.25, -0.5]])
    s = clipped_class_scores(z, "sigmoid", clip)
    # (-9, -1, 0) -> (-2, -0.222, 0); (4, 0, -4) -> (2, 0, -2); (0.5, .25, -.5) stays
    expect = (torch.sigmoid(clip(z)) - lo) / (hi - lo)
    assert torch.allclose(s, expect, atol=1e-6)
    assert s[0, 0].item() == 0.0 and s[1, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert s[1, 2].item() == 0.0 and s[1, 1].item() == pytest.approx(0.5, abs=1e-6)


def test_planted_background_no_longer_fills_max_det() -> None:
    out = _planted_output(num_objects=4)
    clip = LogitClip(2.0, p=math.inf)
    raw = out.cls_logits
    mapped = class_scores(raw, "sigmoid", clip)[0].reshape(-1)
    unmapped = torch.sigmoid(clip(raw))[0].reshape(-1)
    # the span: [0, 1] exactly (anchors at the bound reach both ends)
    assert mapped.min().item() == 0.0 and mapped.max().item() == pytest.approx(1.0, abs=1e-6)
    assert unmapped.min().item() == pytest.approx(_sigmoid(-2.0), abs=1e-6)
    # the ranking is unchanged: in the order of the unmapped scores the mapped ones never decrease
    order = torch.argsort(unmapped, stable=True)
    assert bool((mapped[order].diff() >= 0).all())
    assert torch.equal(mapped > 0.5, unmapped > 0.5)  # the map fixes sigmoid(0) = 0.5
    # old behaviour (clipped logits, plain sigmoid): every anchor passes 0.05, max_det fills with background
    old = postprocess(DetectorOutput(clip(raw), out.boxes, out.points, out.strides, "sigmoid"),
                      score_threshold=PREDICT_SCORE, max_det=100)[0]
    assert len(old) == 100 and old.scores.min().item() >= _sigmoid(-2.0) - 1e-6
    # new: only the objects survive, one box each, at the top of the range
    new = postprocess(out, score_threshold=PREDICT_SCORE, max_det=100, clip=clip)[0]
    assert len(new) == 4
    assert sorted(new.labels.tolist()) == [0, 0, 1, 2]
    assert new.scores.min().item() > 0.99
    # logits clipped already (the evaluation path applies the clip first) give the same scores: idempotent
    again = postprocess(DetectorOutput(clip(raw), out.boxes, out.points, out.strides, "sigmoid"),
                        score_threshold=PREDICT_SCORE, max_det=100, clip=clip)[0]
    assert torch.equal(again.scores, new.scores) and torch.equal(again.boxes, new.boxes)


@pytest.mark.parametrize("mode", ["continuous", "official"])
@pytest.mark.parametrize("p", [2, math.inf])
def test_softmax_bounds_hold_and_background_vector_maps_to_zero(p: float, mode: str) -> None:
    classes, d = 10, 2.0
    k = classes + 1
    clip = LogitClip(d, p=p, mode=mode)
    lo, hi = clip.score_range("softmax", k)
    r = clip.radius()
    gap = 2 * r if p == math.inf else r * math.sqrt(k / (k - 1))
    # the most certain background vector on the ball: background at the top, the C foreground logits equal
    alpha, beta = (r, -r) if p == math.inf else (r * math.sqrt(classes / k), -r / math.sqrt(classes * k))
    bg = torch.full((1, k), beta)
    bg[0, -1] = alpha
    assert alpha - beta == pytest.approx(gap)
    unmapped = torch.softmax(clip(bg), -1)[0, :-1]
    assert unmapped.min().item() == pytest.approx(lo, rel=1e-5)
    if p == 2:
        assert unmapped.min().item() > PREDICT_SCORE  # 0.055: without the map it passes a 0.05 threshold
    assert clipped_class_scores(bg, "softmax", clip).max().item() == pytest.approx(0.0, abs=1e-5)
    # the most certain object vector: class 0 at the top, every other logit equal -> exactly 1
    obj = torch.full((1, k), beta)
    obj[0, 0] = alpha
    assert clipped_class_scores(obj, "softmax", clip)[0, 0].item() == pytest.approx(1.0, abs=1e-5)
    # random logits of every scale never leave [0, 1] and never exceed hi before the map
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, k, generator=g) * torch.logspace(-1, 1.5, 4000)[:, None]
    raw = torch.softmax(clip(z.double()), -1)[:, :-1]
    assert raw.max().item() <= hi + 1e-9
    s = clipped_class_scores(z, "softmax", clip)
    assert s.min().item() >= 0.0 and s.max().item() <= 1.0


def test_official_mode_radius_and_bad_heads() -> None:
    assert LogitClip(0.5, p=math.inf, mode="official").radius() == 2.0  # a norm up to 1/d = 2 is left as is
    assert LogitClip(0.5, p=math.inf).radius() == 0.5
    z = torch.tensor([[-1.9, 1.9]])  # max |z| 1.9 <= t = 2: unchanged by the official clip
    s = clipped_class_scores(z, "sigmoid", LogitClip(0.5, p=math.inf, mode="official"))
    assert 0.0 < s.min().item() < s.max().item() < 1.0
    with pytest.raises(ValueError, match=r"^head must be 'sigmoid' or 'softmax', got 'tanh'$"):
        LogitClip(2.0).score_range("tanh", 3)
    with pytest.raises(ValueError, match=r"^head must be 'sigmoid' or 'softmax', got 'tanh'$"):
        clipped_class_scores(z, "tanh", None)
    with pytest.raises(ValueError, match=r"^a softmax head has C \+ 1 >= 2 logits, got 1$"):
        LogitClip(2.0).score_range("softmax", 1)


def test_no_clip_scores_unchanged() -> None:
    z = torch.randn(2, 5, 4)
    assert torch.equal(class_scores(z, "sigmoid"), z.sigmoid())
    assert torch.equal(class_scores(z, "softmax"), z.softmax(-1)[..., :-1])


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_onnx_head_and_torch_path_agree(tmp_path, head: str) -> None:  # noqa: ANN001
    ort = pytest.importorskip("onnxruntime")
    from ghostq.core.detections import DecodeSettings, decode
    from ghostq.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = build_detector("csp_n", 3, strides=(8, 16, 32), head=head).eval()
    x = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    with torch.no_grad():  # prediction convs that give logits of every size (std ~4), so the clip is active
        for conv in model.head.cls_preds:
            conv.weight.normal_(0.0, 1.0)
            conv.bias.zero_()
        spread = model(torch.from_numpy(x)).cls_logits.std().item()
        for conv in model.head.cls_preds:
            conv.weight.mul_(4.0 / spread)
    clip = LogitClip(2.0, p=math.inf if head == "sigmoid" else 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, SIZE, clip=clip)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_scores, onnx_boxes = sess.run(["scores", "boxes"], {"images": x})
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    torch_scores = class_scores(out.cls_logits, head, clip).numpy()
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-5, rtol=0)
    assert onnx_scores.min() >= 0.0 and onnx_scores.max() <= 1.0
    lo, _hi = clip.score_range(head, model.num_outputs)
    unmapped = class_scores(clip(out.cls_logits), head).numpy()
    assert unmapped.max() > lo  # the clip is active and the map moves scores
    assert np.abs(torch_scores - unmapped).max() > 1e-3
    # and the detections: the deployed decode of the ONNX outputs = torch postprocess with the clip
    levels = np.unique(torch_scores)
    lo_i, hi_i = int(0.8 * len(levels)), int(0.95 * len(levels))
    i = lo_i + int(np.argmax(np.diff(levels[lo_i:hi_i + 1])))  # the widest gap between two scores there
    assert levels[i + 1] - levels[i] > 1e-4
    thr = float(levels[i] + levels[i + 1]) / 2  # no score within 1e-5 of the threshold
    dets_onnx = decode(onnx_scores, onnx_boxes, DecodeSettings(score_threshold=thr, iou_threshold=0.6))
    dets_torch = postprocess(out, score_threshold=thr, iou_threshold=0.6, clip=clip)
    for a, b in zip(dets_onnx, dets_torch, strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.scores, b.scores.numpy(), atol=1e-5)  # both highest first
        # the same boxes of the same classes (order among equal scores may differ)
        assert _kept(a.labels, a.boxes) == _kept(b.labels.numpy(), b.boxes.numpy())


def _kept(labels: np.ndarray, boxes: np.ndarray) -> list[tuple]:
    return sorted((int(c), *np.round(b, 2).tolist()) for c, b in zip(labels, boxes, strict=True))
