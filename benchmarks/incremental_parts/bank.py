"""The frozen base model's outputs on the NWPU images, computed once and reused by every method of the
incremental benchmark: per image the classification features of each level, the decoded boxes, the ground truth
(all 10 classes) in network-input pixels, and the letterbox of the val images.

Heads are then fitted (ACIL) or trained (fine-tuning) on these features and scored on the val images without
running the backbone again; `heads_scores` gives what the detector's own head computes (sigmoid of its logits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ghostq.core.records import ImageRecord
from ghostq.core.spec import ModelSpec
from ghostq.detect.acil_head import FeatureBatch, capture_features
from ghostq.detect.models.output import DetectorOutput, Targets


@dataclass
class BankImage:
    """One image's frozen outputs: features per level [HW_l, c], boxes [N, 4], GT (input pixels, 10-class ids)."""

    file_name: str
    feats: list[torch.Tensor]
    boxes: torch.Tensor
    gt_boxes: torch.Tensor
    gt_labels: torch.Tensor
    gt_ignore: torch.Tensor
    meta: dict[str, Any]


@dataclass
class Bank:
    """Frozen outputs of the train and val images, and the anchor points shared by all images."""

    train: list[BankImage]
    val: list[BankImage]
    points: torch.Tensor
    strides: torch.Tensor


@torch.no_grad()
def extract(model: torch.nn.Module, records: list[ImageRecord], spec: ModelSpec) -> tuple[list[BankImage], Any]:
    """Run the frozen model once over `records` (letterboxed, unaugmented)."""
    from ghostq.detect.inference import make_eval_loader

    out_images, last = [], None
    loader = make_eval_loader(records, spec.img_size, spec.in_channels, batch_size=8, cache_images=False)
    model.eval()
    for images, targets, metas in loader:
        feats, out = capture_features(model, images)
        last = out
        for i, meta in enumerate(metas):
            real = targets.boxes[i][(targets.boxes[i][:, 2:] > targets.boxes[i][:, :2]).all(-1)]
            n = len(real)
            out_images.append(BankImage(str(meta["file_name"]), [f[i].clone() for f in feats], out.boxes[i].clone(),
                                        targets.boxes[i, :n].clone(), targets.labels[i, :n].clone(),
                                        ~targets.mask[i, :n].clone(), dict(meta)))
    return out_images, last


def phase_batches(images: Sequence[BankImage], classes: Sequence[int], bank: Bank, batch: int = 8,
                  global_ids: bool = False) -> Iterator[FeatureBatch]:
    """FeatureBatches of the images holding a class of `classes` (global ids), only those labelled (ids re-indexed
    in `classes` order, or kept with `global_ids`): what a phase sees."""
    remap = {c: (c if global_ids else j) for j, c in enumerate(classes)}
    chosen = [im for im in images if any(int(v) in remap for v in im.gt_labels)]
    for start in range(0, len(chosen), batch):
        part = chosen[start : start + batch]
        m = max(1, max(sum(int(v) in remap for v in im.gt_labels) for im in part))
        boxes, labels = torch.zeros(len(part), m, 4), torch.zeros(len(part), m, dtype=torch.long)
        mask = torch.zeros(len(part), m, dtype=torch.bool)
        for i, im in enumerate(part):
            keep = [k for k, v in enumerate(im.gt_labels.tolist()) if v in remap]
            boxes[i, : len(keep)] = im.gt_boxes[keep]
            labels[i, : len(keep)] = torch.tensor([remap[int(im.gt_labels[k])] for k in keep], dtype=torch.long)
            mask[i, : len(keep)] = ~im.gt_ignore[keep]
        feats = [torch.stack([im.feats[level] for im in part]) for level in range(len(part[0].feats))]
        yield FeatureBatch(feats, torch.stack([im.boxes for im in part]), bank.points, bank.strides,
                           Targets(boxes, labels, mask), [im.file_name for im in part])


def count_images(images: Sequence[BankImage], classes: Sequence[int]) -> int:
    """Images a phase of `classes` sees."""
    return sum(any(int(v) in set(classes) for v in im.gt_labels) for im in images)


def detections(bank: Bank, scores_of: Callable[[BankImage], torch.Tensor], columns: Sequence[int],
               spec: ModelSpec) -> list[dict[str, Any]]:
    """COCO results on the val images of per-image scores [N, C_known]; column j is global class `columns[j]`."""
    from ghostq.detect.postprocess import decode_scores, scale_boxes_to_original

    rows = []
    cols = list(columns)
    for k, im in enumerate(bank.val):
        scores = scores_of(im).float()
        det = decode_scores(scores[None], im.boxes[None], spec.decode, image_size=(spec.img_size, spec.img_size))[0]
        w, h = im.meta["orig_size"]
        boxes = scale_boxes_to_original(det.boxes, im.meta["ratio"], im.meta["pad"], (h, w))
        for (x1, y1, x2, y2), s, label in zip(boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True):
            rows.append({"image_id": k + 1, "category_id": cols[label] + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": float(s)})
    return rows


def linear_head_scores(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> Callable:
    """Scores of a plain final conv per level (the trained head): sigmoid(x W^T + b), levels concatenated."""
    def scores(im: BankImage) -> torch.Tensor:
        return torch.sigmoid(torch.cat([f @ w.T + b for f, w, b in zip(im.feats, weights, biases, strict=True)]))
    return scores


def finetune(weights: list[torch.Tensor], biases: list[torch.Tensor], batches: list[FeatureBatch],
             num_classes: int, epochs: int, lr: float, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gradient fine-tuning of the final classification conv of every level on one phase's frozen features, with
    the training loss (task-aligned assignment on the current scores, varifocal + the frozen boxes' GIoU)."""
    from ghostq.detect.losses.detection_loss import DetectionLoss

    torch.manual_seed(seed)
    ws = [w.clone().requires_grad_(True) for w in weights]
    bs = [b.clone().requires_grad_(True) for b in biases]
    opt = torch.optim.AdamW([*ws, *bs], lr=lr, weight_decay=0.0)
    loss_fn = DetectionLoss(num_classes)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(batches)):
            fb = batches[i]
            logits = torch.cat([f @ w.T + b for f, w, b in zip(fb.feats, ws, bs, strict=True)], dim=1)
            out = DetectorOutput(logits, fb.boxes, fb.points, fb.strides)
            loss, _ = loss_fn(out, fb.targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [w.detach() for w in ws], [b.detach() for b in bs]


def widen(weights: list[torch.Tensor], biases: list[torch.Tensor], extra: int,
          seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """New class rows for the final convs, initialised as the detector's head is (N(0, 0.01), prior 0.01)."""
    g = torch.Generator().manual_seed(seed)
    prior = -float(np.log(99.0))
    return ([torch.cat([w, 0.01 * torch.randn(extra, w.shape[1], generator=g)]) for w in weights],
            [torch.cat([b, torch.full((extra,), prior)]) for b in biases])
