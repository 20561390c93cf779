"""Checkpoints: plain data (tensors, numbers, strings, dicts), saved atomically, loaded weights_only=True.

A checkpoint never holds code: the model is rebuilt from the model spec stored in it (``spec``,
`ghostq.core.spec.ModelSpec.to_dict()`); a checkpoint written before specs existed gets its spec derived from its
stored config. Every command that reads a ``.pt`` goes through `load_checkpoint` (structure) and `load_detector`
(the weights fit the model), so a wrong, foreign, truncated or unsafe file is one line naming the file and what
is wrong, never a traceback.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ghostq.core.atomic import atomic_path
from ghostq.core.errors import GhostqError
from ghostq.core.spec import ModelSpec, spec_from_config

REQUIRED = ("model", "classes")
RESUME_KEYS = ("config", "epoch", "optimizer", "scheduler", "scaler", "rng", "best_map50", "history")
_SHOWN = 3  # tensor names quoted per kind of mismatch


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) for every tensor inside nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix or "<payload>", obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def non_finite_tensors(obj: Any) -> list[str]:
    """Dotted names of the floating-point tensors in `obj` that hold NaN or inf."""
    return [
        name for name, t in _tensors(obj)
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save to a temporary file beside `path`, then rename; a payload with NaN/inf is refused, not saved."""
    bad = non_finite_tensors(payload)
    if bad:
        total = sum(1 for _ in _tensors(payload))
        raise GhostqError(
            f"{path}: not saved: {len(bad)} of {total} tensors hold NaN/inf (first: {bad[0]}); the previous file "
            "is kept"
        )
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _describe(value: Any) -> str:
    """A short, one-line description of a wrong value for an error message."""
    if value is None or isinstance(value, (str, int, float, bool)):
        shown = repr(value)
        return f"{type(value).__name__} {shown[:40]}{'...' if len(shown) > 40 else ''}"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def _sniff(path: Path) -> None:
    """Reject what is clearly no torch.save file (empty, truncated archive, other format) before unpickling."""
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise GhostqError(f"{path}: empty file (0 bytes), not a checkpoint")
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise GhostqError(
                f"{path}: truncated or corrupt checkpoint (its zip archive has no central directory); "
                "copy it again or use another checkpoint"
            )
    elif head[0] != 0x80:  # neither torch's zip format nor a legacy pickle
        raise GhostqError(f"{path}: not a PyTorch checkpoint (a checkpoint is the zip archive torch.save writes)")


def _refused_by_weights_only(path: Path, err: Exception) -> GhostqError:
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f"the Python object {found.group(1)}" if found else "Python objects or pickle instructions"
    return GhostqError(
        f"{path}: refused by the data-only loader (weights_only=True): it holds {what}; a ghostq checkpoint "
        "holds only tensors, numbers, strings, lists and dicts, so this file is not loaded"
    )


