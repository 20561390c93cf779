"""Detector models: registered backbones (CSP n/s, ConvNeXt V2 Atto/Femto), PAN neck, decoupled head.

    from ghostq.detect.models import build_detector, list_backbones
    model = build_detector("csp_n", num_classes=5, strides=(4, 8, 16))
    out = model(images)  # DetectorOutput: cls_logits [B, N, K], boxes [B, N, 4] xyxy pixels, points, strides
"""

from ghostq.detect.models.complexity import ComplexityReport, LayerComplexity, count_params_macs
from ghostq.detect.models.detector import Detector, build_detector
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
    "count_params_macs",
    "create_backbone",
    "get_act",
    "list_backbones",
    "make_anchor_points",
    "register_backbone",
]
