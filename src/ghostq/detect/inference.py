"""Run a detector over a dataset split and score it: COCO-results detections in original-image pixels."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from ghostq.core.records import ImageRecord
from ghostq.core.spec import DecodeSpec, ModelSpec
from ghostq.core.tiling import ImageDetections, coco_results
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.models.inference_head import InferenceHead
from ghostq.detect.postprocess import decode_scores, scale_boxes_to_original


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
    spec: ModelSpec,
    device: torch.device,
    decode: DecodeSpec | None = None,
) -> list[dict[str, Any]]:
    """COCO results (image_id = record index + 1, category_id = class + 1, bbox xywh original pixels).

    Scores come from the spec's inference head (its LogitClip included), as export and the runtimes compute
    them; `decode` (default: the spec's) sets the threshold, NMS IoU and detections kept.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"predict_loader needs the model's ModelSpec, got {type(spec).__name__}")
    decode = decode or spec.decode
    was_training = model.training
    model.eval()
    head = InferenceHead(model, spec).eval()
    images_dets: list[ImageDetections] = []
    for images, _targets, metas in loader:
        scores, boxes = head(images.to(device, non_blocking=True))
        dets = decode_scores(scores, boxes, decode, image_size=tuple(images.shape[-2:]))
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
    spec: ModelSpec,
    device: torch.device,
    decode: DecodeSpec | None = None,
) -> dict[str, Any]:
    """COCO mAP50 / mAP50_95 (pycocotools) of the model, scored through its spec's inference head."""
    from ghostq.detect.evaluate import evaluate_coco

    return evaluate_coco(gt_coco, predict_loader(model, loader, spec, device, decode))
