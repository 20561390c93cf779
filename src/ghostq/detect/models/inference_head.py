"""The inference head: detector outputs -> (scores, boxes), built from the model spec in one place.

``InferenceHead(model, spec)`` maps images [B, C_in, H, W] (float32) to
- ``scores`` [B, N, C]: the class probabilities deployment thresholds. Sigmoid head: ``sigmoid(z')``;
  softmax head: the C foreground entries of ``softmax(z')`` over C + 1 (background dropped); with the spec's
  LogitClip, mapped from the bounded range the clip leaves onto [0, 1]
  (``ghostq.detect.losses.robust.clipped_class_scores``), so thresholds keep their meaning and the ranking is
  the one training shaped;
- ``boxes`` [B, N, 4]: xyxy in input pixels,
where ``z'`` is the logit vector after the LogitClip the model was trained with. Evaluation, predict on a
checkpoint, the torch runtime and the ONNX export all run this module, so one model scores alike everywhere.

``activation=False`` returns the clipped logits instead of the scores (parity tests of the raw head).
``ood="msp"`` or ``"energy"`` adds a third output ``ood`` [B, N] from the raw logits (``ghostq.detect.ood``).
``half=True`` runs the network in FP16 with FP32 inputs and outputs (scores and box decode stay FP32).
"""

from __future__ import annotations

import torch
from torch import nn

from ghostq.core.spec import ModelSpec
from ghostq.detect.losses.robust import LogitClip, clipped_class_scores
from ghostq.detect.models.from_spec import check_model_matches


def logit_clip_of(spec: ModelSpec) -> LogitClip | None:
    """The LogitClip the spec's model was trained with, or None."""
    c = spec.logit_clip
    return None if c is None else LogitClip(c.bound, p=c.p, mode=c.mode)


class InferenceHead(nn.Module):
    """``forward(images) -> (scores, boxes[, ood])`` of ``model`` as its ``spec`` says; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        activation: bool = True,
        half: bool = False,
        ood: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"InferenceHead needs a ModelSpec, got {type(spec).__name__}")
        check_model_matches(model, spec)
        self.model = model
        self.spec = spec
        self.clip = logit_clip_of(spec)
        self.activation = activation
        self.half = half
        self.ood = ood

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images.half() if self.half else images)
        raw = out.cls_logits.float()
        if self.activation:
            scores = clipped_class_scores(raw, self.spec.head, self.clip)
        else:
            scores = self.clip(raw) if self.clip is not None else raw
        if self.ood is None:
            return scores, out.boxes.float()
        from ghostq.detect.ood import ood_score

        return scores, out.boxes.float(), ood_score(raw, self.spec.head, self.ood)

    def extra_repr(self) -> str:
        return f"clip={self.clip!r}, activation={self.activation}, half={self.half}, ood={self.ood!r}"
