"""What every ghostq detector returns, and the training targets it is scored against.

The contract between models (ghostq.detect.models), losses and assignment (ghostq.detect.losses),
post-processing (ghostq.detect.postprocess) and export: anchor points of all levels flattened into one axis N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DetectorOutput:
    """Raw head outputs, all levels concatenated (N = sum of H_l * W_l)."""

    cls_logits: torch.Tensor  # [B, N, K]; K = C (sigmoid head) or C + 1 (softmax head, index C = background)
    boxes: torch.Tensor  # [B, N, 4] decoded xyxy in input-image pixels
    points: torch.Tensor  # [N, 2] anchor point centres (x, y) in input pixels
    strides: torch.Tensor  # [N] stride of each point's level
    head_type: str = "sigmoid"  # "sigmoid" (K = C) or "softmax" (K = C + 1): how to read cls_logits


@dataclass
class Targets:
    """Ground truth of a batch, padded to M boxes per image."""

    boxes: torch.Tensor  # [B, M, 4] xyxy in input-image pixels (after letterbox / augmentation)
    labels: torch.Tensor  # [B, M] int64 0-based class ids
    mask: torch.Tensor  # [B, M] bool: True for a real, non-ignored box; padding and ignore boxes are False
    # [B, M] bool or None: True for an open-set object (no target class; its label is a placeholder 0), pasted
    # for ODNL / Open-sampling (ghostq.detect.losses.open_set); None when the batch has none
    open_set: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Targets:
        """The same targets on ``device``."""
        flags = self.open_set.to(device) if self.open_set is not None else None
        return Targets(self.boxes.to(device), self.labels.to(device), self.mask.to(device), flags)
