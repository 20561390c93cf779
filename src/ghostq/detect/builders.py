"""Build the pieces of a training run from the config: model, loss, optimizer, schedule, augmentation, device."""

from __future__ import annotations

import math

import torch
from torch import nn

from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.detect.data.transforms import AugmentConfig


def build_model_from_config(cfg: Config, num_classes: int) -> nn.Module:
    """The detector the config describes; an impossible model (unknown backbone, ...) is a one-line error."""
    from ghostq.detect.models import build_detector

    try:
        return build_detector(
            cfg.model.backbone,
            num_classes,
            in_channels=cfg.data.in_channels,
            strides=tuple(cfg.model.strides),
            head=cfg.model.head,
            act=cfg.model.act,
        )
    except ValueError as err:
        raise GhostqError(f"model: cannot build the detector: {err}") from None


def build_loss_from_config(cfg: Config, num_classes: int, class_counts: list[int] | None = None) -> nn.Module:
    """The detection loss the config describes, with its LogitClip / LogitNorm transform and open-set hook.

    ``class_counts`` (training objects per class) sets Open-sampling's complementary prior; None: balanced.
    """
    from ghostq.detect.losses import DetectionLoss
    from ghostq.detect.losses.open_set import OpenSetHook, OpenSetLabeler
    from ghostq.detect.losses.robust import LogitClip, LogitNorm

    head, name = cfg.model.head, cfg.loss.cls
    transform = None
    if name == "logitnorm":
        transform, name = LogitNorm(cfg.loss.logitnorm_tau), ("bce" if head == "sigmoid" else "ce")
    clip = cfg.loss.logit_clip
    if clip is not None:
        transform = LogitClip(clip.bound, p=clip.p_for(head), mode=clip.mode)
    hook = None
    if cfg.loss.open_set is not None:
        o = cfg.loss.open_set
        hook = OpenSetHook(OpenSetLabeler(num_classes, o.method, o.eta, class_counts))
    return DetectionLoss(
        num_classes,
        head=head,
        cls_loss=name,
        box_loss=cfg.loss.box,
        cls_weight=cfg.loss.cls_weight,
        box_weight=cfg.loss.box_weight,
        cls_loss_kwargs=cls_params(name, dict(cfg.loss.cls_params)),
        logit_transform=transform,
        assignment_hook=hook,
    )


def cls_params(name: str, params: dict[str, float]) -> dict[str, float]:
    """`loss.cls_params` checked against the keywords the registered loss `name` takes (one-line error)."""
    import inspect

    from ghostq.detect.losses import get_cls_loss

    fixed = {"logits", "target_labels", "target_scores", "fg_mask", "num_classes"}
    takes = [k for k in inspect.signature(get_cls_loss(name).fn).parameters if k not in fixed]
    unknown = sorted(set(params) - set(takes))
    if unknown:
        raise GhostqError(f"loss.cls_params: {name} takes {', '.join(takes) or 'no parameters'}; "
                          f"got {', '.join(unknown)}")
    return params


def pick_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise GhostqError("train.device=cuda but no CUDA device is available (use train.device=cpu or auto)")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only; none on biases and normalisation weights (1-d parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module, cfg: Config, groups: list[dict] | None = None, lr: float | None = None
) -> torch.optim.Optimizer:
    """AdamW or SGD (`train.optimizer`) over `groups` (default `decay_groups`) at peak `lr` (default train.lr)."""
    t = cfg.train
    groups = decay_groups(model, t.weight_decay) if groups is None else groups
    lr = t.lr if lr is None else lr
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=t.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(t.momentum, 0.999))


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to `min_ratio` at the last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def augment_from_config(cfg: Config) -> AugmentConfig:
    """The data pipeline's augmentation settings from the `train.augment` section."""
    a = cfg.train.augment
    return AugmentConfig(
        mosaic_prob=a.mosaic,
        hflip_prob=a.flip,
        vflip_prob=a.flip,
        rot90_prob=a.rot90,
        hsv_prob=a.hsv,
        scale_range=tuple(a.scale),
    )
