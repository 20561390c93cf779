"""Runtimes behind one interface: ``infer(batch) -> list[Detections]``, ``run(batch) -> raw outputs``.

Backends (:data:`BACKENDS`):
- ``ort-cpu`` / ``ort-cuda`` / ``ort-trt``: ONNX Runtime with the CPU, CUDA or TensorRT execution provider
  (CUDA and TensorRT need the onnxruntime-gpu build; TensorRT falls back to CUDA, then CPU, per node),
  :mod:`ghostq.deploy.ort_runtime`;
- ``trt``: a serialized TensorRT engine (``.plan`` / ``.engine``), :mod:`ghostq.deploy.trt_engine`;
- ``torch``: the PyTorch checkpoint (``.pt``) as the reference, :mod:`ghostq.deploy.torch_runtime`; torch is
  imported when that backend is chosen, never by ``import ghostq.deploy``.

A batch is float32 [B, C, S, S] in [0, 1] (:func:`ghostq.deploy.preprocess.preprocess`). Model facts
(classes, input size, channels, head, NMS in the graph) come from the ONNX ``metadata_props`` that the export
writes (``ghostq.classes`` JSON list, ``ghostq.input_size`` JSON [h, w] or ``ghostq.img_size``,
``ghostq.in_channels``, ``ghostq.head``, ``ghostq.nms`` "none" / "onnx" / "trt" or JSON {"kind": ...}), for an
engine from the sidecar ``<engine>.json`` (same keys) or the same-stem ``.onnx`` beside it; what is missing
comes from the input shape and the output names, or from ``overrides`` (which also win over metadata).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.errors import GhostqError
from ghostq.deploy.postprocess import (
    FLAT_NMS_OUTPUTS,
    NMS_OUTPUTS,
    RAW_OUTPUTS,
    DecodeSettings,
    Detections,
    decode_outputs,
)

BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "trt", "torch")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
TORCH_SUFFIXES = (".pt", ".pth")
META_PREFIX = "ghostq."
ORT_PROVIDERS = {
    "ort-cpu": "CPUExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-trt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class ModelInfo:
    """What a deployed model takes and gives. ``classes`` may be empty (unknown: ids are named class<i>)."""

    path: Path
    img_size: int
    in_channels: int
    classes: tuple[str, ...] = ()
    head: str = "unknown"  # sigmoid | softmax | unknown (scores are probabilities either way)
    nms: str = "none"  # none | onnx | trt: NMS inside the graph
    input_name: str = "images"
    output_names: tuple[str, ...] = ("scores", "boxes")
    batch: int | None = None  # fixed batch size of the graph, None = dynamic
    extra: dict[str, str] = field(default_factory=dict)  # every ghostq.* metadata entry, as stored

    def class_name(self, label: int) -> str:
        return self.classes[label] if 0 <= label < len(self.classes) else f"class{label}"


def model_info(
    path: Path,
    meta: Mapping[str, str],
    input_name: str,
    input_shape: tuple[Any, ...],
    output_names: tuple[str, ...],
    overrides: Mapping[str, Any] | None = None,
    output_shapes: Sequence[Sequence[Any] | None] | None = None,
) -> ModelInfo:
    """Merge metadata (``ghostq.*`` keys), the input's static shape and explicit overrides into a ModelInfo;
    sizes that contradict the graph's fixed input shape, and (given ``output_shapes``) outputs outside the
    export contract, are one-line errors here rather than a failed run later."""
    ov = dict(overrides or {})
    extra = {k: str(v) for k, v in meta.items() if k.startswith(META_PREFIX)}
    dims = [d if isinstance(d, int) and d > 0 else None for d in input_shape]
    if len(dims) != 4:
        raise GhostqError(f"{path}: input {input_name!r} has shape {list(input_shape)}, expected [B, C, S, S]")
    if dims[2] is not None and dims[3] is not None and dims[2] != dims[3]:
        raise GhostqError(f"{path}: input {dims[2]}x{dims[3]} is not square; ghostq letterboxes to squares")
    if output_shapes is not None:
        check_outputs(path, output_names, output_shapes)

    def pick(key: str, from_shape: Any, cast: Any) -> Any:
        if ov.get(key) is not None:
            return cast(ov[key])
        if META_PREFIX + key in extra:
            try:
                return cast(extra[META_PREFIX + key])
            except (ValueError, TypeError, json.JSONDecodeError) as err:
                raise GhostqError(
                    f"{path}: metadata {META_PREFIX}{key}={extra[META_PREFIX + key]!r} is invalid ({err})"
                ) from None
        return from_shape

    from_shape = dims[2] if dims[2] == dims[3] else None
    if META_PREFIX + "img_size" not in extra and META_PREFIX + "input_size" in extra:
        extra_size = extra[META_PREFIX + "input_size"]
        try:
            hw = json.loads(extra_size)
            hw = [hw, hw] if isinstance(hw, int) else [int(v) for v in hw]
        except (ValueError, TypeError) as err:
            raise GhostqError(f"{path}: metadata {META_PREFIX}input_size={extra_size!r} is invalid ({err})") from None
        if len(hw) != 2 or hw[0] != hw[1]:
            raise GhostqError(f"{path}: input {hw[0]}x{hw[1]} is not square; ghostq letterboxes to squares")
        from_shape = hw[0]
    img_size = pick("img_size", from_shape, int)
    in_channels = pick("in_channels", dims[1], int)
    if img_size is None or in_channels is None:
        raise GhostqError(
            f"{path}: input size unknown (no {META_PREFIX}img_size / {META_PREFIX}in_channels "
            "metadata, dynamic input shape): pass --img-size / --channels"
        )

    def source(key: str, flag: str) -> str:
        if ov.get(key) is not None:
            return f"the requested {flag} {ov[key]}"
        if META_PREFIX + key in extra:
            return f"metadata {META_PREFIX}{key}={extra[META_PREFIX + key]!r}"
        if key == "img_size" and META_PREFIX + "input_size" in extra:
            return f"metadata {META_PREFIX}input_size={extra[META_PREFIX + 'input_size']!r}"
        return f"the input shape {list(input_shape)}"

    for key, flag, value in (("img_size", "--img-size", img_size), ("in_channels", "--channels", in_channels)):
        if value < 1:
            raise GhostqError(f"{path}: {source(key, flag)} is not a positive {key}")
    if dims[2] is not None and img_size != dims[2]:
        raise GhostqError(
            f"{path}: input {input_name!r} is fixed at {dims[2]}x{dims[2]}, {source('img_size', '--img-size')} "
            f"does not match; the model's size is {dims[2]}"
        )
    if dims[1] is not None and in_channels != dims[1]:
        raise GhostqError(
            f"{path}: input {input_name!r} is fixed at {dims[1]} channels, {source('in_channels', '--channels')} "
            f"does not match; the model takes {dims[1]} channels"
        )
    classes = pick("classes", (), lambda v: tuple(str(c) for c in (json.loads(v) if isinstance(v, str) else v)))
    nms = pick("nms", None, _nms_kind)
    if nms is None:  # from the output names
        nms = "trt" if all(n in output_names for n in NMS_OUTPUTS) else "none"
        nms = "onnx" if all(n in output_names for n in FLAT_NMS_OUTPUTS) else nms
    if nms not in ("none", "onnx", "trt"):
        raise GhostqError(f"{path}: {META_PREFIX}nms must be none, onnx or trt, got {nms!r}")
    return ModelInfo(
        path=path,
        img_size=img_size,
        in_channels=in_channels,
        classes=classes,
        head=pick("head", "unknown", str),
        nms=nms,
        input_name=input_name,
        output_names=output_names,
        batch=dims[0],
        extra=extra,
    )


def _nms_kind(value: Any) -> str:
    """``ghostq.nms``: a plain kind ("none" / "onnx" / "trt") or a JSON object with its "kind"."""
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        value = value.get("kind")
    return "none" if value in (None, "null", "") else str(value)


# the export contract: each output's layout (its rank; a 4 is a fixed last dimension)
OUTPUT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "scores": ("B", "N", "C"),
    "boxes": ("B", "N", "4"),
    "num_detections": ("B", "1"),
    "detection_boxes": ("B", "K", "4"),
    "detection_scores": ("B", "K"),
    "detection_classes": ("B", "K"),
    "det_batch": ("M",),
    "det_boxes": ("M", "4"),
    "det_scores": ("M",),
    "det_labels": ("M",),
}


def check_outputs(path: Path, names: Sequence[str], shapes: Sequence[Sequence[Any] | None]) -> None:
    """The graph's outputs must be one of the three forms of the export contract, each of its rank (and 4
    box coordinates where the last dimension is fixed); else a one-line error naming the output."""
    forms = (RAW_OUTPUTS, NMS_OUTPUTS, FLAT_NMS_OUTPUTS)
    form = next((f for f in forms if all(n in names for n in f)), None)
    if form is None:
        raise GhostqError(
            f"{path}: outputs {list(names)} are none of {', '.join(str(list(f)) for f in forms)} "
            "(the ghostq export contract)"
        )
    for name in form:
        shape = shapes[list(names).index(name)]
        if shape is None:  # rank unknown to the runtime: checked when decoding
            continue
        layout = OUTPUT_LAYOUTS[name]
        want = "[" + ", ".join(layout) + "]"
        if len(shape) != len(layout):
            raise GhostqError(f"{path}: output {name!r} has rank {len(shape)} (shape {list(shape)}), expected {want}")
        last = shape[-1] if shape else None
        if layout[-1] == "4" and isinstance(last, int) and last > 0 and last != 4:
            raise GhostqError(f"{path}: output {name!r} has shape {list(shape)}, expected {want} (x1 y1 x2 y2)")


class Runtime(ABC):
    """One loaded model on one backend. ``run`` gives the graph's raw outputs; ``infer`` decodes them."""

    backend: str
    info: ModelInfo

    def __init__(self, decode: DecodeSettings | None = None) -> None:
        self.decode = decode or DecodeSettings()

    @abstractmethod
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw named outputs (numpy, on the host) for a float32 [B, C, S, S] batch."""

    def infer(self, batch: np.ndarray) -> list[Detections]:
        """Detections per image of the batch, in input pixels (map back with ``preprocess.unletterbox``)."""
        size = self.info.img_size
        return decode_outputs(self.run(batch), self.decode, (size, size), batch_size=len(batch))

    def describe(self) -> dict[str, Any]:
        """Backend, file and settings, for benchmark records."""
        return {"backend": self.backend, "model": str(self.info.path), "nms": self.info.nms}

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release what the runtime holds (device memory, sessions)."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as a contiguous float32 array, or a one-line error saying what shape is expected."""
        b = np.ascontiguousarray(batch, dtype=np.float32)
        c, s = self.info.in_channels, self.info.img_size
        if b.ndim != 4 or b.shape[1:] != (c, s, s):
            raise GhostqError(f"{self.info.path.name}: input must be [B, {c}, {s}, {s}], got {list(b.shape)}")
        if self.info.batch is not None and b.shape[0] != self.info.batch:
            raise GhostqError(
                f"{self.info.path.name}: the graph has a fixed batch of {self.info.batch}, "
                f"got {b.shape[0]} (export with a dynamic batch)"
            )
        return b


