"""Noise-robust classification losses and logit transforms (DESIGN §4), for both detector heads.

Logit transforms (``DetectionLoss(logit_transform=...)``, applied before any base loss; LogitClip also at
inference, see below):

- :class:`LogitClip` (Wei et al., ICML 2023): ``z' = z * min(1, d / ||z||_p)`` (``mode="continuous"``), or
  the authors' code (``mode="official"``, threshold t = 1/d): ``z' = z / (t ||z||_p)`` when ``||z||_p > t``,
  else ``z``, which jumps at ``||z||_p = t`` unless d = 1. With ``||z||_p <= d`` every logit difference is at
  most ``2^(1-1/p) d``, so CE on clipped logits is at most ``log(1 + (K-1) exp(2^(1-1/p) d))``.
  Softmax C + 1 head: p = 2, as in the paper. Sigmoid head: p = inf (the largest |logit| <= d); an L2 bound
  over C independent logits would cap how negative *all* background logits can be at once.
- :class:`LogitNorm` (Wei et al., ICML 2022): ``z / (tau ||z||_2)``, tau ~ 0.04 for ~10 classes.

LogitClip at inference (torch evaluation, predict and the exported head alike: :func:`clipped_class_scores`):
the clip stays, and the bounded probability range ``[lo, hi]`` it leaves is mapped linearly onto [0, 1],
``s' = clamp((s - lo) / (hi - lo), 0, 1)``, so that score thresholds mean what they mean without the clip (a
p = inf sigmoid head otherwise scores every background anchor at least ``sigmoid(-d)``: 0.119 at d = 2) while the
ranking is unchanged. ``r`` is the largest norm the clip leaves: d (continuous), ``max(d, 1/d)`` (official).
- Sigmoid head (p = inf or 2: either lets one logit reach +-r): ``lo = sigmoid(-r)``, ``hi = sigmoid(r)``, the
  exact range; the map is strictly increasing on it.
- Softmax head (K = C + 1, background last): ``hi`` is the exact maximum of a class probability (the class at
  the top of the ball, every other logit equal) and ``lo`` the class probability of the most background-like
  vector (background at the top, the C foreground logits equal): with the gap ``g`` between the two levels
  (p = inf: 2r; p = 2: ``r sqrt(K / (K - 1))``), ``hi = 1 / (1 + (K-1) e^-g)`` and ``lo = 1 / (e^g + K - 1)``.
  Lower foreground probabilities exist only where another *class* dominates the anchor; they map to 0, below any
  threshold, and the ranking of every score above ``lo`` is unchanged. Without the map a p = 2, d = 2 softmax
  head over 10 classes scores its most certain background anchor 0.055 for every class, above a 0.05 threshold.

Losses (registered by name, signature of :mod:`ghostq.detect.losses.cls_losses`). Every loss takes the
assignment's *soft* target: a target distribution ``y`` that puts ``t_hat`` on the assigned class (and, for a
softmax head, ``1 - t_hat`` on background; a background anchor's target is background alone). For hard
targets each reduces to the paper's formula.

- Softmax head (K = C + 1): the formulas act on the distribution ``p = softmax(z)`` over K classes.
- Sigmoid head (K = C): each class logit is its own two-class problem {class, not class} with target
  ``(y_c, 1 - y_c)`` and ``p = (sigmoid(z_c), 1 - sigmoid(z_c))``; the per-class terms are returned [B, N, C]
  and summed by the caller (so GCE / SCE / NCE+RCE generalise BCE as they generalise CE).

- ``gce`` (Zhang & Sabuncu, NeurIPS 2018): ``sum_k y_k (1 - p_k^q) / q``, q = 0.7; q -> 0 gives CE, q = 1 MAE.
- ``sce`` (Wang et al., ICCV 2019): ``alpha CE(y, p) + beta RCE``, ``RCE = -sum_k p_k log(max(y_k, 1e-4))``,
  alpha 0.1, beta 1. The paper writes A = log 0 := -4, i.e. log10(1e-4); the authors' code clamps y at 1e-4
  and takes the natural log (A = ln 1e-4 ~ -9.21). We follow the code; ``log_clamp`` changes the clamp.
- ``nce_rce`` (Ma et al., ICML 2020): ``alpha CE(y, p) / sum_k(-log p_k) + beta RCE``, alpha = beta = 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ghostq.detect.losses.cls_losses import register_cls_loss, soft_one_hot

P_NORMS = (2, math.inf)
CLIP_MODES = ("continuous", "official")
_EPS = 1e-7


def _norm(z: torch.Tensor, p: float) -> torch.Tensor:
    if p == math.inf:
        return z.abs().amax(dim=-1, keepdim=True)
    return z.norm(p=p, dim=-1, keepdim=True)


class LogitClip:
    """Clip each logit vector (last axis) to p-norm ``bound``; see the module docstring.

    Args:
        bound: d = 1 / tau of the paper (> 0).
        p: 2 (softmax head) or ``math.inf`` (sigmoid head).
        mode: ``continuous`` (default) or ``official`` (the authors' code, threshold 1 / bound).
    """

    def __init__(self, bound: float, p: float = 2, mode: str = "continuous") -> None:
        if not bound > 0:
            raise ValueError(f"LogitClip bound must be > 0, got {bound}")
        if float(p) not in P_NORMS:
            raise ValueError(f"LogitClip p must be 2 or inf, got {p}")
        if mode not in CLIP_MODES:
            raise ValueError(f"LogitClip mode must be one of {CLIP_MODES}, got {mode!r}")
        self.bound, self.p, self.mode = float(bound), float(p), mode

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        norm = _norm(z, self.p)
        if self.mode == "continuous":
            return z * (self.bound / norm.clamp_min(_EPS)).clamp(max=1.0)
        t = 1.0 / self.bound  # official: rescale to norm 1/t = bound once the norm exceeds t
        return torch.where(norm > t, z / (t * norm.clamp_min(_EPS)), z)

    def radius(self) -> float:
        """The largest p-norm a clipped vector has: d (continuous), ``max(d, 1/d)`` (official: a norm up to
        1/d is left as it is)."""
        return self.bound if self.mode == "continuous" else max(self.bound, 1.0 / self.bound)

    def score_range(self, head: str, num_outputs: int) -> tuple[float, float]:
        """``(lo, hi)`` of a class probability that inference maps onto [0, 1] (module docstring).

        Args:
            head: ``sigmoid`` or ``softmax``.
            num_outputs: logits per anchor, K (C, or C + 1 for softmax with background last).
        """
        r = self.radius()
        if head == "sigmoid":
            return 1.0 / (1.0 + math.exp(r)), 1.0 / (1.0 + math.exp(-r))
        if head != "softmax":
            raise ValueError(f"head must be 'sigmoid' or 'softmax', got {head!r}")
        if num_outputs < 2:
            raise ValueError(f"a softmax head has C + 1 >= 2 logits, got {num_outputs}")
        k = num_outputs
        gap = 2.0 * r if self.p == math.inf else r * math.sqrt(k / (k - 1))
        return 1.0 / (math.exp(gap) + k - 1), 1.0 / (1.0 + (k - 1) * math.exp(-gap))

    def rescale_scores(self, scores: torch.Tensor, head: str, num_outputs: int) -> torch.Tensor:
        """Class probabilities of clipped logits mapped onto [0, 1]: ``clamp((s - lo) / (hi - lo), 0, 1)``."""
        lo, hi = self.score_range(head, num_outputs)
        return ((scores - lo) * (1.0 / (hi - lo))).clamp(0.0, 1.0)

    def max_logit_gap(self) -> float:
        """Upper bound of ``z'_i - z'_j`` after clipping (continuous mode): ``2^(1-1/p) d``."""
        return 2.0 ** (1.0 - 1.0 / self.p) * self.bound

    def __repr__(self) -> str:
        return f"LogitClip(bound={self.bound}, p={self.p}, mode={self.mode!r})"


class LogitNorm:
    """``z / (tau ||z||_2)`` over the last axis (LogitNorm; tau 0.04 for ~10 classes)."""

    def __init__(self, tau: float = 0.04) -> None:
        if not tau > 0:
            raise ValueError(f"LogitNorm tau must be > 0, got {tau}")
        self.tau = float(tau)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return z / (self.tau * z.norm(p=2, dim=-1, keepdim=True).clamp_min(_EPS))

    def __repr__(self) -> str:
        return f"LogitNorm(tau={self.tau})"


# ----------------------------------------------------------------------------------------- targets
def target_distribution(
    target_labels: torch.Tensor, target_scores: torch.Tensor, fg_mask: torch.Tensor, num_classes: int, head: str
) -> torch.Tensor:
    """The target ``y`` of every anchor: [B, N, C] per-class binary targets (sigmoid head) or a [B, N, C + 1]
    distribution (softmax head: ``t_hat`` on the class, ``1 - t_hat`` on background)."""
    q = target_scores.float()
    if head == "sigmoid":
        return soft_one_hot(target_labels, q, num_classes)
    y = F.one_hot(target_labels.clamp(0, num_classes), num_classes + 1).float()
    y = y * torch.where(fg_mask, q, torch.ones_like(q))[..., None]
    y[..., num_classes] += torch.where(fg_mask, 1.0 - q, torch.zeros_like(q))
    return y


def _sigmoid_pair(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """log p and log(1 - p) of a sigmoid head, and the targets y and 1 - y, elementwise [B, N, C]."""
    return F.logsigmoid(z), F.logsigmoid(-z), y, 1.0 - y


def _rce(p_terms: list[torch.Tensor], y_terms: list[torch.Tensor], log_clamp: float) -> torch.Tensor:
    """Reverse CE ``-sum_k p_k log(max(y_k, log_clamp))`` over the given (p, y) pairs."""
    return -sum(p * torch.log(y.clamp_min(log_clamp)) for p, y in zip(p_terms, y_terms, strict=True))


def _head_of(logits: torch.Tensor, num_classes: int) -> str:
    return "softmax" if logits.shape[-1] == num_classes + 1 else "sigmoid"


# Multi-class forms on logits [..., K] and a target distribution y [..., K] (rows summing to 1), reduced over
# the last axis: the softmax head's losses, and plain classifiers' (benchmarks/robust_digits.py).
def softmax_gce(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """``sum_k y_k (1 - p_k^q) / q`` with ``p = softmax(logits)``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return (y * (1 - torch.exp(q * logp))).sum(-1) / q


def softmax_sce(
    logits: torch.Tensor, y: torch.Tensor, alpha: float = 0.1, beta: float = 1.0, log_clamp: float = 1e-4
) -> torch.Tensor:
    """``alpha CE(y, p) + beta RCE``, ``RCE = -sum_k p_k log(max(y_k, log_clamp))``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return alpha * -(y * logp).sum(-1) + beta * _rce([logp.exp()], [y], log_clamp).sum(-1)


def softmax_nce_rce(
    logits: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, beta: float = 1.0, log_clamp: float = 1e-4
) -> torch.Tensor:
    """``alpha CE(y, p) / sum_k(-log p_k) + beta RCE``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    nce = (y * logp).sum(-1) / logp.sum(-1)
    return alpha * nce + beta * _rce([logp.exp()], [y], log_clamp).sum(-1)


@register_cls_loss("gce", heads=("sigmoid", "softmax"))
def gce(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
    q: float = 0.7,
) -> torch.Tensor:
    """Generalized CE ``sum_k y_k (1 - p_k^q) / q``: [B, N, C] (sigmoid) or [B, N] (softmax)."""
    z = logits.float()
    head = _head_of(z, num_classes)
    y = target_distribution(target_labels, target_scores, fg_mask, num_classes, head)
    if head == "sigmoid":
        lp, lnp, y1, y0 = _sigmoid_pair(z, y)
        return (y1 * (1 - torch.exp(q * lp)) + y0 * (1 - torch.exp(q * lnp))) / q
    return softmax_gce(z, y, q)


@register_cls_loss("sce", heads=("sigmoid", "softmax"))
def sce(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_clamp: float = 1e-4,
) -> torch.Tensor:
    """Symmetric CE ``alpha CE + beta RCE``: [B, N, C] (sigmoid) or [B, N] (softmax)."""
    z = logits.float()
    head = _head_of(z, num_classes)
    y = target_distribution(target_labels, target_scores, fg_mask, num_classes, head)
    if head == "sigmoid":
        lp, lnp, y1, y0 = _sigmoid_pair(z, y)
        ce_term = -(y1 * lp + y0 * lnp)
        rce = _rce([lp.exp(), lnp.exp()], [y1, y0], log_clamp)
        return alpha * ce_term + beta * rce
    return softmax_sce(z, y, alpha, beta, log_clamp)


@register_cls_loss("nce_rce", heads=("sigmoid", "softmax"))
def nce_rce(
    logits: torch.Tensor,
    target_labels: torch.Tensor,
    target_scores: torch.Tensor,
    fg_mask: torch.Tensor,
    num_classes: int,
    alpha: float = 1.0,
    beta: float = 1.0,
    log_clamp: float = 1e-4,
) -> torch.Tensor:
    """Normalized CE + reverse CE (Active-Passive Loss): [B, N, C] (sigmoid) or [B, N] (softmax)."""
    z = logits.float()
    head = _head_of(z, num_classes)
    y = target_distribution(target_labels, target_scores, fg_mask, num_classes, head)
    if head == "sigmoid":
        lp, lnp, y1, y0 = _sigmoid_pair(z, y)
        nce = (y1 * lp + y0 * lnp) / (lp + lnp)  # both negative: CE(y, p) / sum_k(-log p_k)
        rce = _rce([lp.exp(), lnp.exp()], [y1, y0], log_clamp)
        return alpha * nce + beta * rce
    return softmax_nce_rce(z, y, alpha, beta, log_clamp)


def clipped_ce_bound(num_logits: int, clip: LogitClip) -> float:
    """Upper bound of CE (hard target) on logits clipped by ``clip``: ``log(1 + (K - 1) exp(gap))``."""
    return math.log1p((num_logits - 1) * math.exp(clip.max_logit_gap()))


def clipped_class_scores(logits: torch.Tensor, head: str, clip: LogitClip | None) -> torch.Tensor:
    """Class probabilities [..., C] of logits [..., K] as inference reports them: without a clip, sigmoid (K = C)
    or softmax's foreground part (K = C + 1); with one, of the clipped logits, mapped onto [0, 1] (module
    docstring). Torch evaluation, predict and the exported head all score through here, so one checkpoint gives
    the same scores everywhere."""
    z = clip(logits) if clip is not None else logits
    if head == "sigmoid":
        scores = z.sigmoid()
    elif head == "softmax":
        scores = z.softmax(dim=-1)[..., :-1]
    else:
        raise ValueError(f"head must be 'sigmoid' or 'softmax', got {head!r}")
    return clip.rescale_scores(scores, head, logits.shape[-1]) if clip is not None else scores
