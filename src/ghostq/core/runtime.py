"""Runtimes behind one interface, and the one registry of them: ``load_runtime(path, backend=None)``.

A runtime is one loaded model on one backend: ``run(batch)`` gives the graph's raw named outputs (the export
contract), ``infer(batch)`` decodes them into :class:`ghostq.core.detections.Detections`. A batch is float32
[B, C, S, S] in [0, 1]. Each backend file registers a :class:`Backend` (name, file suffixes, the modules it needs,
their install hint, how to open a file) and is found through the ``ghostq.runtimes`` entry points of the installed
distributions (``pyproject.toml``), read when the registry is first asked; so adding a runtime is one new file
plus its entry point, and a runtime may live outside ``ghostq.deploy`` (the PyTorch reference lives with the torch
code). The contract sits in core because both ``ghostq.deploy`` and ``ghostq.detect`` implement it.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings, Detections, decode_outputs
from ghostq.core.errors import GhostqError
from ghostq.core.spec import ModelSpec

ENTRY_POINT_GROUP = "ghostq.runtimes"


@dataclass(frozen=True)
class ModelInfo:
    """What a deployed model takes and gives. ``classes`` may be empty (unknown: ids are named class<i>)."""

    path: Path
    img_size: int
    in_channels: int
    classes: tuple[str, ...] = ()
    head: str = "unknown"  # sigmoid | softmax | unknown (scores are probabilities either way)
    nms: str = "none"  # none | onnx | trt: NMS inside the graph
    input_name: str = "images"
    output_names: tuple[str, ...] = ("scores", "boxes")
    batch: int | None = None  # fixed batch size of the graph, None = dynamic
    extra: dict[str, str] = field(default_factory=dict)  # the ghostq.* metadata (spec-given keys from the spec)
    spec: ModelSpec | None = None  # the model spec the file carries, when it has one

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else f"class{label}"


class Runtime(ABC):
    """One loaded model on one backend. ``run`` gives the graph's raw outputs; ``infer`` decodes them."""

    backend: str
    info: ModelInfo

    def __init__(self, decode: DecodeSettings | None = None) -> None:
        self._decode = decode

    @property
    def decode(self) -> DecodeSettings:
        """The thresholds asked for, else those of the model's spec, else the defaults."""
        if self._decode is not None:
            return self._decode
        spec = getattr(self, "info", None) and self.info.spec
        return DecodeSettings.from_spec(spec.decode) if spec else DecodeSettings()

    @abstractmethod
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw named outputs (numpy, on the host) for a float32 [B, C, S, S] batch."""

    def infer(self, batch: np.ndarray) -> list[Detections]:
        """Detections per image of the batch, in input pixels (map back with ``preprocess.unletterbox``)."""
        size = self.info.img_size
        return decode_outputs(self.run(batch), self.decode, (size, size), batch_size=len(batch))

    def describe(self) -> dict[str, Any]:
        """Backend, file and settings, for benchmark records."""
        return {"backend": self.backend, "model": str(self.info.path), "nms": self.info.nms}

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release what the runtime holds (device memory, sessions)."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as a contiguous float32 array, or a one-line error saying what shape is expected."""
        b = np.ascontiguousarray(batch, dtype=np.float32)
        c, s = self.info.in_channels, self.info.img_size
        if b.ndim != 4 or b.shape[1:] != (c, s, s):
            raise GhostqError(f"{self.info.path.name}: input must be [B, {c}, {s}, {s}], got {list(b.shape)}")
        if self.info.batch is not None and b.shape[0] != self.info.batch:
            raise GhostqError(
                f"{self.info.path.name}: the graph has a fixed batch of {self.info.batch}, "
                f"got {b.shape[0]} (export with a dynamic batch)"
            )
        return b


# (path, threads, decode, overrides, **options) -> Runtime
Opener = Callable[..., Runtime]


