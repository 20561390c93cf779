"""The exported head: the detector plus its LogitClip and score activation, inside the graph.

``FusedHeadExport(model, clip)`` maps images [B, C_in, H, W] (float32) to
- ``scores`` [B, N, C]: the class probabilities the deployment thresholds. Sigmoid head: ``sigmoid(z')``;
  softmax head: the C foreground entries of ``softmax(z')`` over C + 1 (background dropped); with a LogitClip,
  mapped from the bounded range the clip leaves onto [0, 1] (``ghostq.detect.losses.robust``, module docstring:
  ``(sigmoid(z') - sigmoid(-d)) / (sigmoid(d) - sigmoid(-d))`` for p = inf), exactly as torch evaluation and
  predict score (``clipped_class_scores``), so thresholds mean the same and the ranking is unchanged;
- ``boxes`` [B, N, 4]: xyxy in input pixels (anchor points are constants of the traced input size),
where ``z'`` is the head's logit vector after the same LogitClip the model was trained with
(``z' = z * min(1, d / ||z||_p)`` over the class axis; p = inf: scaled so that max |z| <= d; the authors'
``official`` mode as trained). Nothing is left for a post-processing step outside the engine.

``activation=False`` exports the clipped logits instead of the scores (parity tests of the raw head).
``ood="msp"`` or ``"energy"`` adds a third output ``ood`` [B, N]: the out-of-distribution score of each anchor
(``ghostq.detect.ood``; higher = less like a known class), from the raw logits as ``postprocess`` computes it.
``half=True`` runs the network in FP16 with FP32 inputs and outputs: a Cast after the input, and the logits
and box decode in FP32 (the head decodes in FP32 already), so thresholds and pixel boxes keep their precision.
"""

from __future__ import annotations

import torch
from torch import nn

from ghostq.detect.losses.robust import LogitClip
from ghostq.detect.postprocess import class_scores


class FusedHeadExport(nn.Module):
    """Export wrapper: ``forward(images) -> (scores, boxes)``; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        clip: LogitClip | None = None,
        activation: bool = True,
        half: bool = False,
        ood: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.clip = clip
        self.activation = activation
        self.half = half
        self.ood = ood
        self.head_type = getattr(model, "head_type", "sigmoid")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.half() if self.half else images
        out = self.model(x)
        raw = out.cls_logits.float()
        if self.activation:
            scores = class_scores(raw, self.head_type, self.clip)
        else:
            scores = self.clip(raw) if self.clip is not None else raw
        if self.ood is None:
            return scores, out.boxes.float()
        from ghostq.detect.ood import ood_score

        return scores, out.boxes.float(), ood_score(raw, self.head_type, self.ood)

    def extra_repr(self) -> str:
        return f"clip={self.clip!r}, activation={self.activation}, half={self.half}, ood={self.ood!r}"
