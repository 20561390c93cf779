"""Label assignment and the detection loss, called by the trainer on a model's :class:`DetectorOutput`.

- :class:`DetectionLoss`: task-aligned assignment + classification loss (by name) + GIoU/CIoU box loss.
- :class:`TaskAlignedAssigner` and its result :class:`Assignment`.
- The classification-loss registry: :func:`register_cls_loss`, :func:`get_cls_loss`, :func:`list_cls_losses`
  (``bce``, ``varifocal`` for a sigmoid head; ``ce`` for a softmax head).
- The box-loss registry: :func:`register_box_loss`, :data:`BOX_LOSSES`, :func:`get_box_loss` (``giou``, ``ciou``).
- What the config may name: :func:`cls_loss_heads` (every ``loss.cls`` value and its heads), :func:`list_box_losses`.
"""

from ghostq.detect.losses.assign import Assignment, TaskAlignedAssigner
from ghostq.detect.losses.box_losses import BOX_LOSSES, ciou_loss, get_box_loss, giou_loss, register_box_loss
from ghostq.detect.losses.cls_losses import (
    ClsLoss,
    ClsLossFn,
    bce,
    ce,
    get_cls_loss,
    list_cls_losses,
    load_loss_modules,
    register_cls_loss,
    soft_one_hot,
    varifocal,
)
from ghostq.detect.losses.detection_loss import AssignmentHook, DetectionLoss, LogitTransform

__all__ = [
    "BOX_LOSSES",
    "Assignment",
    "AssignmentHook",
    "ClsLoss",
    "ClsLossFn",
    "DetectionLoss",
    "LogitTransform",
    "TaskAlignedAssigner",
    "bce",
    "ce",
    "ciou_loss",
    "get_box_loss",
    "get_cls_loss",
    "giou_loss",
    "list_cls_losses",
    "register_box_loss",
    "register_cls_loss",
    "soft_one_hot",
    "varifocal",
    "CLS_LOSS_WRAPPERS",
    "cls_loss_heads",
    "list_box_losses",
]

# `loss.cls` names that wrap a registered loss instead of being one: LogitNorm runs on bce or ce, by head.
CLS_LOSS_WRAPPERS: dict[str, dict[str, str]] = {"logitnorm": {"sigmoid": "bce", "softmax": "ce"}}


def cls_loss_heads() -> dict[str, tuple[str, ...]]:
    """Every name `loss.cls` accepts -> the heads it fits: the registry plus the wrappers, so config checks match."""
    heads = {name: tuple(sorted(get_cls_loss(name).heads)) for name in list_cls_losses()}
    for name, by_head in CLS_LOSS_WRAPPERS.items():
        heads[name] = tuple(sorted(h for h, base in by_head.items() if base in heads))
    return heads


def list_box_losses() -> list[str]:
    """Names of the box losses (`loss.box`), sorted."""
    load_loss_modules()
    return sorted(BOX_LOSSES)
