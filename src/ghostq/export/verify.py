"""Verify exported ONNX files against PyTorch on real val images -> ``export/verify.json``.

Per file: the onnx checker's verdict; ONNX Runtime vs the PyTorch reference (the same fused head in FP32, or
the quantized torch model when there is one) as max abs differences of ``scores`` and of ``boxes`` (pixels, and
in units of each point's stride, which is what the head predicts) and relative to each output's scale
(``max_rel_diff``: scores have scale 1; boxes in stride units over their largest value: the FP16 measure, since
FP16 rounding grows with the magnitude); ``mAP50_onnx`` and ``mAP50_torch`` on the
val images (fractions, pycocotools through ``ghostq.detect.evaluate``), both from the same score-based
post-processing (threshold, class-wise NMS, top-k: a ``DecodeSpec`` through
``ghostq.detect.postprocess.decode_scores``); and, for the TensorRT Q/DQ file, the lint (``qdq_lint``).

Files with ONNX NonMaxSuppression are scored from their own detections (``det_*`` outputs); files with the
EfficientNMS_TRT plugin can only be checked (ONNX Runtime has no such op).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ghostq.core.spec import DecodeSpec, ModelSpec
from ghostq.core.tiling import ImageDetections, coco_results
from ghostq.detect.postprocess import Detections, decode_scores, scale_boxes_to_original

Reference = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # images -> (scores, boxes)


@dataclass
class FileCheck:
    """What ``verify_files`` checks for one file."""

    path: Path
    reference: Reference | None = None  # torch (scores, boxes); None: the default FP32 reference
    reference_name: str = "fp32 torch"
    lint: bool = False  # run the TensorRT Q/DQ lint on it
    opts: DecodeSpec | None = None  # post-processing of both sides; None: verify_files' (NMS files: theirs)
    result: dict[str, Any] = field(default_factory=dict)


def point_strides(strides: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """[N] stride of each anchor point, levels in order (the head's flattening)."""
    h, w = size
    return np.concatenate([np.full((h // s) * (w // s), float(s), np.float32) for s in strides])


def ort_session(path_or_model: str | Path | onnx.ModelProto, threads: int = 1):  # noqa: ANN201
    """A CPU ONNX Runtime session with a fixed thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _to_coco(dets: list[Detections], metas: list[dict]) -> list[ImageDetections]:
    out = []
    for det, meta in zip(dets, metas, strict=True):
        w, h = meta["orig_size"]
        boxes = scale_boxes_to_original(det.boxes.float(), meta["ratio"], meta["pad"], (h, w))
        out.append(ImageDetections(meta["file_name"], w, h, boxes.numpy(), det.scores.numpy(), det.labels.numpy()))
    return out


def _nms_outputs_to_dets(outs: dict[str, np.ndarray], batch: int) -> list[Detections]:
    dets = []
    for b in range(batch):
        sel = outs["det_batch"] == b
        order = np.argsort(-outs["det_scores"][sel], kind="stable")
        dets.append(Detections(torch.from_numpy(outs["det_boxes"][sel][order]),
                               torch.from_numpy(outs["det_scores"][sel][order]),
                               torch.from_numpy(outs["det_labels"][sel][order])))
    return dets


def verify_files(
    checks: list[FileCheck],
    reference: Reference,
    loader: Any,
    gt_coco: dict[str, Any],
    strides: Sequence[int],
    opts: DecodeSpec,
    max_images: int | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Check every file (see the module docstring); returns ``{file name: result}`` and fills ``check.result``.

    ``loader`` yields (images [B, C, H, W] float tensor, targets, metas) in record order (``make_eval_loader``);
    ``gt_coco`` is the matching ground truth (image ids 1..N in that order).
    """
    from ghostq.detect.evaluate import evaluate_coco
    from ghostq.export.qdq_lint import lint_qdq

    state = {}
    for c in checks:
        proto = onnx.load(str(c.path))
        res: dict[str, Any] = {"file": c.path.name, "reference": c.reference_name}
        try:
            onnx.checker.check_model(proto)
            res["checker"] = "ok"
        except onnx.checker.ValidationError as err:
            res["checker"] = f"failed: {' '.join(str(err).split())}"
        if c.lint:
            violations = lint_qdq(proto)
            res["lint"] = {"passed": not violations, "violations": [v.to_dict() for v in violations]}
        outputs = [o.name for o in proto.graph.output]
        if "num_detections" in outputs:
            res["runnable_in_onnxruntime"] = False  # EfficientNMS_TRT: TensorRT only
        else:
            state[c.path] = {"sess": ort_session(c.path, threads), "nms": "det_batch" in outputs,
                             "dets": [], "ref_dets": [], "d_scores": 0.0, "d_boxes": 0.0, "d_boxes_stride": 0.0,
                             "ref_boxes_stride": 0.0}
        c.result = res
    metas_all: list[dict] = []
    cached_refs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    seen = 0
    for images, _targets, metas in loader:
        if max_images is not None and seen >= max_images:
            break
        if max_images is not None:
            images, metas = images[: max_images - seen], metas[: max_images - seen]
        seen += len(metas)
        metas_all += metas
        size = tuple(images.shape[-2:])
        ps = point_strides(strides, size)[None, :, None]
        x = images.float().numpy()
        cached_refs.clear()
        for c in checks:
            st = state.get(c.path)
            if st is None:
                continue
            ref_fn = c.reference or reference
            key = id(ref_fn)
            if key not in cached_refs:
                with torch.no_grad():
                    cached_refs[key] = tuple(t.float() for t in ref_fn(images.float()))
            r_scores, r_boxes = cached_refs[key]
            st["ref_dets"] += decode_scores(r_scores, r_boxes, c.opts or opts, size)
            names = [o.name for o in st["sess"].get_outputs()]
            outs = dict(zip(names, st["sess"].run(None, {st["sess"].get_inputs()[0].name: x}), strict=True))
            if st["nms"]:
                st["dets"] += _nms_outputs_to_dets(outs, len(metas))
                continue
            scores, boxes = outs["scores"], outs["boxes"]
            st["d_scores"] = max(st["d_scores"], float(np.abs(scores - r_scores.numpy()).max()))
            db = np.abs(boxes - r_boxes.numpy())
            st["d_boxes"] = max(st["d_boxes"], float(db.max()))
            st["d_boxes_stride"] = max(st["d_boxes_stride"], float((db / ps).max()))
            st["ref_boxes_stride"] = max(st["ref_boxes_stride"], float((np.abs(r_boxes.numpy()) / ps).max()))
            st["dets"] += decode_scores(torch.from_numpy(scores), torch.from_numpy(boxes), c.opts or opts, size)
    gt = _subset_gt(gt_coco, len(metas_all))
    for c in checks:
        st = state.get(c.path)
        if st is None:
            continue
        if not st["nms"]:
            c.result["max_abs_diff"] = {"scores": st["d_scores"], "boxes_px": st["d_boxes"],
                                        "boxes_per_stride": st["d_boxes_stride"]}
            c.result["max_rel_diff"] = {"scores": st["d_scores"],  # their scale is 1
                                        "boxes_per_stride": st["d_boxes_stride"] / max(st["ref_boxes_stride"], 1e-12)}
        for side, dets in (("onnx", st["dets"]), ("torch", st["ref_dets"])):
            m = evaluate_coco(gt, coco_results(_to_coco(dets, metas_all), False))
            c.result[f"mAP50_{side}"], c.result[f"mAP50_95_{side}"] = m["mAP50"], m["mAP50_95"]
        c.result["num_images"] = len(metas_all)
    return {c.path.name: c.result for c in checks}


def _subset_gt(gt: dict[str, Any], n: int) -> dict[str, Any]:
    """The ground truth of the first ``n`` images (ids 1..n)."""
    if n >= len(gt["images"]):
        return gt
    ids = {im["id"] for im in gt["images"][:n]}
    return {**gt, "images": gt["images"][:n], "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}


def torch_reference(model: nn.Module, spec: ModelSpec) -> Reference:
    """The FP32 inference head of the spec in torch (what the export traces): ``images -> (scores, boxes)``."""
    from ghostq.detect.models.inference_head import InferenceHead

    wrapper = InferenceHead(model.float().eval(), spec).eval()

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return wrapper(images)

    return run
