"""Task-aligned label assignment (TOOD, Feng et al., ICCV 2021; YOLOv8's and PP-YOLOE's TaskAlignedAssigner).

For every ground-truth box (GT) of an image:

1. **Candidates.** Anchor points strictly inside the GT box, united with the points whose centre lies in a
   square of half-side ``center_radius * stride`` around the GT centre (the YOLOX centre prior). The centre
   prior matters for the small objects of remote sensing: a 6 x 12 px vehicle may contain no point of the
   stride-8/16/32 grids at all, so with "inside the box" alone it would never be learned. If a GT still has no
   candidate (``center_radius=0``, or a centre outside the grid), the nearest point of every level becomes
   its candidate.
2. **Alignment metric** ``t = s^alpha * u^beta``: ``s`` is the predicted probability of the GT's class at the
   point (sigmoid probability, or the softmax probability for a softmax head), ``u`` the IoU of the point's
   predicted box with the GT. Predictions are detached: the assignment is a target, not part of the graph.
3. **Top-k.** The ``topk`` candidates with the largest ``t`` become positives. Ties among uninformative
   metrics (``t`` of about 1e-9 or less, e.g. boxes that do not overlap the GT at the start of training) are
   broken by closeness to the GT centre, so the centre prior decides when the predictions cannot.
4. **One GT per anchor.** An anchor selected by several GTs keeps the one whose box it overlaps most (IoU).
   A GT left without positives by this step takes back its best-ranked candidate, provided that anchor is
   unassigned or its owner keeps at least one other positive (a few rounds, one anchor per owner per round).
   So every valid GT gets at least one positive, unless GTs outnumber the candidates they share (exact
   duplicate boxes; crowds of tiny objects with ``center_radius=0``).
5. **Soft targets.** ``t_hat = t / max_t(GT) * max_iou(GT)`` over the GT's positives: the best-aligned
   anchor of a GT gets the GT's best IoU as its classification target, the others proportionally less.

Everything is vectorized over the batch, with GTs padded to M per image (``mask`` marks the real ones). The
cost is O(B * M * N) memory; batches are processed in chunks so that one chunk stays under
``max_chunk_elements`` elements of that size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ghostq.detect.boxes import bbox_iou

# Metrics at or below this are uninformative (YOLOv8's eps); below it the centre prior orders candidates.
_TIE_EPS = 1e-9
# A point is inside a box when its distance to every side exceeds this (pixels; YOLOv8's value).
_INSIDE_EPS = 1e-9
# Rounds of orphan rescue: a second round serves the GTs whose first choice another orphan took.
_RESCUE_ROUNDS = 4


@dataclass
class Assignment:
    """Per-anchor targets for one batch (B images, N anchor points).

    Extension point: a hook may rewrite ``labels``, ``scores``, ``fg_mask``, ``cls_weights`` and
    ``box_weights`` before the losses run (see ``DetectionLoss(assignment_hook=...)``); ``gt_index`` maps each
    anchor back to the GT it was assigned, e.g. to find the anchors of open-set objects.
    """

    labels: torch.Tensor  # [B, N] int64 class id of a foreground anchor; num_classes (background) otherwise
    boxes: torch.Tensor  # [B, N, 4] xyxy box of the assigned GT (zeros for background)
    scores: torch.Tensor  # [B, N] float soft classification target t_hat in [0, 1] (0 for background)
    fg_mask: torch.Tensor  # [B, N] bool: anchor assigned to a GT
    gt_index: torch.Tensor  # [B, N] int64 index of the assigned GT along M; -1 for background
    cls_weights: torch.Tensor  # [B, N] float weight of each anchor's classification loss (ones by default)
    box_weights: torch.Tensor  # [B, N] float weight of each anchor's box loss (t_hat on foreground, else 0)

    @property
    def num_fg(self) -> int:
        return int(self.fg_mask.sum())


class TaskAlignedAssigner:
    """Assigns GT boxes to anchor points by the task-alignment metric; see the module docstring.

    Args:
        num_classes: C, the number of object classes (background excluded).
        topk: positives per GT before conflicts are resolved (13 in TOOD / PP-YOLOE, 10 in YOLOv8).
        alpha: exponent of the classification score in the metric (1.0 in TOOD / PP-YOLOE, 0.5 in YOLOv8).
        beta: exponent of the IoU in the metric (6.0).
        center_radius: half-side, in strides, of the square around a GT centre whose points are candidates
            too; 0 restricts candidates to points inside the box (YOLOv8), with the nearest-point fallback.
        max_chunk_elements: upper bound on B_chunk * M * N per chunk of the batch (memory bound).
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 13,
        alpha: float = 1.0,
        beta: float = 6.0,
        center_radius: float = 2.5,
        max_chunk_elements: int = 1 << 25,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if center_radius < 0:
            raise ValueError(f"center_radius must be >= 0, got {center_radius}")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.center_radius = center_radius
        self.max_chunk_elements = max_chunk_elements

    @torch.no_grad()
    def __call__(
        self,
        scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> Assignment:
        """Assign one batch.

        Args:
            scores: [B, N, C] predicted class probabilities (background column of a softmax head removed).
            pred_boxes: [B, N, 4] predicted xyxy boxes in pixels.
            points: [N, 2] anchor centres (x, y); strides: [N] stride of each point's level.
            gt_boxes: [B, M, 4] xyxy; gt_labels: [B, M] int64 in [0, C) where valid; gt_mask: [B, M] bool.
        """
        b, n, c = scores.shape
        if c != self.num_classes:
            raise ValueError(f"scores have {c} classes, the assigner was built for {self.num_classes}")
        gt_mask = gt_mask.bool()
        m = gt_boxes.shape[1]
        if m == 0 or not bool(gt_mask.any()):
            return self._background(b, n, scores.device, pred_boxes.dtype)
        bad = gt_labels[gt_mask]
        if bool(((bad < 0) | (bad >= c)).any()):
            raise ValueError(f"GT labels must lie in [0, {c}); got {sorted(set(bad.tolist()))}")
        chunk = max(1, self.max_chunk_elements // max(1, m * n))
        parts = [
            self._assign(
                scores[i : i + chunk].float(),
                pred_boxes[i : i + chunk].float(),
                points.float(),
                strides.float(),
                gt_boxes[i : i + chunk].float(),
                gt_labels[i : i + chunk].long(),
                gt_mask[i : i + chunk],
            )
            for i in range(0, b, chunk)
        ]
        if len(parts) == 1:
            return parts[0]
        return Assignment(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Assignment)}
        )

    def _background(self, b: int, n: int, device: torch.device, dtype: torch.dtype) -> Assignment:
        zeros = torch.zeros(b, n, device=device, dtype=dtype)
        return Assignment(
            labels=torch.full((b, n), self.num_classes, device=device, dtype=torch.long),
            boxes=torch.zeros(b, n, 4, device=device, dtype=dtype),
            scores=zeros,
            fg_mask=torch.zeros(b, n, device=device, dtype=torch.bool),
            gt_index=torch.full((b, n), -1, device=device, dtype=torch.long),
            cls_weights=torch.ones(b, n, device=device, dtype=dtype),
            box_weights=zeros.clone(),
        )

    def _candidates(
        self, points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, gt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate mask [B, M, N] and centre closeness prior [B, M, N] in (0, 1]."""
        px, py = points[:, 0], points[:, 1]  # [N]
        x1, y1, x2, y2 = (gt_boxes[..., i, None] for i in range(4))  # [B, M, 1]
        inside = torch.stack((px - x1, py - y1, x2 - px, y2 - py), dim=-1).amin(-1) > _INSIDE_EPS
        dx = (px - (x1 + x2) / 2).abs() / strides  # [B, M, N] distance to the GT centre, in strides
        dy = (py - (y1 + y2) / 2).abs() / strides
        cand = inside
        if self.center_radius > 0:
            cand = cand | ((dx < self.center_radius) & (dy < self.center_radius))
        cand = cand & gt_mask[..., None]
        dist2 = dx.square() + dy.square()
        lonely = gt_mask & ~cand.any(-1)  # [B, M]
        if bool(lonely.any()):
            for s in torch.unique(strides):
                d = dist2.masked_fill(strides != s, float("inf"))
                nearest = torch.zeros_like(cand).scatter_(-1, d.argmin(-1, keepdim=True), True)
                cand = cand | (nearest & lonely[..., None])
        return cand, 1.0 / (1.0 + dist2)

    def _assign(
        self,
        scores: torch.Tensor,
        pred_boxes: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> Assignment:
        b, n, _ = scores.shape
        m = gt_boxes.shape[1]
        cand, prior = self._candidates(points, strides, gt_boxes, gt_mask)

        labels = gt_labels.clamp(0, self.num_classes - 1)  # padded rows may hold anything
        s = scores.gather(2, labels[:, None, :].expand(b, n, m)).transpose(1, 2)  # [B, M, N]
        overlaps = bbox_iou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :], kind="iou")  # [B, M, N]
        overlaps = overlaps.clamp(0, 1)
        metric = (s.clamp(0, 1).pow(self.alpha) * overlaps.pow(self.beta)).masked_fill(~cand, 0)

        # Top-k among candidates; the prior only orders candidates whose metric is uninformative.
        key = (metric + _TIE_EPS * prior).masked_fill(~cand, -1.0)
        top = key.topk(min(self.topk, n), dim=-1).indices
        pos = torch.zeros_like(cand).scatter_(-1, top, True) & cand  # [B, M, N]

        # An anchor claimed by several GTs keeps the one it overlaps most.
        if bool((pos.sum(1) > 1).any()):
            best = overlaps.masked_fill(~pos, -1.0).argmax(1, keepdim=True)  # [B, 1, N]
            pos = pos & (torch.arange(m, device=pos.device)[None, :, None] == best)

        for _ in range(_RESCUE_ROUNDS):
            pos, rescued = self._rescue_orphans(pos, key, cand, gt_mask)
            if not rescued:
                break

        fg = pos.any(1)  # [B, N]
        gt_idx = pos.to(torch.uint8).argmax(1)  # [B, N]; one GT per anchor from here on
        metric = metric * pos
        max_metric = metric.amax(-1, keepdim=True)
        max_iou = (overlaps * pos).amax(-1, keepdim=True)
        ratio = torch.where(
            max_metric > 0, metric / max_metric.clamp_min(torch.finfo(metric.dtype).tiny), 0.0
        )
        t_hat = (ratio * max_iou).amax(1)  # [B, N]

        target_labels = torch.where(fg, gt_labels.gather(1, gt_idx), self.num_classes)
        target_boxes = gt_boxes.gather(1, gt_idx[..., None].expand(b, n, 4)) * fg[..., None]
        return Assignment(
            labels=target_labels,
            boxes=target_boxes,
            scores=t_hat,
            fg_mask=fg,
            gt_index=torch.where(fg, gt_idx, -1),
            cls_weights=torch.ones_like(t_hat),
            box_weights=t_hat.clone(),
        )

    @staticmethod
    def _rescue_orphans(
        pos: torch.Tensor, key: torch.Tensor, cand: torch.Tensor, gt_mask: torch.Tensor
    ) -> tuple[torch.Tensor, bool]:
        """One round of giving each GT without positives its best candidate that can be spared.

        An anchor can be spared when it is unassigned or its owner has two positives or more. Within a round
        an anchor goes to one orphan (the one that ranks it highest) and an owner gives up at most one anchor,
        so no owner is orphaned by the rescue. Returns the new positive mask and whether anything changed.
        """
        b, m, n = pos.shape
        count = pos.sum(-1)  # [B, M]
        orphan = gt_mask & (count == 0)
        if not bool(orphan.any()):
            return pos, False
        fg = pos.any(1)  # [B, N]
        donor = torch.where(fg, pos.to(torch.uint8).argmax(1), m)  # [B, N]; m = no owner
        spare = ~fg | (count.gather(1, donor.clamp_max(m - 1)) >= 2)
        key = key.masked_fill(~(cand & spare[:, None, :] & orphan[..., None]), -2.0)
        best_key, best_n = key.max(-1)  # [B, M]
        wants = orphan & (best_key > -2.0)
        if not bool(wants.any()):
            return pos, False
        claim = torch.zeros_like(pos).scatter_(-1, best_n[..., None], True) & wants[..., None]  # [B, M, N]
        claim_key = key.masked_fill(~claim, -3.0)
        win_key, winner = claim_key.max(1)  # [B, N]: one orphan per claimed anchor
        claimed = win_key > -2.0
        win_key = win_key.masked_fill(~claimed, float("-inf"))
        per_donor = torch.full((b, m + 1), float("-inf"), device=pos.device)
        per_donor = per_donor.scatter_reduce(1, donor, win_key, "amax")
        take = claimed & ((donor == m) | (win_key >= per_donor.gather(1, donor)))  # [B, N]
        gt_ids = torch.arange(m, device=pos.device)[None, :, None]
        pos = torch.where(take[:, None, :], gt_ids == winner[:, None, :], pos)
        return pos, bool(take.any())
