"""GQSD's distillation term: OST (one-to-one self-teaching) with SCM (the switch), on paired layers.

Teacher = the trained FP model (frozen, eval mode); student = its quantized copy. Teacher layer l is paired
with student layer l (same name, same shapes). Per layer and image (GHOST):
    v = L2-normalise(flatten(mean over channels of F^2))        (spatial attention vector)
    d = mean((v_s - v_t)^2)
The switch decides per (image, layer) whether the pair is distilled:
    gumbel: as published (GHOST's code): channel descriptors (global average pool) of teacher and student,
            projected to ``proj_dim`` by projections fixed at their random initialisation (never trained),
            scaled dot product -> one hard Gumbel-sigmoid sample per (image, layer) in training, the
            deterministic threshold logits > 0 in eval mode; open about half the time;
    gumbel_learned: the same gate with trained projections. Trained on the non-negative distance alone it
            learns to close (measured: open share 0.44 -> 0.016 in 2,000 steps), so its objective is the
            distance standardised over the batch (no net push to close: it closes the pairs farthest from the
            teacher and opens the nearest) + ``open_weight * (mean open probability - open_target)^2``;
            that objective reaches the projections only (it is part of the returned loss);
    gt:     per image, 1 where the teacher's detection loss on that image is lower than the student's
            (the abstract's "reduce wrong guidance", made explicit), for every layer;
    off:    always 1.
The switches read detached features: the student is never trained to flip its own switch.
OST loss = sum over layers of mean over images of (switch * d). Student loss = w_det * det + w_kd * OST.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DETECTOR_LAYERS = ("backbone.stages.*", "neck.td_blocks.*", "neck.bu_blocks.*")


def distill_layer_names(model: nn.Module, patterns: Sequence[str] | None = None) -> list[str]:
    """Outermost modules matching the patterns (default: a detector's backbone stages and neck blocks)."""
    patterns = list(patterns) if patterns else list(DETECTOR_LAYERS)
    names = [n for n, _ in model.named_modules() if n and any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    matched = set(names)
    outer = [n for n in names if not any(".".join(n.split(".")[:i]) in matched for i in range(1, n.count(".") + 1))]
    if not outer:
        raise ValueError(f"distillation layers {patterns} match no module of the model")
    return outer


class FeatureTap:
    """Forward hooks that keep the latest output of named modules (``tap.features[name]``)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [model.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):  # noqa: ANN202
        def keep(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            self.features[name] = out
        return keep

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def attention_vector(feat: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H*W]: L2-normalised channel mean of F^2 (GHOST's spatial attention)."""
    return F.normalize(feat.float().pow(2).mean(dim=1).flatten(1), dim=1)


def ost_distance(f_student: torch.Tensor, f_teacher: torch.Tensor) -> torch.Tensor:
    """Per-image distance mean((v_s - v_t)^2), shape [B]."""
    return (attention_vector(f_student) - attention_vector(f_teacher)).pow(2).mean(dim=1)


def hard_gumbel_sigmoid(logits: torch.Tensor, tau: float = 1.0, noise: bool | None = None) -> torch.Tensor:
    """0/1 sample of sigmoid((logits + g1 - g2) / tau) with a straight-through gradient when ``noise``;
    the deterministic threshold logits > 0 otherwise (``noise=None``: noise only while grad is enabled)."""
    if noise is None:
        noise = torch.is_grad_enabled()
    if not noise:
        return (logits > 0).to(logits.dtype)
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    logistic = torch.log(u) - torch.log1p(-u)  # difference of two Gumbel samples = logistic noise
    soft = torch.sigmoid((logits + logistic) / tau)
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class GumbelSwitch(nn.Module):
    """One layer's Gumbel switch over projected teacher / student channel descriptors.

    ``learned=False`` (GHOST): the projections keep their random initialisation (requires_grad off, so no
    optimizer gets them); ``learned=True``: they are trained by ``OSTLoss``'s switch objective.
    """

    def __init__(self, channels: int, proj_dim: int = 128, tau: float = 1.0, learned: bool = False) -> None:
        super().__init__()
        self.proj_t = nn.Linear(channels, proj_dim)
        self.proj_s = nn.Linear(channels, proj_dim)
        self.learned = learned
        if not learned:
            self.requires_grad_(False)
        self.tau, self.scale = tau, proj_dim**-0.5

    def logits(self, f_student: torch.Tensor, f_teacher: torch.Tensor) -> torch.Tensor:
        """Gate logits [B]: scaled dot product of the projected descriptors (of detached features)."""
        d_t = self.proj_t(f_teacher.detach().float().mean(dim=(2, 3)))
        d_s = self.proj_s(f_student.detach().float().mean(dim=(2, 3)))
        return (d_t * d_s).sum(dim=1) * self.scale

    def gate(self, logits: torch.Tensor) -> torch.Tensor:
        """0/1 per decision: one Gumbel sample each in training mode, no noise in eval mode."""
        return hard_gumbel_sigmoid(logits, self.tau, noise=self.training)

    def forward(self, f_student: torch.Tensor, f_teacher: torch.Tensor) -> torch.Tensor:
        return self.gate(self.logits(f_student, f_teacher))


SCM_MODES = ("gumbel", "gumbel_learned", "gt", "off")


class OSTLoss(nn.Module):
    """Sum over paired layers of the switched per-image attention distance (see the module docstring)."""

    def __init__(self, channels: dict[str, int], scm: str = "gt", proj_dim: int = 128, tau: float = 1.0,
                 open_target: float = 0.5, open_weight: float = 4.0) -> None:
        super().__init__()
        if scm not in SCM_MODES:
            raise ValueError(f"scm must be one of {', '.join(SCM_MODES)}, got {scm!r}")
        self.scm, self.names = scm, list(channels)
        self.open_target, self.open_weight = open_target, open_weight
        self.switches = nn.ModuleList(
            GumbelSwitch(c, proj_dim, tau, learned=scm == "gumbel_learned") for c in channels.values()
        ) if scm.startswith("gumbel") else None

    def switch_objective(self, logits: torch.Tensor, gate: torch.Tensor, d: torch.Tensor, tau: float) -> torch.Tensor:
        """gumbel_learned's own loss: standardised distance (no net push to close) + the open-rate term."""
        d = d.detach()
        z = (d - d.mean()) / d.std(unbiased=False).clamp_min(1e-12) if d.numel() > 1 else torch.zeros_like(d)
        rate = torch.sigmoid(logits / tau).mean()
        return (gate * z).mean() + self.open_weight * (rate - self.open_target) ** 2

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                gt_gate: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, {"ost": unswitched mean distance, "switch_on": share of pairs distilled}); with
        gumbel_learned in training mode the loss includes the switch objective ("switch_loss")."""
        total, raw, on, own = 0.0, 0.0, 0.0, 0.0
        for i, name in enumerate(self.names):
            fs, ft = student[name], teacher[name].detach()
            d = ost_distance(fs, ft)
            if self.switches is not None:
                switch = self.switches[i]
                logits = switch.logits(fs, ft)
                gate = switch.gate(logits)
                if switch.learned and self.training:
                    objective = self.switch_objective(logits, gate, d, switch.tau)
                    total = total + objective
                    own += float(objective.detach())
            elif self.scm == "gt":
                if gt_gate is None:
                    raise ValueError("scm=gt needs the per-image gate (teacher loss < student loss)")
                gate = gt_gate.to(d)
            else:
                gate = torch.ones_like(d)
            total = total + (gate.detach() * d).mean()
            raw += float(d.detach().mean())
            on += float(gate.detach().mean())
        n = max(1, len(self.names))
        stats = {"ost": raw / n, "switch_on": on / n}
        if self.scm == "gumbel_learned" and self.training:
            stats["switch_loss"] = own / n
        return total, stats


@torch.no_grad()
def per_image_loss(loss_fn: nn.Module, out, targets) -> torch.Tensor:  # noqa: ANN001
    """Detection loss of each image alone, shape [B] (for scm=gt)."""
    from ghostq.detect.models.output import DetectorOutput, Targets

    values = []
    for b in range(out.cls_logits.shape[0]):
        one = DetectorOutput(out.cls_logits[b:b + 1].float(), out.boxes[b:b + 1].float(), out.points,
                             out.strides, out.head_type)
        tgt = Targets(targets.boxes[b:b + 1], targets.labels[b:b + 1], targets.mask[b:b + 1])
        values.append(loss_fn(one, tgt)[0])
    return torch.stack(values)


def feature_channels(model: nn.Module, names: Sequence[str], example: torch.Tensor) -> dict[str, int]:
    """Output channels of each named module, from one no-grad forward on ``example``."""
    tap = FeatureTap(model, names)
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        tap.remove()
        model.train(was)
    return {n: int(tap.features[n].shape[1]) for n in names}
