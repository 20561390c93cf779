"""Deployment: runtimes (ONNX Runtime CPU / CUDA / TensorRT, OpenVINO CPU, TensorRT engines; the PyTorch reference
registers from ``ghostq.detect``), latency benchmark with Jetson telemetry and end-to-end timing, tiled prediction.

Imports only ``ghostq.core``, numpy, Pillow and the runtime libraries (never torch): ``pip install ghostq[deploy]``
on a Jetson. The runtime contract and registry live in :mod:`ghostq.core.runtime`; this package's backends register
through the ``ghostq.runtimes`` entry points.

    from ghostq.deploy import load_runtime, preprocess, unletterbox
    rt = load_runtime("runs/demo/export/model_fp32.onnx")            # backend by suffix: ort-cpu
    batch, placements = preprocess([image], rt.info.img_size)
    dets = rt.infer(batch)                                            # list[Detections], input pixels
    boxes = unletterbox(dets[0].boxes, placements[0])                 # image pixels
"""

from ghostq.core.detections import DecodeSettings, Detections
from ghostq.core.runtime import (
    ModelInfo,
    Runtime,
    available_backends,
    backend_names,
    default_backend,
    load_runtime,
)
from ghostq.deploy.preprocess import Letterbox, letterbox_image, preprocess, unletterbox

__all__ = [
    "DecodeSettings",
    "Detections",
    "Letterbox",
    "ModelInfo",
    "Runtime",
    "available_backends",
    "backend_names",
    "default_backend",
    "letterbox_image",
    "load_runtime",
    "preprocess",
    "unletterbox",
]