def available_backends() -> dict[str, str]:
    """Backend -> "ok" or why it cannot run here (without loading any model)."""
    out: dict[str, str] = {}
    try:
        import onnxruntime as ort

        have = ort.get_available_providers()
        for backend, provider in ORT_PROVIDERS.items():
            out[backend] = "ok" if provider in have else f"onnxruntime has no {provider} (pip install ghostq[gpu])"
    except ImportError:
        for backend in ORT_PROVIDERS:
            out[backend] = "onnxruntime is not installed (pip install ghostq[deploy])"
    from importlib.util import find_spec

    out["trt"] = "ok" if find_spec("tensorrt") else "tensorrt is not installed (pip install ghostq[trt])"
    out["torch"] = "ok" if find_spec("torch") else "torch is not installed (pip install \"ghostq[train]\")"
    return out


def default_backend(path: str | Path) -> str:
    """The backend a model file runs on by default: .onnx -> ort-cpu, .plan/.engine -> trt, .pt -> torch."""
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "ort-cpu"
    if suffix in ENGINE_SUFFIXES:
        return "trt"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise GhostqError(f"{path}: unknown model type {suffix!r} (expected .onnx, .plan/.engine or .pt)")


def load_runtime(
    path: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    decode: DecodeSettings | None = None,
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> Runtime:
    """Open ``path`` on ``backend`` (default: by suffix). ``threads``: CPU threads (None = library default);
    ``overrides``: classes / img_size / in_channels / head / nms when the file's metadata lacks them."""
    path = Path(path)
    backend = backend or default_backend(path)
    if backend not in BACKENDS:
        raise GhostqError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise GhostqError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    wanted = {"trt": ENGINE_SUFFIXES, "torch": TORCH_SUFFIXES}.get(backend, ONNX_SUFFIXES)
    if suffix not in wanted:
        raise GhostqError(f"{path}: backend {backend} runs {'/'.join(wanted)} files, not {suffix!r}")
    if threads is not None and threads < 1:
        raise GhostqError(f"threads must be >= 1, got {threads}")
    if backend.startswith("ort-"):
        from ghostq.deploy.ort_runtime import OrtRuntime

        return OrtRuntime(path, backend, threads, decode, overrides, **options)
    if backend == "trt":
        from ghostq.deploy.trt_engine import TrtRuntime

        return TrtRuntime(path, decode, overrides, **options)
    from ghostq.deploy.torch_runtime import TorchRuntime

    return TorchRuntime(path, threads, decode, overrides, **options)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), for one-line errors."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def sidecar_meta(engine: Path) -> dict[str, str]:
    """ghostq.* metadata of an engine: ``<engine>.json`` (a JSON object of the same keys), else the same-stem
    ``.onnx`` beside it (:func:`onnx_metadata`), else nothing."""
    side = engine.with_name(engine.name + ".json")
    if side.is_file():
        try:
            data = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise GhostqError(f"{side}: not a JSON object of ghostq.* metadata ({err})") from None
        if not isinstance(data, dict):
            raise GhostqError(f"{side}: not a JSON object of ghostq.* metadata")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    onnx_path = engine.with_suffix(".onnx")
    if onnx_path.is_file():
        return onnx_metadata(onnx_path)
    return {}


def onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file without running it: through the onnx package when installed (it also
    reads graphs that ONNX Runtime cannot load, such as EfficientNMS_TRT ones), else an ONNX Runtime session;
    empty when neither can read it (the metadata is optional: shapes and overrides still apply)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in model.metadata_props}
    except Exception:  # noqa: BLE001 - no onnx package, or it cannot read the file: try onnxruntime
        pass
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        return dict(sess.get_modelmeta().custom_metadata_map)
    except Exception:  # noqa: BLE001
        return {}


def cpu_threads_default() -> int:
    """Cores this process may run on (the affinity mask), the default thread count of benchmarks."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