@dataclass(frozen=True)
class Backend:
    """A runtime backend as it registers itself: what it runs, what it needs installed, how to open a file."""

    name: str
    suffixes: tuple[str, ...]  # model files it runs, lower case with the dot (".onnx")
    open: Opener
    requires: tuple[str, ...] = ()  # modules that must be importable
    hint: str = ""  # how to install them
    default: bool = True  # the default backend for its suffixes
    cpu_threads: bool = True  # takes a CPU thread count
    options: tuple[str, ...] = ()  # extra keyword options ``open`` takes
    probe: Callable[[], str | None] | None = None  # why it cannot run here though its modules import, or None

    def missing(self) -> str | None:
        """The one-line error for a required module that is not installed, or None."""
        module = next((m for m in self.requires if not _installed(m)), None)
        if module is None:
            return None
        hint = f" ({self.hint})" if self.hint else ""
        return f"backend {self.name} needs the {module} package{hint}, which is not installed here"

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or None when it can (loads no model)."""
        module = next((m for m in self.requires if not _installed(m)), None)
        if module is not None:
            return f"{module} is not installed" + (f" ({self.hint})" if self.hint else "")
        return self.probe() if self.probe is not None else None


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (one already imported counts)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_registry: dict[str, Backend] = {}
_broken: dict[str, str] = {}  # entry point name -> why it could not be loaded
_discovered = False


def register_runtime(backend: Backend) -> Backend:
    """Add a backend to the registry; the same name twice with another backend is an error."""
    old = _registry.get(backend.name)
    if old is not None and old != backend:
        raise GhostqError(f"runtime backend {backend.name!r} is registered twice ({old.open} and {backend.open})")
    _registry[backend.name] = backend
    return backend


def unregister_runtime(name: str) -> None:
    """Remove a backend (tests register fakes)."""
    _registry.pop(name, None)


def _discover() -> None:
    """Load the ``ghostq.runtimes`` entry points once; each names a Backend or a sequence of them."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = ep.load()
        except ImportError as err:  # a plugin whose own imports are missing here
            _broken[ep.name] = str(err).splitlines()[0] if str(err) else type(err).__name__
            continue
        for backend in found if isinstance(found, list | tuple) else (found,):
            register_runtime(backend)


def backends() -> dict[str, Backend]:
    """Every registered backend by name."""
    _discover()
    return dict(_registry)


def backend_names(suffix: str | None = None) -> tuple[str, ...]:
    """The registered backend names (``--backend``); with ``suffix`` (".onnx"), those that run such files
    (``bench.backend``, which times the exported ONNX files)."""
    return tuple(name for name, b in backends().items() if suffix is None or suffix in b.suffixes)


def available_backends() -> dict[str, str]:
    """Backend -> "ok" or why it cannot run here (without loading any model)."""
    out = {name: b.unavailable() or "ok" for name, b in backends().items()}
    out.update({name: f"cannot load ({why})" for name, why in _broken.items() if name not in out})
    return out


def get_backend(name: str) -> Backend:
    """The registered backend ``name``, or a one-line error listing the registered names."""
    found = backends().get(name)
    if found is None and not backends():
        raise GhostqError(f"no runtime backend is registered (the {ENTRY_POINT_GROUP!r} entry points of the "
                          "installed ghostq are missing): reinstall it, e.g. `pip install -e .`")
    if found is None:
        raise GhostqError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    return found


def default_backend(path: str | Path) -> str:
    """The backend a model file runs on by default, from its suffix (.onnx -> ort-cpu, .pt -> torch, ...)."""
    suffix = Path(path).suffix.lower()
    known = backends().values()
    for b in known:
        if b.default and suffix in b.suffixes:
            return b.name
    for b in known:
        if suffix in b.suffixes:
            return b.name
    kinds = sorted({s for b in known for s in b.suffixes})
    raise GhostqError(f"{path}: unknown model type {suffix!r} (expected {', '.join(kinds)})")


def load_runtime(
    path: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    decode: DecodeSettings | None = None,
    overrides: dict[str, Any] | None = None,
    **options: Any,
) -> Runtime:
    """Open ``path`` on ``backend`` (default: by suffix). ``threads``: CPU threads (None = library default);
    ``overrides``: classes / img_size / in_channels / head / nms when the file's metadata lacks them."""
    path = Path(path)
    entry = get_backend(backend or default_backend(path))
    if not path.is_file():
        raise GhostqError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix not in entry.suffixes:
        raise GhostqError(f"{path}: backend {entry.name} runs {'/'.join(entry.suffixes)} files, not {suffix!r}")
    if threads is not None and threads < 1:
        raise GhostqError(f"threads must be >= 1, got {threads}")
    why = entry.missing()  # the opener explains finer failures (a missing execution provider) itself
    if why is not None:
        raise GhostqError(why)
    return entry.open(path, threads, decode, overrides, **options)
