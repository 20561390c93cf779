"""Open-set auxiliary labels: ODNL and Open-sampling (DESIGN §4), and the assignment hook for detection.

- **ODNL** (Wei et al., NeurIPS 2021): every open-set sample (an image or object of no target class) takes a
  label drawn uniformly from the C classes, afresh at every iteration; loss
  ``CE(in-distribution) + eta * CE(open-set, random labels)``.
- **Open-sampling** (Wei et al., ICML 2022): labels drawn from the complementary distribution of the
  training set's class shares ``beta_c``: ``Gamma_c = (alpha - beta_c) / sum_j (alpha - beta_j)`` with
  ``alpha = max_c beta_c + min_c beta_c`` (the most frequent class gets the least mass, the rarest the most);
  a sample labelled c is weighted ``K * Gamma_c`` (K = C classes) and the auxiliary term by ``lambda``
  (``eta`` here, default 1).

For detection (:class:`OpenSetHook`): open-set object patches are pasted into training images
(:mod:`ghostq.detect.data.open_set_paste`) and enter the targets as boxes flagged in ``Targets.open_set``
(their ``labels`` entry is a placeholder, 0). The assigner gives them anchors like any object; the hook then
rewrites those anchors: a freshly drawn label, classification weight ``eta`` (ODNL) or ``eta * K * Gamma_c``
(Open-sampling), and box weight 0 (their boxes are not learned, and they do not count in the loss's
normaliser). Their soft target ``t_hat`` is kept, so the classification target is as quality-aware as an
in-distribution positive's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from ghostq.detect.losses.assign import Assignment
from ghostq.detect.models.output import DetectorOutput, Targets

OPEN_SET_METHODS = ("odnl", "open_sampling")


def complementary_prior(class_counts: Sequence[float]) -> torch.Tensor:
    """Open-sampling's ``Gamma`` [C] from class counts (any scale): ``Gamma_c ∝ max(beta) + min(beta) - beta_c``.

    A balanced set gives the uniform distribution; counts must be >= 0 and not all 0.
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() < 1 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError(f"class_counts must be >= 0 with a positive sum, got {list(class_counts)}")
    beta = counts / counts.sum()
    gamma = beta.max() + beta.min() - beta
    if float(gamma.sum()) <= 0:  # a single class
        return torch.ones_like(beta) / beta.numel()
    return (gamma / gamma.sum()).float()


class OpenSetLabeler:
    """Draws labels (and per-sample weights) for open-set samples.

    Args:
        num_classes: C.
        method: ``odnl`` (uniform labels, weight ``eta``) or ``open_sampling`` (labels ~ Gamma, weight
            ``eta * C * Gamma_label``).
        eta: weight of the open-set term (ODNL's eta, Open-sampling's lambda).
        class_counts: training-set objects per class (Open-sampling); None means balanced.
        generator: a torch Generator for the draws (the global generator when None, which the trainer's
            checkpoints save, so a resumed run draws the same labels).
    """

    def __init__(
        self,
        num_classes: int,
        method: str = "odnl",
        eta: float = 1.0,
        class_counts: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if method not in OPEN_SET_METHODS:
            raise ValueError(f"open-set method must be one of {OPEN_SET_METHODS}, got {method!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if class_counts is not None and len(class_counts) != num_classes:
            raise ValueError(f"class_counts has {len(class_counts)} entries for {num_classes} classes")
        self.num_classes, self.method, self.eta, self.generator = num_classes, method, float(eta), generator
        if method == "odnl" or class_counts is None:
            self.prior = torch.full((num_classes,), 1.0 / num_classes)
        else:
            self.prior = complementary_prior(class_counts)

    def draw(self, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labels (int64) and their loss weights (float32), on ``device``."""
        if self.method == "odnl":
            labels = torch.randint(0, self.num_classes, (n,), generator=self.generator)
            weights = torch.full((n,), self.eta)
        else:
            labels = (
                torch.multinomial(self.prior, n, replacement=True, generator=self.generator)
                if n
                else (torch.zeros(0, dtype=torch.long))
            )
            weights = self.eta * self.num_classes * self.prior[labels]
        return labels.to(device), weights.to(device)


class OpenSetHook:
    """``DetectionLoss(assignment_hook=...)``: relabel the anchors assigned to open-set boxes (module doc).

    A batch whose targets have no ``open_set`` flags passes unchanged.
    """

    def __init__(self, labeler: OpenSetLabeler) -> None:
        self.labeler = labeler

    def open_anchors(self, a: Assignment, targets: Targets) -> torch.Tensor:
        """[B, N] bool: foreground anchors whose assigned GT is flagged open-set."""
        if targets.open_set is None:
            return torch.zeros_like(a.fg_mask)
        flags = targets.open_set.to(a.fg_mask.device).gather(1, a.gt_index.clamp_min(0))
        return a.fg_mask & flags

    def __call__(self, a: Assignment, out: DetectorOutput, targets: Targets) -> Assignment:
        sel = self.open_anchors(a, targets)
        n = int(sel.sum())
        if n == 0:
            return a
        labels, weights = self.labeler.draw(n, a.labels.device)
        new_labels, cls_w, box_w = a.labels.clone(), a.cls_weights.clone(), a.box_weights.clone()
        new_labels[sel] = labels
        cls_w[sel] = weights.to(cls_w.dtype)
        box_w[sel] = 0.0
        return replace(a, labels=new_labels, cls_weights=cls_w, box_weights=box_w)