def validate_checkpoint(path: str | Path, payload: Any) -> dict[str, Any]:
    """Check a loaded payload is a ghostq checkpoint (state dict, class names, a valid spec or config, finite
    weights) and give it its ``spec`` entry (derived from the stored config when the file predates specs)."""
    if not isinstance(payload, dict):
        raise GhostqError(
            f"{path}: not a ghostq checkpoint (it holds {_describe(payload)}, not a mapping with "
            f"{', '.join(map(repr, REQUIRED))} and 'spec')"
        )
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise GhostqError(
            f"{path}: not a ghostq checkpoint: no {' / '.join(map(repr, missing))} entry (a ghostq checkpoint "
            f"holds {', '.join(map(repr, REQUIRED))} and 'spec')"
        )
    state = payload["model"]
    if not isinstance(state, Mapping) or not state:
        raise GhostqError(f"{path}: 'model' must be a state dict (parameter name -> tensor), got {_describe(state)}")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise GhostqError(f"{path}: 'model' entry {name!r} is {_describe(value)}, not a tensor")
    classes = payload["classes"]
    if (
        not isinstance(classes, (list, tuple))
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise GhostqError(f"{path}: 'classes' must be a non-empty list of class names, got {_describe(classes)}")
    spec = _spec(path, payload)
    if list(spec.classes) != list(classes):
        raise GhostqError(f"{path}: its spec names classes {list(spec.classes)}, its 'classes' entry {list(classes)}")
    bad = non_finite_tensors(state)
    if bad:
        raise GhostqError(
            f"{path}: {len(bad)} of {len(state)} weight tensors hold NaN/inf (first: {bad[0]}); the checkpoint "
            "is unusable"
        )
    payload["spec"] = spec.to_dict()
    return payload


def _spec(path: str | Path, payload: dict[str, Any]) -> ModelSpec:
    """The checkpoint's model spec: its ``spec`` entry, else derived from its stored ``config`` (both validated)."""
    from ghostq.detect.models.registry import list_backbones

    config = payload.get("config")
    cfg = None if config is None else _stored_config(path, config)
    if "spec" in payload:
        spec = ModelSpec.from_dict(payload["spec"], f"{path}: spec")
    elif cfg is not None:
        spec = spec_from_config(cfg, tuple(payload["classes"]))
    else:
        raise GhostqError(f"{path}: not a ghostq checkpoint: no 'spec' entry (nor a 'config' to derive it from)")
    if spec.backbone not in list_backbones():
        where = "spec" if "spec" in payload else "stored config: model"
        raise GhostqError(
            f"{path}: {where}.backbone {spec.backbone!r} is not a known backbone "
            f"(known: {', '.join(list_backbones())})"
        )
    return spec


def _stored_config(path: str | Path, config: Any) -> Any:
    """The stored config validated (``ghostq.core.config.Config``); an invalid one is a one-line error."""
    from pydantic import ValidationError

    from ghostq.core.config import Config, format_validation_error

    if not isinstance(config, Mapping):
        raise GhostqError(f"{path}: 'config' must be a mapping of config sections, got {_describe(config)}")
    try:
        return Config.model_validate(dict(config))
    except ValidationError as err:
        raise GhostqError(format_validation_error(err, f"{path}: stored config")) from None


def checkpoint_spec(payload: Mapping[str, Any]) -> ModelSpec:
    """The model spec of a payload `load_checkpoint` returned."""
    return ModelSpec.from_dict(payload["spec"])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data only (weights_only=True) and validate it; anything wrong is a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise GhostqError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise GhostqError(f"{path}: checkpoint not found")
    try:
        _sniff(path)
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except GhostqError:
        raise
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise _refused_by_weights_only(path, err) from None
        raise GhostqError(f"{path}: not a readable PyTorch checkpoint ({_one_line(err)})") from None
    except OSError as err:
        raise GhostqError(f"{path}: cannot read the checkpoint ({err.strerror or type(err).__name__})") from None
    except Exception as err:  # torch raises several types for truncated / foreign files
        raise GhostqError(f"{path}: not a readable PyTorch checkpoint ({_one_line(err)})") from None
    return validate_checkpoint(path, payload)


def _one_line(err: Exception) -> str:
    """The whole message of `err` on one line (torch's messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def require_training_state(path: str | Path, payload: Mapping[str, Any]) -> None:
    """A checkpoint to resume from must hold the training state that `last.pt` carries, not weights only."""
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise GhostqError(
            f"{path}: cannot resume from it: no training state ({', '.join(missing)} missing); a best.pt holds "
            "weights only, --resume needs the run's last.pt"
        )


def load_state_checked(
    path: str | Path, model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str = "model"
) -> None:
    """Load `state` into `model`; missing, unexpected or mis-shaped tensors are one line naming the first ones.

    Unexpected names are the ones `load_state_dict` itself leaves over: brevitas' quantizers take entries that
    their `state_dict()` does not list."""
    own = model.state_dict()
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if not shapes and not missing:
        try:
            result = model.load_state_dict(dict(state), strict=False)
        except RuntimeError as err:
            raise GhostqError(f"{path}: the weights do not fit the {what} ({_one_line(err)})") from None
        unexpected = list(result.unexpected_keys)
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected),
                         ("differ in shape (checkpoint vs model)", shapes)):
        if names:
            more = f", ... {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
            problems.append(f"{len(names)} {label}: {', '.join(names[:_SHOWN])}{more}")
    if problems:
        raise GhostqError(
            f"{path}: the weights do not fit the {what} its config describes ({len(own)} tensors): "
            + "; ".join(problems)
        )


def load_detector(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the full-precision detector of a checkpoint from its spec alone (weights from ``model``).

    Returns the model (eval mode) and the payload, whose ``spec`` entry `checkpoint_spec` reads."""
    from ghostq.detect.models.from_spec import build_detector_from_spec

    payload = load_checkpoint(path, map_location)
    if "bits" in payload:
        raise GhostqError(
            f"{path}: a compressed (quantized) checkpoint; this command takes a full-precision checkpoint "
            "(fp/best.pt) or the exported ONNX of the compressed model (ghostq export)"
        )
    spec = checkpoint_spec(payload)
    try:
        model = build_detector_from_spec(spec)
    except GhostqError as err:
        raise GhostqError(f"{path}: {err}") from None
    load_state_checked(path, model, payload["model"], f"{spec.backbone} detector with {spec.num_classes} classes")
    model.eval()
    return model, payload
