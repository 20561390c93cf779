"""Checkpoints: plain data (tensors, numbers, strings, dicts), saved atomically, loaded weights_only=True.

A checkpoint never holds code: the model is rebuilt from the config stored in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ghostq.atomic import atomic_path
from ghostq.errors import GhostqError


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save to a temporary file beside `path`, then rename: the previous checkpoint survives a crash."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data only (weights_only=True); a missing or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise GhostqError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GhostqError(f"{path}: not a readable ghostq checkpoint ({first[:200]})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise GhostqError(f"{path}: not a ghostq checkpoint (no 'model' and 'config' entries)")
    return payload


def load_detector(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the detector stored in a checkpoint (weights from `model`, architecture from `config`)."""
    from ghostq.config import Config
    from ghostq.detect.builders import build_model_from_config

    payload = load_checkpoint(path, map_location)
    cfg = Config.model_validate(payload["config"])
    model = build_model_from_config(cfg, len(payload["classes"]))
    model.load_state_dict(payload["model"])
    model.eval()
    return model, payload
