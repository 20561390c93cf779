"""GHOST compression: BN folding, ``quantize(model, QuantConfig)`` (brevitas), HQ bit widths, GQSD/OST/SCM,
PTQ baselines and cost. Importing the package imports no torch (``ghostq.core.compress_config`` is pydantic only);
the public names below load their module on first use (``quantize`` itself: ``ghostq.compress.quantize.quantize``,
or ``quantize_`` here; the submodule of that name would shadow it).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CompressConfig": "ghostq.core.compress_config",
    "QuantConfig": "ghostq.compress.quantize",
    "quantize_": "ghostq.compress.quantize",
    "fold_bn": "ghostq.compress.fold_bn",
    "model_cost": "ghostq.compress.cost",
    "hq_bits": "ghostq.compress.hybrid_bits",
    "OSTLoss": "ghostq.compress.distill",
    "compress": "ghostq.compress.pipeline",
    "load_quantized": "ghostq.compress.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ghostq.compress' has no attribute {name!r}")
