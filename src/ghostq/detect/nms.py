"""Exact greedy non-maximum suppression, class-wise, vectorized in torch (no torchvision).

Definition (the reference every result equals): sort the boxes by score, highest first, ties in input order
(a stable sort); walk the list; a box is kept unless a box kept before it, of the same label, overlaps it with
IoU > ``iou_threshold`` (strictly greater, as torchvision: IoU equal to the threshold does not suppress).

Algorithm: with S[i, j] = "i comes before j, same label, IoU(i, j) > t", greedy NMS keeps
``k_j = not any_i (k_i and S[i, j])``. That system has exactly one solution (k_j depends only on earlier
entries), and iterating ``k <- alive and not (S^T k)`` from all-true reaches it: after pass p the first p
entries are final, and in practice it settles after a handful of passes (the length of the longest chain of
"a suppresses b which would have suppressed c"). To bound memory and the worst case (a long chain), the
sorted boxes are processed in blocks: boxes already kept by earlier blocks remove what they suppress in the
block with one IoU product, then the iteration runs inside the block. The boxes are grouped by class first
(a stable sort, so each class stays in score order): a block then meets few classes, and only the kept boxes
of its first class can reach it from earlier blocks. IoU is computed on the original coordinates with the
arithmetic of ``boxes.box_iou`` (no per-class coordinate offset, which would cost float precision at
IoU == threshold).
"""

from __future__ import annotations

import torch

_BLOCK = 512  # sorted boxes per block: the iteration's matrix is at most _BLOCK x _BLOCK


def _iou_above(a: torch.Tensor, b: torch.Tensor, threshold: float) -> torch.Tensor:
    """``box_iou(a, b) > threshold`` ([K, 4] x [M, 4] -> bool [K, M]) with the same arithmetic as
    :func:`ghostq.detect.boxes.box_iou` (so ties at the threshold resolve identically), fewer temporaries."""
    ax1, ay1, ax2, ay2 = (a[:, i : i + 1] for i in range(4))
    bx1, by1, bx2, by2 = b.unbind(1)
    iw = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    ih = torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0)
    inter = iw.mul_(ih)
    area_a = (ax2 - ax1).clamp_(min=0) * (ay2 - ay1).clamp_(min=0)
    area_b = (bx2 - bx1).clamp_(min=0) * (by2 - by1).clamp_(min=0)
    union = (area_a + area_b).sub_(inter).clamp_(min=torch.finfo(inter.dtype).tiny)
    return inter.div_(union) > threshold


def _greedy_in_block(suppress: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Solve k = alive & ~any_i(k_i & suppress[i, :]) for a strictly upper-triangular ``suppress``."""
    sup = suppress.to(torch.float32)
    keep = alive
    for _ in range(alive.numel() + 1):  # converges in at most len passes; usually a few
        new = alive & ((keep.to(torch.float32) @ sup) == 0)
        if torch.equal(new, keep):
            return keep
        keep = new
    return keep  # pragma: no cover - unreachable: the iteration is exact within numel + 1 passes


@torch.no_grad()
def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float,
) -> torch.Tensor:
    """Class-wise greedy NMS. ``boxes`` [N, 4] xyxy, ``scores`` [N], ``labels`` [N] (int).

    Returns the int64 indices of the kept boxes, in decreasing score order (ties: input order).
    Boxes of different labels never suppress each other.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4], got {list(boxes.shape)}")
    if scores.shape != boxes.shape[:1] or labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"scores {list(scores.shape)} and labels {list(labels.shape)} must be [{boxes.shape[0]}]"
        )
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    by_score = torch.sort(scores, descending=True, stable=True).indices
    # Group the classes (stable: each class stays in score order), so a block holds few classes and the
    # boxes kept by earlier blocks that can touch it are those of its first class only.
    perm = by_score[torch.sort(labels[by_score], stable=True).indices]
    boxes, labels = boxes[perm], labels[perm]
    keep = torch.zeros(n, dtype=torch.bool, device=device)
    kept_boxes, kept_labels = boxes[:0], labels[:0]
    for start in range(0, n, _BLOCK):
        end = min(start + _BLOCK, n)
        blk_boxes, blk_labels = boxes[start:end], labels[start:end]
        alive = torch.ones(end - start, dtype=torch.bool, device=device)
        prior = kept_labels == blk_labels[0]
        if bool(prior.any()):
            hit = _iou_above(kept_boxes[prior], blk_boxes, iou_threshold) & (blk_labels == blk_labels[0])
            alive = ~hit.any(dim=0)
        suppress = _iou_above(blk_boxes, blk_boxes, iou_threshold) & (blk_labels[:, None] == blk_labels)
        suppress = suppress.triu_(diagonal=1) & alive[:, None]
        blk_keep = _greedy_in_block(suppress, alive)
        keep[start:end] = blk_keep
        kept_boxes = torch.cat((kept_boxes, blk_boxes[blk_keep]))
        kept_labels = torch.cat((kept_labels, blk_labels[blk_keep]))
    kept = perm[keep]
    rank = torch.empty_like(by_score)
    rank[by_score] = torch.arange(n, device=device)
    return kept[torch.sort(rank[kept]).indices]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-agnostic greedy NMS; same contract as :func:`batched_nms` with one label for all boxes."""
    labels = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    return batched_nms(boxes, scores, labels, iou_threshold)
