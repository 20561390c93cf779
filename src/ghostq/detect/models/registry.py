"""Registry of backbones: a name maps to a builder function (timm style).

A builder is a small function registered with ``@register_backbone``; its name is the backbone's name
(``csp_n``, ``convnextv2_atto``, ...). ``list_backbones()`` and ``create_backbone()`` import the built-in
model files first, so the registry's content never depends on which modules the caller imported.

Every backbone is a :class:`Backbone`: ``forward(x)`` returns the feature maps at ``out_strides``
(increasing), ``channels_at(stride)`` tells their widths. Built-in backbones give strides 4, 8, 16 and 32
and build only the stages they need (strides 4/8/16 leave the stride-32 stage out), so every parameter of a
built model is used and receives a gradient.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

SUPPORTED_STRIDES: tuple[int, ...] = (4, 8, 16, 32)

# Model files whose builders are registered on import; loaded by list_backbones() / create_backbone().
_PACKAGE = "ghostq.detect.models"  # every module in it is imported before a lookup: a backbone file registers itself


class Backbone(nn.Module):
    """Base of every backbone: multi-scale features at ``out_strides``.

    Subclasses set ``self.out_strides`` (increasing) and ``self._channels`` (stride -> width of that feature),
    and return ``list[Tensor]``, one per entry of ``out_strides``, from ``forward``.
    """

    out_strides: tuple[int, ...]
    _channels: dict[int, int]

    def channels_at(self, stride: int) -> int:
        """Channel count of the feature map at ``stride``."""
        return self._channels[stride]

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channel counts of the returned features, in the order of ``out_strides``."""
        return tuple(self._channels[s] for s in self.out_strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


BackboneBuilder = Callable[..., Backbone]
_F = TypeVar("_F", bound=BackboneBuilder)
_REGISTRY: dict[str, BackboneBuilder] = {}


def register_backbone(fn: _F) -> _F:
    """Decorator: register a builder under its function name. Registering a different builder twice fails."""
    name = fn.__name__
    known = _REGISTRY.get(name)
    if known is not None and known.__qualname__ != fn.__qualname__:
        raise ValueError(f"backbone {name!r} is already registered by {known.__module__}")
    _REGISTRY[name] = fn
    return fn


def _load_builtin() -> None:
    package = importlib.import_module(_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{_PACKAGE}.{info.name}")


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_backbone_builder(name: str) -> BackboneBuilder:
    """The builder registered as ``name``; ValueError naming the known backbones otherwise."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def create_backbone(name: str, **kwargs: object) -> Backbone:
    """Build the backbone registered as ``name``; keyword arguments go to its builder
    (``in_channels``, ``out_strides``, ``act``, and builder-specific ones such as ``drop_path_rate``)."""
    return get_backbone_builder(name)(**kwargs)


def check_strides(strides: Sequence[int]) -> tuple[int, ...]:
    """Validate a stride set: non-empty, strictly increasing, each one of :data:`SUPPORTED_STRIDES`."""
    strides = tuple(int(s) for s in strides)
    if not strides:
        raise ValueError("strides must not be empty")
    bad = [s for s in strides if s not in SUPPORTED_STRIDES]
    if bad:
        raise ValueError(f"unsupported stride(s) {bad}; each stride must be one of {SUPPORTED_STRIDES}")
    if list(strides) != sorted(set(strides)):
        raise ValueError(f"strides must be strictly increasing, got {strides}")
    return strides
