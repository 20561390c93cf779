"""Deployment: runtimes (ONNX Runtime CPU / CUDA / TensorRT, TensorRT engines, PyTorch as reference),
latency benchmark with Jetson telemetry, tiled prediction.

Runs with numpy + onnxruntime (or tensorrt) + Pillow only: nothing here imports torch at import time
(``pip install ghostq[deploy]`` on a Jetson); the ``torch`` backend imports it when it is chosen.

    from ghostq.deploy import load_runtime, preprocess, unletterbox
    rt = load_runtime("runs/demo/export/model_fp32.onnx")            # backend by suffix: ort-cpu
    batch, placements = preprocess([image], rt.info.img_size)
    dets = rt.infer(batch)                                            # list[Detections], input pixels
    boxes = unletterbox(dets[0].boxes, placements[0])                 # image pixels
"""

from ghostq.deploy.postprocess import DecodeSettings, Detections, batched_nms, decode, from_graph_nms
from ghostq.deploy.preprocess import Letterbox, letterbox_image, preprocess, unletterbox
from ghostq.deploy.runtimes import (
    BACKENDS,
    ModelInfo,
    Runtime,
    available_backends,
    default_backend,
    load_runtime,
)

__all__ = [
    "BACKENDS",
    "DecodeSettings",
    "Detections",
    "Letterbox",
    "ModelInfo",
    "Runtime",
    "available_backends",
    "batched_nms",
    "decode",
    "default_backend",
    "from_graph_nms",
    "letterbox_image",
    "load_runtime",
    "preprocess",
    "unletterbox",
]
