"""Box regression losses, by name: ``fn(pred [P, 4], target [P, 4]) -> [P]`` on matched xyxy boxes.

Both are IoU losses, hence scale-free: a 6 px vehicle and a 600 px plane contribute on the same scale. The
detection loss divides both boxes by the anchor stride before calling them, so the ``eps`` of the IoU is
relative to the level's cell size rather than an absolute pixel area.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch

from ghostq.detect.boxes import bbox_iou

BoxLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU, in [0, 2]."""
    return 1.0 - bbox_iou(pred, target, kind="giou")


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CIoU (overlap, centre distance and aspect-ratio terms), in [0, 3)."""
    return 1.0 - bbox_iou(pred, target, kind="ciou")


BOX_LOSSES: Mapping[str, BoxLossFn] = MappingProxyType({"giou": giou_loss, "ciou": ciou_loss})


def get_box_loss(name: str) -> BoxLossFn:
    """The box loss called ``name``; ValueError naming the known ones otherwise."""
    try:
        return BOX_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown box loss {name!r}; known: {', '.join(sorted(BOX_LOSSES))}") from None
