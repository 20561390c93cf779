"""Label assignment and the detection loss, called by the trainer on a model's :class:`DetectorOutput`.

- :class:`DetectionLoss`: task-aligned assignment + classification loss (by name) + GIoU/CIoU box loss.
- :class:`TaskAlignedAssigner` and its result :class:`Assignment`.
- The classification-loss registry: :func:`register_cls_loss`, :func:`get_cls_loss`, :func:`list_cls_losses`
  (``bce``, ``varifocal`` for a sigmoid head; ``ce`` for a softmax head).
- Box losses by name: :data:`BOX_LOSSES`, :func:`get_box_loss` (``giou``, ``ciou``).
"""

from ghostq.detect.losses.assign import Assignment, TaskAlignedAssigner
from ghostq.detect.losses.box_losses import BOX_LOSSES, ciou_loss, get_box_loss, giou_loss
from ghostq.detect.losses.cls_losses import (
    ClsLoss,
    ClsLossFn,
    bce,
    ce,
    get_cls_loss,
    list_cls_losses,
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
    "register_cls_loss",
    "soft_one_hot",
    "varifocal",
]
