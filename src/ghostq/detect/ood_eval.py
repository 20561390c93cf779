"""Detections of a checkpoint with their OOD scores (MSP and energy of the anchor's raw logits), per image.

Scores, thresholds and NMS are the spec's inference head's (its LogitClip included, as evaluation and export
compute them); the OOD scores come from the raw logits (``ghostq.detect.ood``). Used by the real-negatives
benchmark (``benchmarks/robust_nwpu.py``) and the memorisation curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ghostq.core.records import ImageRecord
from ghostq.core.spec import DecodeSpec, ModelSpec
from ghostq.detect.inference import make_eval_loader
from ghostq.detect.losses.robust import clipped_class_scores
from ghostq.detect.models.inference_head import logit_clip_of
from ghostq.detect.ood import energy_score, msp_score
from ghostq.detect.postprocess import decode_scores, scale_boxes_to_original


@dataclass
class ImageOodDetections:
    """One image's detections, highest score first: boxes [K, 4] xyxy original pixels, scores, labels, msp,
    energy [K] (higher = less like a known class)."""

    file_name: str
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    msp: np.ndarray
    energy: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """Plain lists (rounded) for a JSON file."""
        return {"file_name": self.file_name, "boxes": np.round(self.boxes, 2).tolist(),
                "scores": np.round(self.scores, 6).tolist(), "labels": self.labels.tolist(),
                "msp": np.round(self.msp, 6).tolist(), "energy": np.round(self.energy, 5).tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageOodDetections:
        """The inverse of ``to_json``."""
        return cls(d["file_name"], np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                   np.asarray(d["scores"], np.float64), np.asarray(d["labels"], np.int64),
                   np.asarray(d["msp"], np.float64), np.asarray(d["energy"], np.float64))


@torch.no_grad()
def predict_with_ood(
    model: torch.nn.Module,
    spec: ModelSpec,
    records: list[ImageRecord] | Any,
    device: torch.device | None = None,
    decode: DecodeSpec | None = None,
    batch_size: int = 8,
) -> list[ImageOodDetections]:
    """Detections with MSP and energy scores for every record (or for a DataLoader built by make_eval_loader)."""
    device = device or torch.device("cpu")
    decode = decode or spec.decode
    loader = records if isinstance(records, torch.utils.data.DataLoader) else make_eval_loader(
        records, spec.img_size, spec.in_channels, batch_size=batch_size, workers=0)
    clip = logit_clip_of(spec)
    was_training = model.training
    model.eval()
    out: list[ImageOodDetections] = []
    for images, _targets, metas in loader:
        pred = model(images.to(device))
        raw = pred.cls_logits.float()
        scores = clipped_class_scores(raw, spec.head, clip)
        ood = torch.stack([msp_score(raw, spec.head), energy_score(raw, spec.head)], dim=-1)  # [B, N, 2]
        dets = decode_scores(scores, pred.boxes.float(), decode, image_size=tuple(images.shape[-2:]), ood=ood)
        for det, meta in zip(dets, metas, strict=True):
            w, h = meta["orig_size"]
            boxes = scale_boxes_to_original(det.boxes.float().cpu(), meta["ratio"], meta["pad"], (h, w))
            o = det.ood.cpu().numpy().reshape(-1, 2)
            out.append(ImageOodDetections(meta["file_name"], boxes.numpy().astype(np.float64),
                                          det.scores.cpu().numpy().astype(np.float64),
                                          det.labels.cpu().numpy().astype(np.int64), o[:, 0].astype(np.float64),
                                          o[:, 1].astype(np.float64)))
    model.train(was_training)
    return out


def coco_dets(images: list[ImageOodDetections]) -> list[dict[str, Any]]:
    """COCO results (image_id = index + 1, category_id = class + 1, bbox xywh) of detections in record order."""
    rows = []
    for k, im in enumerate(images):
        for (x1, y1, x2, y2), s, c in zip(im.boxes, im.scores, im.labels, strict=True):
            rows.append({"image_id": k + 1, "category_id": int(c) + 1,
                         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)})
    return rows
