"""Run a detector over a dataset split and score it: COCO-results detections in original-image pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from ghostq.core.config import EvalConfig
from ghostq.core.records import ImageRecord
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.postprocess import postprocess, scale_boxes_to_original
from ghostq.detect.predict import ImageDetections, coco_results


def make_eval_loader(
    records: list[ImageRecord],
    img_size: int,
    in_channels: int,
    batch_size: int = 8,
    workers: int = 0,
    cache_images: bool = True,
) -> DataLoader:
    """Letterboxed, unaugmented, in record order (so image id = record index + 1)."""
    ds = DetectionDataset(
        records,
        img_size=img_size,
        in_channels=in_channels,
        train=False,
        augment=None,
        cache_images=cache_images,
    )
    return DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_detection
    )


@torch.no_grad()
def predict_loader(
    model: torch.nn.Module,
    loader: DataLoader,
    eval_cfg: EvalConfig,
    device: torch.device,
    logit_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """COCO results (image_id = record index + 1, category_id = class + 1, bbox xywh original pixels).

    `logit_transform`: the LogitClip a model was trained with; scores are clipped and mapped onto [0, 1] as in
    the exported head (`clipped_class_scores`).
    """
    was_training = model.training
    model.eval()
    images_dets: list[ImageDetections] = []
    for images, _targets, metas in loader:
        out = model(images.to(device, non_blocking=True))
        dets = postprocess(
            out,
            score_threshold=eval_cfg.score_threshold,
            iou_threshold=eval_cfg.iou_threshold,
            max_det=eval_cfg.max_det,
            head=getattr(model, "head_type", "sigmoid"),
            image_size=tuple(images.shape[-2:]),
            clip=logit_transform,
        )
        for det, meta in zip(dets, metas, strict=True):
            w, h = meta["orig_size"]
            boxes = scale_boxes_to_original(det.boxes.float().cpu(), meta["ratio"], meta["pad"], (h, w))
            images_dets.append(
                ImageDetections(
                    meta["file_name"], w, h, boxes.numpy(), det.scores.cpu().numpy(), det.labels.cpu().numpy()
                )
            )
    model.train(was_training)
    return coco_results(images_dets, with_file_name=False)


def evaluate_detector(
    model: torch.nn.Module,
    loader: DataLoader,
    gt_coco: dict[str, Any],
    eval_cfg: EvalConfig,
    device: torch.device,
    logit_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """COCO mAP50 / mAP50_95 (pycocotools) of the model on the loader's records."""
    from ghostq.detect.evaluate import evaluate_coco

    return evaluate_coco(gt_coco, predict_loader(model, loader, eval_cfg, device, logit_transform))
