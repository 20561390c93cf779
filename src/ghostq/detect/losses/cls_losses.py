"""Classification losses of the detector, registered by name.

Every loss has one signature (:data:`ClsLossFn`)::

    fn(logits, target_labels, target_scores, fg_mask, num_classes, **kwargs) -> Tensor

- ``logits``: [B, N, K] head logits, after ``DetectionLoss``'s ``logit_transform`` (LogitClip / LogitNorm wrap
  the logits there, before any base loss). K = C for a sigmoid head, C + 1 for a softmax head (index C =
  background).
- ``target_labels``: [B, N] int64, the class of a foreground anchor, ``num_classes`` (C) for background.
- ``target_scores``: [B, N] float in [0, 1], the soft target t_hat of the assignment (0 for background).
- ``fg_mask``: [B, N] bool, the foreground anchors.
- ``num_classes``: C; ``kwargs``: the loss's own hyper-parameters (``DetectionLoss(cls_loss_kwargs=...)``).
- Returns the per-element loss, neither reduced nor normalised: [B, N, K'] (per class, summed over the last
  axis by the caller) or [B, N] (per anchor). ``DetectionLoss`` multiplies it by the assignment's per-anchor
  ``cls_weights``, sums, and divides by the sum of the target scores (YOLOv8 / PP-YOLOE normalisation).

Anchors with injected labels (e.g. ODNL's open-set anchors with random classes) reach a loss as ordinary
foreground anchors: a hook rewrites the assignment (labels, scores, weights) before the loss is called.

A loss declares the heads it is valid for (``sigmoid``, ``softmax``). Every module of ``ghostq.detect.losses``
is imported before a lookup (``load_loss_modules``), so the registry never depends on import order and a new
file of losses registers itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

HEADS = ("sigmoid", "softmax")

ClsLossFn = Callable[..., torch.Tensor]



@dataclass(frozen=True)
class ClsLoss:
    """A registered classification loss: its name, function and the heads it applies to."""

    name: str
    fn: ClsLossFn
    heads: frozenset[str]


_REGISTRY: dict[str, ClsLoss] = {}
_modules_loaded = False


def register_cls_loss(name: str, *, heads: tuple[str, ...]) -> Callable[[ClsLossFn], ClsLossFn]:
    """Decorator: register ``fn`` as the classification loss ``name`` for the given heads."""
    unknown = set(heads) - set(HEADS)
    if not heads or unknown:
        raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {heads}")

    def decorator(fn: ClsLossFn) -> ClsLossFn:
        known = _REGISTRY.get(name)
        if known is not None and known.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"classification loss {name!r} is already registered by {known.fn.__module__}")
        _REGISTRY[name] = ClsLoss(name=name, fn=fn, heads=frozenset(heads))
        return fn

    return decorator


def load_loss_modules() -> None:
    """Import every module of the losses package once, so each has registered its losses."""
    global _modules_loaded
    if _modules_loaded:
        return
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _modules_loaded = True


def list_cls_losses(head: str | None = None) -> list[str]:
    """Names of the registered classification losses (for one head type when ``head`` is given), sorted."""
    load_loss_modules()
    return sorted(k for k, v in _REGISTRY.items() if head is None or head in v.heads)


def get_cls_loss(name: str, head: str | None = None) -> ClsLoss:
    """The loss registered as ``name``; ValueError naming the alternatives if unknown or not for ``head``."""
    load_loss_modules()
    loss = _REGISTRY.get(name)
    if loss is None:
        raise ValueError(f"unknown classification loss {name!r}; known: {', '.join(list_cls_losses())}")
    if head is not None and head not in loss.heads:
        raise ValueError(
            f"classification loss {name!r} is for a {'/'.join(sorted(loss.heads))} head, not {head!r}; "
            f"for a {head} head use one of: {', '.join(list_cls_losses(head))}"
        )
    return loss


def soft_one_hot(target_labels: torch.Tensor, target_scores: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, N, C] target of a sigmoid head: t_hat at the assigned class, 0 elsewhere (all 0 for background)."""
    one_hot = F.one_hot(target_labels.clamp(0, num_classes), num_classes + 1)[..., :num_classes]
    return one_hot.to(target_scores.dtype) * target_scores[..., None]


@register_cls_loss("bce", heads=("sigmoid",))
def bce(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """Binary cross-entropy of every class logit against the soft target (YOLOv8): [B, N, C]."""
    q = soft_one_hot(target_labels, target_scores.float(), num_classes)
    return F.binary_cross_entropy_with_logits(logits.float(), q, reduction="none")


@register_cls_loss("varifocal", heads=("sigmoid",))
def varifocal(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Varifocal loss (VarifocalNet, Zhang et al., CVPR 2021): [B, N, C].

    ``VFL(p, q) = -q (q log p + (1 - q) log(1 - p))`` where the target q > 0, and
    ``-alpha p^gamma log(1 - p)`` where q = 0: positives are weighted by their quality q (the IoU-aware
    target), negatives are down-weighted focal-style, which keeps the many easy background elements from
    dominating.
    """
    x = logits.float()
    q = soft_one_hot(target_labels, target_scores.float(), num_classes)
    weight = torch.where(q > 0, q, alpha * torch.sigmoid(x).pow(gamma))
    return F.binary_cross_entropy_with_logits(x, q, reduction="none") * weight


@register_cls_loss("ce", heads=("softmax",))
def ce(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
    bg_weight: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy over C + 1 classes with a soft, quality-aware target: [B, N].

    A foreground anchor's target distribution puts t_hat on its class and 1 - t_hat on background; a
    background anchor's is background alone. This is the softmax form of YOLOv8's soft-target BCE: the class
    probability learns the localisation quality, so scores rank boxes well for NMS and mAP, where hard labels
    would make every low-quality positive as confident as the best one. Normalised, like the sigmoid losses,
    by the sum of the target scores; ``bg_weight`` scales the background anchors' terms (negatives outnumber
    positives by about 100 to 1) should a model need it.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp_bg = logp[..., num_classes]
    lp_label = logp.gather(-1, target_labels.clamp(0, num_classes)[..., None]).squeeze(-1)
    q = target_scores.float()
    positive = -(q * lp_label + (1 - q) * lp_bg)
    return torch.where(fg_mask, positive, -bg_weight * lp_bg)
