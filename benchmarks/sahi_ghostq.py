"""A SAHI `DetectionModel` around any ghostq runtime (an ONNX file through ONNX Runtime): SAHI slices, ghostq
detects each slice with the same letterbox and decode as `ghostq predict`, SAHI merges.

Needs the optional extra `sahi` (`pip install -c constraints.txt -e ".[sahi]"`; SAHI pulls no torch), imported
only when used. Used by `benchmarks/tiled_airbus.py` to compare SAHI's merges (NMS, NMM, GREEDYNMM) with ghostq's
tile merge on the same model, slice size and overlap; alone:

    python benchmarks/sahi_ghostq.py IMAGE --model model_fp32.onnx --tile 320 --overlap 64 --postprocess GREEDYNMM
"""

from __future__ import annotations

import argparse
from functools import cache
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings, Detections
from ghostq.core.runtime import Runtime
from ghostq.deploy.preprocess import preprocess, unletterbox

MATCH_METRIC = {"NMS": "IOU", "NMM": "IOS", "GREEDYNMM": "IOS"}  # SAHI's: IOS by default, IOU when it picks NMS


@cache
def model_class() -> type:
    """The SAHI DetectionModel subclass (built on first use, so that importing this file needs no SAHI)."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class GhostqDetectionModel(DetectionModel):
        """SAHI model whose inference is a ghostq runtime (boxes in slice pixels, thresholds of the runtime)."""

        def __init__(self, runtime: Runtime) -> None:
            super().__init__(model=runtime, device="cpu", confidence_threshold=runtime.decode.score_threshold)

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self.category_mapping = {str(i): name for i, name in enumerate(model.info.classes)}

        @property
        def num_categories(self) -> int:
            return len(self.category_mapping or {})

        @property
        def has_mask(self) -> bool:
            return False

        @property
        def category_names(self) -> list[str]:
            return list((self.category_mapping or {}).values())

        def perform_inference(self, image: np.ndarray) -> None:
            """One slice (H x W x C uint8) through the runtime; detections mapped back to slice pixels."""
            batch, placements = preprocess([np.ascontiguousarray(image)], self.model.info.img_size)
            det = self.model.infer(batch)[0]
            boxes = unletterbox(det.boxes, placements[0]) if len(det) else det.boxes
            self._original_predictions = [Detections(np.asarray(boxes, np.float32), det.scores, det.labels)]
            self._original_shapes = [image.shape]

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = None,
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            shifts = shift_amount_list or [[0, 0]]
            if shifts and not isinstance(shifts[0], list | tuple):
                shifts = [shifts]  # type: ignore[list-item]
            shapes = full_shape_list
            if shapes and not isinstance(shapes[0], list | tuple):
                shapes = [shapes]  # type: ignore[list-item]
            per_image = []
            for k, det in enumerate(self._original_predictions):
                shape = list(shapes[k]) if shapes else list(self._original_shapes[k][:2])
                preds = []
                for box, score, label in det.rows():
                    if score < self.confidence_threshold or not (box[0] < box[2] and box[1] < box[3]):
                        continue
                    preds.append(ObjectPrediction(
                        bbox=box, category_id=int(label), score=float(score),
                        category_name=self.category_mapping[str(int(label))],
                        shift_amount=[int(v) for v in shifts[k]], full_shape=[int(v) for v in shape],
                    ))
                per_image.append(preds)
            self._object_prediction_list_per_image = per_image

    return GhostqDetectionModel


_MODELS: dict[int, Any] = {}


def sahi_detect(runtime: Runtime, image: np.ndarray, tile: int, overlap: int, postprocess: str = "GREEDYNMM",
                standard_pred: bool = True) -> Detections:
    """SAHI's `get_sliced_prediction` with ghostq's runtime: slices of `tile` px overlapping by `overlap` px,
    SAHI's merge `postprocess` (NMS / NMM / GREEDYNMM, its match metric and threshold 0.5, forced even at a low
    score threshold) and, as SAHI does by default, one extra whole-image prediction (`standard_pred`)."""
    from sahi.predict import get_sliced_prediction

    if id(runtime) not in _MODELS:
        _MODELS[id(runtime)] = model_class()(runtime)
    model = _MODELS[id(runtime)]
    result = get_sliced_prediction(
        image, model, slice_height=tile, slice_width=tile, overlap_height_ratio=overlap / tile,
        overlap_width_ratio=overlap / tile, perform_standard_pred=standard_pred, postprocess_type=postprocess,
        postprocess_match_metric=MATCH_METRIC[postprocess], postprocess_match_threshold=0.5,
        force_postprocess_type=True, verbose=0,
    )
    preds = result.object_prediction_list
    if not preds:
        return Detections.empty()
    boxes = np.array([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4)
    scores = np.array([p.score.value for p in preds], np.float32)
    labels = np.array([p.category.id for p in preds], np.int64)
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], scores[order], labels[order])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", required=True, help="ONNX file (or any model a ghostq runtime loads)")
    parser.add_argument("--tile", type=int, default=320)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--postprocess", default="GREEDYNMM", choices=sorted(MATCH_METRIC))
    parser.add_argument("--score", type=float, default=0.05)
    args = parser.parse_args()
    from ghostq.core.image_io import load_image
    from ghostq.core.runtime import load_runtime

    with load_runtime(args.model, decode=DecodeSettings(score_threshold=args.score)) as rt:
        dets = sahi_detect(rt, load_image(args.image), args.tile, args.overlap, args.postprocess)
    print(f"{len(dets)} detections")


if __name__ == "__main__":
    main()
