"""GQSD's distillation term: OST (one-to-one self-teaching) with SCM (the switch), on paired layers.

Teacher = the trained FP model (frozen, eval mode); student = its quantized copy. Teacher layer l is paired
with student layer l (same name, same shapes). Per layer and image (GHOST):
    v = L2-normalise(flatten(mean over channels of F^2))        (spatial attention vector)
    d = mean((v_s - v_t)^2)
The switch decides per (image, layer) whether the pair is distilled:
    gumbel: channel descriptors (global average pool) of teacher and student, projected to ``proj_dim``,
            scaled dot product -> hard Gumbel-sigmoid (straight-through) -> 0/1; projections trained
            (GHOST's code never trains them, an oversight);
    gt:     per image, 1 where the teacher's detection loss on that image is lower than the student's
            (the abstract's "reduce wrong guidance", made explicit), for every layer;
    off:    always 1.
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


def hard_gumbel_sigmoid(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """0/1 sample of sigmoid((logits + g1 - g2) / tau) with a straight-through gradient (training);
    the deterministic threshold logits > 0 in eval mode."""
    if not torch.is_grad_enabled():
        return (logits > 0).to(logits.dtype)
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    noise = torch.log(u) - torch.log1p(-u)  # difference of two Gumbel samples = logistic noise
    soft = torch.sigmoid((logits + noise) / tau)
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class GumbelSwitch(nn.Module):
    """One layer's learned switch: projections of the teacher / student channel descriptors."""

    def __init__(self, channels: int, proj_dim: int = 128, tau: float = 1.0) -> None:
        super().__init__()
        self.proj_t = nn.Linear(channels, proj_dim)
        self.proj_s = nn.Linear(channels, proj_dim)
        self.tau, self.scale = tau, proj_dim**-0.5

    def forward(self, f_student: torch.Tensor, f_teacher: torch.Tensor) -> torch.Tensor:
        d_t = self.proj_t(f_teacher.float().mean(dim=(2, 3)))
        d_s = self.proj_s(f_student.float().mean(dim=(2, 3)))
        return hard_gumbel_sigmoid((d_t * d_s).sum(dim=1) * self.scale, self.tau)


class OSTLoss(nn.Module):
    """Sum over paired layers of the switched per-image attention distance (see the module docstring)."""

    def __init__(self, channels: dict[str, int], scm: str = "gt", proj_dim: int = 128, tau: float = 1.0) -> None:
        super().__init__()
        if scm not in ("gumbel", "gt", "off"):
            raise ValueError(f"scm must be gumbel, gt or off, got {scm!r}")
        self.scm, self.names = scm, list(channels)
        self.switches = nn.ModuleList(
            GumbelSwitch(c, proj_dim, tau) for c in channels.values()) if scm == "gumbel" else None

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                gt_gate: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, {"ost": unswitched mean distance, "switch_on": share of pairs distilled})."""
        total, raw, on = 0.0, 0.0, 0.0
        for i, name in enumerate(self.names):
            fs, ft = student[name], teacher[name].detach()
            d = ost_distance(fs, ft)
            if self.scm == "gumbel":
                gate = self.switches[i](fs, ft)
            elif self.scm == "gt":
                if gt_gate is None:
                    raise ValueError("scm=gt needs the per-image gate (teacher loss < student loss)")
                gate = gt_gate.to(d)
            else:
                gate = torch.ones_like(d)
            total = total + (gate * d).mean()
            raw += float(d.detach().mean())
            on += float(gate.detach().mean())
        n = max(1, len(self.names))
        return total, {"ost": raw / n, "switch_on": on / n}


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
