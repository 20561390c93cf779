"""Post-training quantization: weight scales from the weights, activation scales from brevitas calibration.

Methods (``compress.ptq.calib``): ``minmax`` (abs max), ``percentile`` (|x| percentile, default 99.99) or
``mse`` (scale of least quantization MSE); weights use per-channel abs max, or the MSE search for ``mse``.
The same calibration is QAT's and GQSD's starting point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ghostq.compress.quantize import calibrate_activations, init_weight_scales


def calibration_images(loader: Iterable, max_batches: int) -> Iterator[torch.Tensor]:
    """The image tensors of the first ``max_batches`` batches of a detection loader."""
    for i, batch in enumerate(loader):
        if i >= max_batches:
            return
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def calibrate(model: nn.Module, loader: Iterable, batches: int, weight_init: str = "mse",
              device: torch.device | str = "cpu") -> nn.Module:
    """Set every weight scale (``weight_init``: max | mse) then every activation scale from ``batches`` batches."""
    init_weight_scales(model, weight_init)
    calibrate_activations(model, calibration_images(loader, batches), device)
    return model
