"""ACIL on the detector's own features (a tiny csp_n at 64 px): phases equal the joint ridge on the same rows,
5 phases equal 1, the extended checkpoint round-trips, and its ONNX export scores like torch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ghostq.core.errors import GhostqError
from ghostq.core.spec import ModelSpec
from ghostq.detect.acil import ridge
from ghostq.detect.acil_checkpoint import fit_phase, load_incremental, save_incremental, spec_for, start_incremental
from ghostq.detect.acil_head import (
    FeatureBatch,
    RowSampling,
    assign_labels,
    capture_features,
    expand_rows,
    sample_points,
)
from ghostq.detect.checkpoint import load_detector
from ghostq.detect.models import build_detector_from_spec
from ghostq.detect.models.inference_head import InferenceHead
from ghostq.detect.models.output import Targets

SIZE = 64
BOXES = torch.tensor([[4.0, 4.0, 30.0, 28.0], [28.0, 30.0, 60.0, 62.0], [10.0, 36.0, 26.0, 58.0]])


def _model() -> tuple[torch.nn.Module, ModelSpec]:
    """A tiny detector whose batch norms have seen data (at initialisation the features are ~1e-4, and an INT8
    export of a head fitted on them needs bias scales far below what int32 biases hold)."""
    torch.manual_seed(0)
    spec = ModelSpec(classes=("a", "b"), img_size=SIZE)
    model = build_detector_from_spec(spec)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative averages
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, SIZE, SIZE))
    return model.eval(), spec


def _batch(model: torch.nn.Module, seed: int, labels: list[list[int]]) -> FeatureBatch:
    """Images of random pixels with the GT boxes BOXES[:len(l)] labelled l (phase-local ids)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(len(labels), 3, SIZE, SIZE, generator=g)
    feats, out = capture_features(model, images)
    m = max(len(lb) for lb in labels)
    boxes, lab = torch.zeros(len(labels), m, 4), torch.zeros(len(labels), m, dtype=torch.long)
    mask = torch.zeros(len(labels), m, dtype=torch.bool)
    for i, lb in enumerate(labels):
        boxes[i, : len(lb)], lab[i, : len(lb)], mask[i, : len(lb)] = BOXES[: len(lb)], torch.tensor(lb), True
    return FeatureBatch(feats, out.boxes, out.points, out.strides, Targets(boxes, lab, mask),
                        [f"img{seed}_{i}.png" for i in range(len(labels))])


