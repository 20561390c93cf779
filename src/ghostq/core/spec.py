"""The model spec: every fact inference needs about a detector, saved in each checkpoint and ONNX file.

Eval, predict, export and the runtimes rebuild the same head from it (LogitClip and decode settings included)
with no config at hand; stages write it once, from the config, when the model is made. Plain data: it
round-trips through `to_dict` / `from_dict` (a checkpoint entry) and `to_metadata` / `from_metadata` (ONNX
`metadata_props`), and `from_dict` validates, so a foreign or damaged spec is one clear error.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ghostq.core.errors import GhostqError

SPEC_VERSION = 1
METADATA_KEY = "ghostq.spec"

# Post-processing defaults (one place): COCO-style evaluation keeps low scores; deployment raises `conf`.
CONF = 0.001
IOU = 0.6
MAX_DET = 300
PRE_NMS_TOPK = 3000
DEPLOY_CONF = 0.25  # in-graph NMS: score a deployed detection needs
DEPLOY_MAX_DET = 100  # in-graph NMS: detections kept per class (onnx) or per image (trt)


@dataclass(frozen=True)
class LogitClipSpec:
    """LogitClip at inference: z' = z * min(1, d / ||z||_p) (p = inf or 2), `mode` as trained."""

    bound: float
    p: float  # 2.0 or math.inf
    mode: str = "continuous"


@dataclass(frozen=True)
class DecodeSpec:
    """Post-processing: score threshold, class-wise NMS IoU, detections kept, candidates entering NMS."""

    conf: float = CONF
    iou: float = IOU
    max_det: int = MAX_DET
    pre_nms_topk: int = PRE_NMS_TOPK


