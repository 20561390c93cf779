"""The detection loss: task-aligned assignment, then a classification loss and an IoU box loss.

Called by the trainer on the model's output (assignment and losses stay outside ``forward``)::

    loss_fn = DetectionLoss(num_classes=5, head="sigmoid", cls_loss="varifocal", box_loss="giou")
    total, parts = loss_fn(model(images), targets)   # parts: {"cls": ..., "box": ..., "num_fg": ...}

``total = cls_weight * cls + box_weight * box`` where, with S = max(1, sum of the box weights, i.e. of the
foreground target scores t_hat):

- ``cls = sum_anchors(cls_weights * cls_loss(logits)) / S`` (per-class terms summed first);
- ``box = sum_fg(box_weights * box_loss(pred / stride, gt / stride)) / S``.

The defaults (varifocal 1.0 + GIoU 2.5, TAL with top-k 13, alpha 1, beta 6) are PP-YOLOE's.

Extension points for the robust losses (DESIGN §4):

- ``logit_transform``: a callable on the [B, N, K] logits applied before the classification loss (LogitClip,
  LogitNorm). The assigner always scores anchors with the raw logits, which is what inference ranks by.
- ``assignment_hook``: ``hook(assignment, out, targets) -> Assignment``, run after assignment and before the
  losses. It may rewrite labels, scores, fg_mask, cls_weights and box_weights (e.g. ODNL: give the anchors
  of open-set objects, found through ``assignment.gt_index``, fresh random labels, weight ``eta`` and box
  weight 0).
- new classification losses register themselves by name in :mod:`ghostq.detect.losses.cls_losses`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ghostq.detect.losses.assign import Assignment, TaskAlignedAssigner
from ghostq.detect.losses.box_losses import get_box_loss
from ghostq.detect.losses.cls_losses import HEADS, get_cls_loss
from ghostq.detect.models.output import DetectorOutput, Targets

LogitTransform = Callable[[torch.Tensor], torch.Tensor]
AssignmentHook = Callable[[Assignment, DetectorOutput, Targets], Assignment]

_DEFAULT_CLS_LOSS = {"sigmoid": "varifocal", "softmax": "ce"}


class DetectionLoss(nn.Module):
    """Assignment + classification loss + box loss, with weights (a parameter-free module).

    Args:
        num_classes: C, object classes (background excluded).
        head: ``"sigmoid"`` (logits [B, N, C]) or ``"softmax"`` (logits [B, N, C + 1], index C = background).
        cls_loss: a registered classification loss valid for ``head``; default ``varifocal`` (sigmoid) or
            ``ce`` (softmax).
        box_loss: ``"giou"`` or ``"ciou"``.
        cls_weight, box_weight: weights of the two terms in the total.
        topk, alpha, beta, center_radius: of the :class:`TaskAlignedAssigner`.
        cls_loss_kwargs: hyper-parameters passed to the classification loss (e.g. ``{"gamma": 2.0}``).
        logit_transform: applied to the logits before the classification loss (see the module docstring).
        assignment_hook: rewrites the assignment before the losses (see the module docstring).
    """

    def __init__(
        self,
        num_classes: int,
        head: str = "sigmoid",
        cls_loss: str | None = None,
        box_loss: str = "giou",
        cls_weight: float = 1.0,
        box_weight: float = 2.5,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        center_radius: float = 2.5,
        cls_loss_kwargs: Mapping[str, Any] | None = None,
        logit_transform: LogitTransform | None = None,
        assignment_hook: AssignmentHook | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.num_classes = num_classes
        self.head = head
        self.cls_loss = get_cls_loss(cls_loss or _DEFAULT_CLS_LOSS[head], head=head)
        self.box_loss_name = box_loss
        self.box_loss = get_box_loss(box_loss)
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.cls_loss_kwargs = dict(cls_loss_kwargs or {})
        self.logit_transform = logit_transform
        self.assignment_hook = assignment_hook
        self.assigner = TaskAlignedAssigner(
            num_classes, topk=topk, alpha=alpha, beta=beta, center_radius=center_radius
        )

    @property
    def num_logits(self) -> int:
        """K, the width of the logits this loss expects."""
        return self.num_classes + (1 if self.head == "softmax" else 0)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, N, C] class probabilities of raw logits (background column of a softmax head dropped)."""
        if self.head == "sigmoid":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)[..., : self.num_classes]

    def assign(self, out: DetectorOutput, targets: Targets) -> Assignment:
        """The task-aligned assignment of one batch (predictions detached), after the hook if one is set."""
        assignment = self.assigner(
            self.scores(out.cls_logits.detach().float()),
            out.boxes.detach(),
            out.points,
            out.strides,
            targets.boxes,
            targets.labels,
            targets.mask,
        )
        if self.assignment_hook is not None:
            assignment = self.assignment_hook(assignment, out, targets)
        return assignment

    def forward(self, out: DetectorOutput, targets: Targets) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (a scalar with a graph) and its unweighted parts: ``cls``, ``box``, ``num_fg``."""
        logits = out.cls_logits
        if logits.dim() != 3 or logits.shape[-1] != self.num_logits:
            raise ValueError(
                f"cls_logits of shape {tuple(logits.shape)}: a {self.head} head with "
                f"{self.num_classes} classes gives [B, N, {self.num_logits}]"
            )
        a = self.assign(out, targets)
        normalizer = a.box_weights.sum().clamp_min(1.0)

        z = self.logit_transform(logits) if self.logit_transform is not None else logits
        per = self.cls_loss.fn(z, a.labels, a.scores, a.fg_mask, self.num_classes, **self.cls_loss_kwargs)
        if per.dim() == 3:
            per = per.sum(-1)
        cls = (per * a.cls_weights).sum() / normalizer

        fg = a.fg_mask & (a.box_weights > 0)
        # An empty selection keeps the box branch in the graph (DDP expects a gradient for every parameter).
        box = out.boxes[..., :0].sum().float()
        if bool(fg.any()):
            stride = out.strides.to(out.boxes.dtype).expand(fg.shape)[fg][:, None]
            per_box = self.box_loss(out.boxes[fg].float() / stride, a.boxes[fg].float() / stride)
            box = box + (per_box * a.box_weights[fg]).sum() / normalizer

        total = self.cls_weight * cls + self.box_weight * box
        parts = {"cls": float(cls.detach()), "box": float(box.detach()), "num_fg": float(a.fg_mask.sum())}
        return total, parts
