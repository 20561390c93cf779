"""The detector a `ModelSpec` describes: the one place a saved model's architecture is rebuilt from."""

from __future__ import annotations

from ghostq.core.errors import GhostqError
from ghostq.core.spec import ModelSpec
from ghostq.detect.models.detector import Detector, build_detector


def build_detector_from_spec(spec: ModelSpec) -> Detector:
    """Build the (untrained) detector of `spec`; an impossible architecture is a one-line GhostqError."""
    analytic = spec.analytic
    try:
        model = build_detector(
            spec.backbone,
            spec.num_classes if analytic is None else analytic.feature_classes,
            in_channels=spec.in_channels,
            strides=spec.strides,
            head=spec.head,
            act=spec.act,
        )
    except (KeyError, ValueError) as err:
        raise GhostqError(f"model spec: cannot build the detector: {' '.join(str(err).split())}") from None
    if analytic is not None:  # an ACIL head: two 1x1 convs per level in place of the final classification conv
        from ghostq.detect.models.analytic_pred import install_analytic_preds

        install_analytic_preds(model, analytic.buffer_dim, spec.num_classes)
    return model


def check_model_matches(model: Detector, spec: ModelSpec) -> None:
    """A model and the spec it is run with must agree on head type, class count, strides and input channels."""
    found = (model.head_type, model.num_classes, tuple(model.strides), model.in_channels)
    wanted = (spec.head, spec.num_classes, tuple(spec.strides), spec.in_channels)
    if found != wanted:
        raise ValueError(
            f"model (head, classes, strides, in_channels) = {found} does not match its spec's {wanted}"
        )
