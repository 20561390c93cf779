"""The model spec round-trips through a checkpoint dict and ONNX metadata, and refuses damaged specs clearly."""

from __future__ import annotations

import math

import pytest

from ghostq.core.errors import GhostqError
from ghostq.core.spec import DecodeSpec, LogitClipSpec, ModelSpec

SPEC = ModelSpec(("plane", "ship"), 128, logit_clip=LogitClipSpec(2.0, math.inf), decode=DecodeSpec(conf=0.05))


def test_round_trips() -> None:
    assert ModelSpec.from_dict(SPEC.to_dict()) == SPEC
    assert ModelSpec.from_metadata(SPEC.to_metadata()) == SPEC
    assert SPEC.to_dict()["logit_clip"]["p"] == "inf"  # JSON has no inf


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": []}, "classes must be a non-empty list"),
        ({"classes": ["a", "A"]}, "duplicate class names"),
        ({"img_size": 0}, "img_size must be a positive integer"),
        ({"img_size": 100}, "not a multiple of stride 32"),
        ({"head": "tanh"}, "head must be one of"),
        ({"logit_clip": {"bound": float("nan"), "p": 2}}, "logit_clip.bound must be a finite number"),
        ({"logit_clip": {"bound": 1, "p": 3}}, "logit_clip.p must be 2 or inf"),
        ({"decode": {"iou": 0}}, "0 < iou <= 1"),
        ({"version": 99}, "newer than this ghostq reads"),
    ],
)
def test_bad_specs_are_one_line_errors(change: dict, message: str) -> None:
    with pytest.raises(GhostqError, match=message) as err:
        ModelSpec.from_dict({**SPEC.to_dict(), **change}, source="x.pt")
    assert str(err.value).startswith("x.pt: ") and "\n" not in str(err.value)


def test_missing_spec_and_missing_field() -> None:
    with pytest.raises(GhostqError, match="no 'ghostq.spec' metadata"):
        ModelSpec.from_metadata({}, "m.onnx")
    d = SPEC.to_dict()
    del d["img_size"]
    with pytest.raises(GhostqError, match="model spec has no 'img_size'"):
        ModelSpec.from_dict(d)
    with pytest.raises(GhostqError, match="must be a mapping"):
        ModelSpec.from_dict(["not", "a", "dict"])


def test_spec_from_config() -> None:
    from ghostq.core.config import Config
    from ghostq.core.spec import spec_from_config

    cfg = Config.model_validate({"model": {"head": "softmax"}, "loss": {"cls": "ce", "logit_clip": {"bound": 3.0}},
                                 "data": {"img_size": 96}})
    spec = spec_from_config(cfg, ["a", "b"])
    assert spec.head == "softmax" and spec.img_size == 96 and spec.classes == ("a", "b")
    assert spec.logit_clip == LogitClipSpec(3.0, 2.0, "continuous")  # p by head: 2 for softmax
    assert spec.decode == DecodeSpec(cfg.eval.score_threshold, cfg.eval.iou_threshold, cfg.eval.max_det)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
