"""The analytic (ACIL) classification layer of the detector head: two 1x1 convs in place of ``cls_preds[l]``.

``buffer`` (no bias) is the fixed random projection B of ACIL and is followed by a ReLU; ``classifier`` holds the
ridge solution W (its bias: the row of W for the constant feature) with the score mapping folded in, so the
sigmoid the head already applies turns its output into bounded scores (`ghostq.detect.acil_head`). Plain convs:
eval, predict, compress and the ONNX / INT8 export take them like any other layer of the head.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class AnalyticClsPred(nn.Sequential):
    """``buffer`` (1x1 conv, in -> buffer_dim, no bias) -> ReLU -> ``classifier`` (1x1 conv, buffer_dim -> C)."""

    prediction_suffix = ".classifier"  # the final prediction conv inside (kept FP like cls_preds by default)

    def __init__(self, in_channels: int, buffer_dim: int, num_classes: int) -> None:
        super().__init__(OrderedDict(
            buffer=nn.Conv2d(in_channels, buffer_dim, 1, bias=False),
            act=nn.ReLU(),
            classifier=nn.Conv2d(buffer_dim, num_classes, 1),
        ))


def install_analytic_preds(model: nn.Module, buffer_dim: int, num_classes: int) -> nn.Module:
    """Replace every level's final classification conv of a detector by an `AnalyticClsPred` (weights zero until
    fitted) for `num_classes` classes; returns the model."""
    head = model.head
    levels = []
    for pred in head.cls_preds:
        c_in = pred.buffer.in_channels if isinstance(pred, AnalyticClsPred) else pred.in_channels
        levels.append(AnalyticClsPred(c_in, buffer_dim, num_classes))
    for m in levels:
        for conv in (m.buffer, m.classifier):
            nn.init.zeros_(conv.weight)
        nn.init.zeros_(m.classifier.bias)
    head.cls_preds = nn.ModuleList(levels)
    head.num_classes = head.num_outputs = num_classes
    return model
