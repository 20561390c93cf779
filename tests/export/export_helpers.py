"""Tiny detectors and helpers shared by the export tests (64 px inputs, CPU)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ghostq.detect.models import build_detector

SIZE = 64


def calibrate_norms(model: nn.Module, in_channels: int = 3, seed: int = 0) -> nn.Module:
    """Realistic BatchNorm statistics (one train-mode batch, cumulative), non-zero GRN parameters and
    prediction convs with weights large enough that the outputs depend on the image (not only the bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
            elif type(m).__name__ == "GRN2d":
                m.gamma.copy_(torch.randn(m.gamma.shape, generator=g) * 0.1)
                m.beta.copy_(torch.randn(m.beta.shape, generator=g) * 0.1)
        model.train()(torch.rand(4, in_channels, SIZE, SIZE, generator=g))
        head = getattr(model, "head", None)
        if head is not None:
            for conv in [*head.cls_preds, *head.box_preds]:
                conv.weight.normal_(0.0, 0.01, generator=g)
    return model.eval()


def tiny_detector(backbone: str = "csp_n", head: str = "sigmoid", strides=(8, 16, 32), num_classes: int = 3,
                  seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return calibrate_norms(build_detector(backbone, num_classes, strides=strides, head=head), seed=seed)


def images(batch: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, SIZE, SIZE), dtype=np.float32)