def _rows(batch: FeatureBatch, columns: list[int], total: int, sampling: RowSampling,
          buffers: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The rows a phase adds, per level: x_E, one-hot targets in the global columns, sample weights."""
    labels = assign_labels(batch, len(columns)).numpy()
    bounds = np.cumsum([0, *[f.shape[1] for f in batch.feats]])
    out = []
    for level, buffer in enumerate(buffers):
        xs, ys, ws = [], [], []
        for i, name in enumerate(batch.file_names):
            idx = sample_points(name, labels[i] < len(columns), sampling)
            sel = idx[(idx >= bounds[level]) & (idx < bounds[level + 1])]
            lab = labels[i, sel]
            y = np.zeros((len(sel), total))
            y[np.flatnonzero(lab < len(columns)), np.asarray(columns)[lab[lab < len(columns)]]] = 1
            xs.append(expand_rows(batch.feats[level][i, sel - bounds[level]].numpy(), buffer))
            ys.append(y)
            ws.append(np.where(lab < len(columns), 1.0, sampling.background_weight))
        out.append((np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)))
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_phases_equal_joint_ridge_on_detector_features() -> None:
    model, spec = _model()
    sampling = RowSampling(keep=0.3, background_weight=0.5, seed=1)
    phases = [(("a", "b"), _batch(model, 1, [[0, 1], [1], [0, 0, 1]]), [0, 1]),
              (("c",), _batch(model, 2, [[0], [0, 0]]), [2]),
              (("d", "e"), _batch(model, 3, [[1, 0, 0], [0]]), [3, 4])]
    ext, _, state = start_incremental(copy.deepcopy(model), {"spec": spec.to_dict()}, buffer_dim=48,
                                      sampling=sampling)
    buffers = state.buffers()
    rows = []
    for classes, batch, columns in phases:
        stats = fit_phase(ext, state, [batch], classes)
        assert stats.positives > 0 and stats.background > 0
        rows.append(_rows(batch, columns, 5, sampling, buffers))
    assert state.classes == ["a", "b", "c", "d", "e"]
    for level, clf in enumerate(state.classifiers):
        x, y, w = (np.concatenate([r[level][k] for r in rows]) for k in range(3))
        joint = ridge(x, y, state.gamma, w)
        assert clf.W.shape == joint.shape == (49, 5)
        assert _rel(clf.W, joint) < 1e-8


def test_five_phases_give_the_one_phase_head() -> None:
    """Each image holds one new class: 5 single-class phases see the rows one phase sees, and end equal."""
    model, spec = _model()
    base = _batch(model, 10, [[0, 1], [1, 0]])
    new = [_batch(model, 20 + k, [[0], [0, 0]]) for k in range(5)]
    names = ("c", "d", "e", "f", "g")
    one, _, s1 = start_incremental(copy.deepcopy(model), {"spec": spec.to_dict()}, buffer_dim=32)
    five, _, s5 = start_incremental(copy.deepcopy(model), {"spec": spec.to_dict()}, buffer_dim=32)
    for m, s in ((one, s1), (five, s5)):
        fit_phase(m, s, [base], ("a", "b"))
    relabelled = [FeatureBatch(b.feats, b.boxes, b.points, b.strides,
                               Targets(b.targets.boxes, b.targets.labels + k, b.targets.mask), b.file_names)
                  for k, b in enumerate(new)]
    fit_phase(one, s1, relabelled, names)
    for name, batch in zip(names, new, strict=True):
        fit_phase(five, s5, [batch], (name,))
    assert s1.classes == s5.classes == ["a", "b", *names]
    for c1, c5 in zip(s1.classifiers, s5.classifiers, strict=True):
        assert _rel(c5.W, c1.W) < 1e-8
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(five(x).cls_logits, one(x).cls_logits, atol=1e-4, rtol=0)


@pytest.fixture
def extended(tmp_path):
    """A tiny detector extended from 2 to 3 classes, saved."""
    model, spec = _model()
    ext, spec0, state = start_incremental(copy.deepcopy(model), {"spec": spec.to_dict()}, buffer_dim=32)
    fit_phase(ext, state, [_batch(model, 1, [[0, 1], [1, 0, 0], [0]])], ("a", "b"))
    fit_phase(ext, state, [_batch(model, 2, [[0, 0], [0]])], ("c",))
    path = save_incremental(tmp_path / "ext.pt", ext, spec_for(spec0, state), state)
    return path, ext, state


def test_checkpoint_round_trip(extended) -> None:
    path, ext, state = extended
    model, payload = load_detector(path)  # the path eval / predict / export take
    spec = ModelSpec.from_dict(payload["spec"])
    assert spec.classes == ("a", "b", "c") and spec.analytic is not None and spec.analytic.feature_classes == 2
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(InferenceHead(model, spec)(x)[0], InferenceHead(ext, spec)(x)[0])
    _, _, _, loaded = load_incremental(path)
    for a, b in zip(loaded.classifiers, state.classifiers, strict=True):
        assert np.array_equal(a.A, b.A) and np.array_equal(a.W, b.W)
    assert loaded.kept_bytes() == state.kept_bytes() == 3 * (33 * 33 + 33 * 3) * 8


def test_checkpoint_with_r_of_older_versions_loads(extended, tmp_path) -> None:
    """Checkpoints written before A was kept hold R = A^-1 per level: loaded as A = R^-1, the next phase runs."""
    path, _, state = extended
    payload = torch.load(path, weights_only=True)
    for level in payload["acil"]["levels"]:
        level["R"] = torch.linalg.inv(level.pop("A"))
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    _, _, _, loaded = load_incremental(old)
    for a, b in zip(loaded.classifiers, state.classifiers, strict=True):
        assert np.linalg.norm(a.A - b.A) / np.linalg.norm(b.A) < 1e-8


def test_background_weight_defaults_to_one_over_keep() -> None:
    assert RowSampling(keep=0.1).background_weight == pytest.approx(10.0)
    assert RowSampling(keep=0.25, background_weight=2.0).background_weight == 2.0
    with pytest.raises(ValueError, match="0 < keep <= 1"):
        RowSampling(keep=0.0)


def test_damaged_acil_entry_is_one_line(extended, tmp_path) -> None:
    path, _, _ = extended
    payload = torch.load(path, weights_only=True)
    payload["acil"]["levels"][1]["W"] = torch.zeros(33, 7, dtype=torch.float64)
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(GhostqError, match=r"bad\.pt: 'acil' level 1") as err:
        load_incremental(bad)
    assert "\n" not in str(err.value)


def test_exported_onnx_matches_torch_and_int8_runs(extended, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from PIL import Image

    from ghostq.core.export_config import ExportConfig
    from ghostq.export.checkpoint_export import export_checkpoint

    path, ext, state = extended
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    done = export_checkpoint(path, tmp_path / "onnx", ExportConfig(fp16=False), calib=calib)
    assert {"fp32", "int8", "int8_cpu"} <= set(done.files)
    x = torch.rand(2, 3, SIZE, SIZE)
    spec = spec_for(ModelSpec(classes=("a", "b"), img_size=SIZE), state)
    with torch.no_grad():
        want_scores, want_boxes = (t.numpy() for t in InferenceHead(ext, spec)(x))
    for kind in ("fp32", "int8", "int8_cpu"):
        sess = ort.InferenceSession(str(done.files[kind]), providers=["CPUExecutionProvider"])
        scores, boxes = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[:2]
        assert scores.shape == want_scores.shape == (2, 84, 3)
        assert np.isfinite(scores).all() and 0.0 <= scores.min() and scores.max() <= 1.0
    # FP32 computes what torch does (the sigmoid of g (y - 1/2) amplifies float32 rounding of y by g / 4 ~ 4.6);
    # INT8 accuracy is measured on real data (benchmarks/incremental.py): a ridge fitted on 5 random images has
    # weights far too large for an 8-bit feature grid to mean anything here
    assert np.abs(scores_of(done.files["fp32"], x) - want_scores).max() < 2e-3
    assert np.abs(boxes_of(done.files["fp32"], x) - want_boxes).max() < 1e-3
    from ghostq.core.runtime import load_runtime

    with load_runtime(done.files["int8_cpu"], backend="ort-cpu") as rt:  # the deploy runtime reads its spec
        assert list(rt.info.classes) == ["a", "b", "c"]


def scores_of(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def boxes_of(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[1]


def test_spec_carries_the_analytic_head() -> None:
    from ghostq.core.spec import AnalyticSpec

    plain = ModelSpec(classes=("a",), img_size=SIZE)
    assert "analytic" not in plain.to_dict()  # specs without an analytic head read and write as before
    spec = ModelSpec(classes=("a", "b"), img_size=SIZE, analytic=AnalyticSpec(64, 1, 0.5, 3))
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec
    for bad, what in (({**spec.to_dict(), "head": "softmax"}, "sigmoid"),
                      ({**spec.to_dict(), "analytic": {"buffer_dim": 0, "feature_classes": 1}}, "buffer_dim")):
        with pytest.raises(GhostqError, match=what):
            ModelSpec.from_dict(bad, "x.pt")


def test_compression_keeps_the_classifier_in_full_precision(extended) -> None:
    """GHOST / QAT quantize the buffer conv and keep the classifier (the final prediction conv) in FP, as for a
    trained head; the export's INT8 PTQ skips the same names."""
    from ghostq.compress.fold_bn import fold_bn
    from ghostq.compress.quantize import QuantConfig, resolve_bits

    _, ext, _ = extended
    bits = resolve_bits(fold_bn(copy.deepcopy(ext)), QuantConfig())
    want = {**{f"head.cls_preds.{i}.buffer": 8 for i in range(3)},
            **{f"head.cls_preds.{i}.classifier": 32 for i in range(3)}}
    assert {k: v for k, v in bits.items() if "cls_preds" in k} == want
    assert ext.prediction_layer_names()[:3] == [f"head.cls_preds.{i}.classifier" for i in range(3)]
