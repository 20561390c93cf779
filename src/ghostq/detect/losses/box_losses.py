"""Box regression losses, registered by name: ``fn(pred [P, 4], target [P, 4]) -> [P]`` on matched xyxy boxes.

Both are IoU losses, hence scale-free: a 6 px vehicle and a 600 px plane contribute on the same scale. The
detection loss divides both boxes by the anchor stride before calling them, so the ``eps`` of the IoU is
relative to the level's cell size rather than an absolute pixel area.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch

from ghostq.detect.boxes import bbox_iou
from ghostq.detect.losses.cls_losses import load_loss_modules

BoxLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_BOX_LOSSES: dict[str, BoxLossFn] = {}
BOX_LOSSES: Mapping[str, BoxLossFn] = MappingProxyType(_BOX_LOSSES)  # read-only view of the registry


def register_box_loss(name: str) -> Callable[[BoxLossFn], BoxLossFn]:
    """Decorator: register ``fn`` as the box loss ``name`` (`loss.box` accepts it from then on)."""

    def decorator(fn: BoxLossFn) -> BoxLossFn:
        known = _BOX_LOSSES.get(name)
        if known is not None and known.__qualname__ != fn.__qualname__:
            raise ValueError(f"box loss {name!r} is already registered by {known.__module__}")
        _BOX_LOSSES[name] = fn
        return fn

    return decorator


@register_box_loss("giou")
def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU, in [0, 2]."""
    return 1.0 - bbox_iou(pred, target, kind="giou")


@register_box_loss("ciou")
def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CIoU (overlap, centre distance and aspect-ratio terms), in [0, 3)."""
    return 1.0 - bbox_iou(pred, target, kind="ciou")


def get_box_loss(name: str) -> BoxLossFn:
    """The box loss called ``name``; ValueError naming the known ones otherwise."""
    load_loss_modules()
    try:
        return BOX_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown box loss {name!r}; known: {', '.join(sorted(BOX_LOSSES))}") from None