@dataclass(frozen=True)
class AnalyticSpec:
    """An ACIL head (`ghostq.detect.acil_head`): per level a 1x1 buffer conv (`buffer_dim`, ReLU) and a 1x1
    classifier conv replace the final classification conv; the branch before it was trained on `feature_classes`
    classes (its width depends on them); `gamma` and `seed` (of the random buffer) as fitted."""

    buffer_dim: int
    feature_classes: int
    gamma: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """What a detector is: classes, input, architecture, head, LogitClip, decoding."""

    classes: tuple[str, ...]
    img_size: int
    in_channels: int = 3
    backbone: str = "csp_n"
    strides: tuple[int, ...] = (8, 16, 32)
    head: str = "sigmoid"  # sigmoid over C, or softmax over C + 1
    act: str = "relu"
    logit_clip: LogitClipSpec | None = None
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    version: int = SPEC_VERSION
    analytic: AnalyticSpec | None = None  # an analytic (ACIL) classification head; None: the trained one

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (inf written as the string "inf")."""
        d = asdict(self)
        d["classes"], d["strides"] = list(self.classes), list(self.strides)
        if self.logit_clip is not None and math.isinf(self.logit_clip.p):
            d["logit_clip"]["p"] = "inf"
        if self.analytic is None:
            del d["analytic"]  # specs without an analytic head read as before
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "<spec>") -> ModelSpec:
        """Validate and rebuild; any problem is a GhostqError naming `source` and the field."""
        if not isinstance(d, dict):
            raise GhostqError(f"{source}: model spec must be a mapping, got {type(d).__name__}")
        try:
            version = int(d.get("version", SPEC_VERSION))
            if version > SPEC_VERSION:
                raise ValueError(f"version {version} is newer than this ghostq reads ({SPEC_VERSION})")
            classes = tuple(d["classes"])
            if not classes or not all(isinstance(c, str) and c for c in classes):
                raise ValueError("classes must be a non-empty list of names")
            if len({c.lower() for c in classes}) != len(classes):
                raise ValueError(f"duplicate class names in {list(classes)}")
            clip = d.get("logit_clip")
            spec = cls(
                classes=classes,
                img_size=_positive_int(d["img_size"], "img_size"),
                in_channels=_choice(int(d.get("in_channels", 3)), (3, 4), "in_channels"),
                backbone=_text(d.get("backbone", "csp_n"), "backbone"),
                strides=tuple(_positive_int(s, "strides") for s in d.get("strides", (8, 16, 32))),
                head=_choice(d.get("head", "sigmoid"), ("sigmoid", "softmax"), "head"),
                act=_choice(d.get("act", "relu"), ("relu", "silu"), "act"),
                logit_clip=None if clip is None else _clip(clip),
                decode=_decode(d.get("decode") or {}),
                version=version,
                analytic=None if d.get("analytic") is None else _analytic(d["analytic"]),
            )
        except KeyError as err:
            raise GhostqError(f"{source}: model spec has no {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise GhostqError(f"{source}: bad model spec: {err}") from None
        if spec.analytic is not None and (spec.head != "sigmoid" or spec.logit_clip is not None):
            raise GhostqError(f"{source}: bad model spec: an analytic head scores with a sigmoid and no LogitClip")
        if spec.img_size % max(spec.strides):
            raise GhostqError(f"{source}: img_size {spec.img_size} is not a multiple of stride {max(spec.strides)}")
        return spec

    def to_metadata(self) -> dict[str, str]:
        """ONNX `metadata_props` entries carrying the spec."""
        return {METADATA_KEY: json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "<onnx>") -> ModelSpec:
        """Inverse of `to_metadata`; a file without it is a GhostqError (exported by another tool)."""
        if METADATA_KEY not in meta:
            raise GhostqError(f"{source}: no {METADATA_KEY!r} metadata (not exported by this ghostq)")
        try:
            raw = json.loads(meta[METADATA_KEY])
        except (json.JSONDecodeError, RecursionError) as err:
            raise GhostqError(f"{source}: {METADATA_KEY!r} metadata is not JSON ({err})") from None
        return cls.from_dict(raw, source)


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


def _choice(v: Any, allowed: tuple, name: str) -> Any:
    if v not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {v!r}")
    return v


def _text(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    return v


def _finite_positive(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def _clip(d: Any) -> LogitClipSpec:
    if not isinstance(d, dict):
        raise ValueError(f"logit_clip must be a mapping or null, got {d!r}")
    p = math.inf if d.get("p") in ("inf", math.inf) else float(d.get("p", 0))
    if p not in (2.0, math.inf):
        raise ValueError(f"logit_clip.p must be 2 or inf, got {d.get('p')!r}")
    mode = _choice(d.get("mode", "continuous"), ("continuous", "official"), "logit_clip.mode")
    return LogitClipSpec(_finite_positive(d.get("bound"), "logit_clip.bound"), p, mode)


def _analytic(d: Any) -> AnalyticSpec:
    if not isinstance(d, dict):
        raise ValueError(f"analytic must be a mapping or null, got {d!r}")
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"analytic.seed must be an integer >= 0, got {seed!r}")
    return AnalyticSpec(_positive_int(d.get("buffer_dim"), "analytic.buffer_dim"),
                        _positive_int(d.get("feature_classes"), "analytic.feature_classes"),
                        _finite_positive(d.get("gamma", 0.1), "analytic.gamma"), seed)


def _decode(d: Any) -> DecodeSpec:
    if not isinstance(d, dict):
        raise ValueError(f"decode must be a mapping, got {d!r}")
    conf, iou = float(d.get("conf", CONF)), float(d.get("iou", IOU))
    if not (0 <= conf < 1 and 0 < iou <= 1):
        raise ValueError(f"decode needs 0 <= conf < 1 and 0 < iou <= 1, got {conf} and {iou}")
    return DecodeSpec(
        conf, iou, _positive_int(d.get("max_det", MAX_DET), "decode.max_det"),
        _positive_int(d.get("pre_nms_topk", PRE_NMS_TOPK), "decode.pre_nms_topk"),
    )


def spec_from_config(cfg: Any, classes: tuple[str, ...] | list[str]) -> ModelSpec:
    """The spec of the model a config (`ghostq.core.config.Config`) describes, for the given class names."""
    clip = cfg.loss.logit_clip
    return ModelSpec(
        classes=tuple(classes),
        img_size=cfg.data.img_size,
        in_channels=cfg.data.in_channels,
        backbone=cfg.model.backbone,
        strides=tuple(cfg.model.strides),
        head=cfg.model.head,
        act=cfg.model.act,
        logit_clip=None if clip is None else LogitClipSpec(clip.bound, clip.p_for(cfg.model.head), clip.mode),
        decode=DecodeSpec(cfg.eval.score_threshold, cfg.eval.iou_threshold, cfg.eval.max_det),
    )
