"""The CLI's config loader: `ghostq.core.config.load_config` with every registry's names, so a backbone, loss,
quantizer or dataset format the registries do not hold fails at load, listed with what is allowed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ghostq.core import config as core_config
from ghostq.core.config import Config


def registries() -> dict[str, Sequence[str] | Mapping[str, Any]]:
    """Config key -> the names its registry holds (`loss.cls`: name -> the heads it fits)."""
    from ghostq.compress.quantizers import act_quantizer_names, weight_scale_init_names
    from ghostq.core.runtime import backend_names
    from ghostq.detect.data.formats.registry import format_names
    from ghostq.detect.losses import cls_loss_heads, list_box_losses
    from ghostq.detect.models.registry import list_backbones

    return {
        "model.backbone": list_backbones(),
        "loss.cls": cls_loss_heads(),
        "loss.box": list_box_losses(),
        "data.format": ("synthetic", *format_names()),  # synthetic: generated, not loaded
        "compress.ptq.calib": act_quantizer_names(),
        "compress.weight_scale_init": weight_scale_init_names(),
        "bench.backend": backend_names(".onnx"),  # the bench stage times the exported ONNX files
    }


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML config with dotted overrides, registry names included (one-line ConfigError)."""
    return core_config.load_config(path, overrides, registries())
