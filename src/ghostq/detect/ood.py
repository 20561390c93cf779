"""Out-of-distribution scores of detections (DESIGN §4): is a detected object of a class the model knows?

Convention: **higher = more likely out-of-distribution** (an anomaly score; threshold it to flag objects).
Scores use the raw class logits of the anchor that produced a detection, over the C object classes only (for a
softmax C + 1 head the background logit is dropped: the detection already says "an object is here"; the
question is whether it is one of the known classes).

- ``msp``: ``1 - max_c p_c``, maximum softmax probability (Hendrycks & Gimpel, ICLR 2017). Softmax head:
  ``p = softmax(z_1..z_C)``; sigmoid head: ``p_c = sigmoid(z_c)`` (each class is its own binary problem).
- ``energy``: free energy (Liu et al., NeurIPS 2020) at temperature T. Softmax head:
  ``E = -T logsumexp(z / T)``; sigmoid head, the multi-label form (Wang et al., NeurIPS 2021, JointEnergy):
  ``E = -T sum_c log(1 + exp(z_c / T))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OOD_SCORES = ("msp", "energy")


def msp_score(logits: torch.Tensor, head: str) -> torch.Tensor:
    """``1 - max_c p_c`` over the C object classes: [...] from logits [..., K]."""
    z = _object_logits(logits, head)
    p = torch.sigmoid(z) if head == "sigmoid" else torch.softmax(z, dim=-1)
    return 1.0 - p.amax(dim=-1)


def energy_score(logits: torch.Tensor, head: str, temperature: float = 1.0) -> torch.Tensor:
    """Free energy over the C object classes (higher = more OOD): [...] from logits [..., K]."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _object_logits(logits, head) / temperature
    if head == "sigmoid":
        return -temperature * F.softplus(z).sum(dim=-1)
    return -temperature * torch.logsumexp(z, dim=-1)


def ood_score(logits: torch.Tensor, head: str, method: str = "energy", temperature: float = 1.0) -> torch.Tensor:
    """The OOD score ``method`` (``msp`` or ``energy``) of logits [..., K]: [...]."""
    if method == "msp":
        return msp_score(logits, head)
    if method == "energy":
        return energy_score(logits, head, temperature)
    raise ValueError(f"unknown OOD score {method!r}; choose one of {', '.join(OOD_SCORES)}")


def _object_logits(logits: torch.Tensor, head: str) -> torch.Tensor:
    if head == "sigmoid":
        return logits.float()
    if head == "softmax":
        return logits.float()[..., :-1]
    raise ValueError(f"head must be 'sigmoid' or 'softmax', got {head!r}")
