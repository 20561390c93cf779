"""Detector models: registered backbones (CSP n/s, ConvNeXt V2 Atto/Femto), PAN neck, decoupled head.

    from ghostq.detect.models import build_detector, build_detector_from_spec, list_backbones
    model = build_detector("csp_n", num_classes=5, strides=(4, 8, 16))
    out = model(images)  # DetectorOutput: cls_logits [B, N, K], boxes [B, N, 4] xyxy pixels, points, strides
    model = build_detector_from_spec(spec)  # a saved model's architecture (ghostq.core.spec.ModelSpec)

The inference head (scores with the spec's LogitClip, boxes) is ``ghostq.detect.models.inference_head``.
"""

from ghostq.detect.models.complexity import ComplexityReport, LayerComplexity, count_params_macs
from ghostq.detect.models.detector import Detector, build_detector
from ghostq.detect.models.from_spec import build_detector_from_spec, check_model_matches
from ghostq.detect.models.head import DecoupledHead, make_anchor_points
from ghostq.detect.models.layers import get_act
from ghostq.detect.models.output import DetectorOutput, Targets
from ghostq.detect.models.pan import PAN
from ghostq.detect.models.registry import (
    SUPPORTED_STRIDES,
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)

__all__ = [
    "SUPPORTED_STRIDES",
    "Backbone",
    "ComplexityReport",
    "DecoupledHead",
    "Detector",
    "DetectorOutput",
    "LayerComplexity",
    "PAN",
    "Targets",
    "build_detector",
    "build_detector_from_spec",
    "check_model_matches",
    "count_params_macs",
    "create_backbone",
    "get_act",
    "list_backbones",
    "make_anchor_points",
    "register_backbone",
]
