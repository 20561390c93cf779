"""ONNX Runtime as a runtime: the CPU, CUDA or TensorRT execution provider, fixed threads, no silent fallback.

Registers the backends ``ort-cpu`` (the default for ``.onnx``), ``ort-cuda`` and ``ort-trt`` (both need the
onnxruntime-gpu build; TensorRT falls back to CUDA, then CPU, per node).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Backend, Runtime
from ghostq.deploy.model_info import model_info

ORT_PROVIDERS = {
    "ort-cpu": "CPUExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-trt": "TensorrtExecutionProvider",
}
INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}  # ONNX Runtime type -> what is fed


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), for one-line errors."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def has_qdq(path: Path) -> bool:
    """Whether an ONNX file holds Q/DQ nodes (op type names are plain strings in the protobuf)."""
    with open(path, "rb") as f:
        return b"DequantizeLinear" in f.read()


def file_precision(path: Path, extra: Mapping[str, str]) -> str:
    """The precision a model file is stored in: int8 (Q/DQ nodes), else its ``ghostq.precision`` (fp16 / fp32)."""
    if has_qdq(path):
        return "int8"
    return "fp16" if extra.get("ghostq.precision") == "fp16" else "fp32"


class OrtRuntime(Runtime):
    """ONNX Runtime session on one execution provider; a silent fallback to another provider is an error.

    Options: ``device_id`` (GPU), ``trt_fp16`` (TensorRT provider builds FP16 where the graph allows),
    ``trt_cache_dir`` (engine + timing cache, default ``<model dir>/trt_cache``), ``optimization``
    (all / extended / basic / none), ``spinning`` (None: ORT default; False: idle threads sleep instead of
    busy-waiting, which interleaved comparisons need so one session's spinning does not slow the next).
    """

    def __init__(
        self,
        path: Path,
        backend: str,
        threads: int | None = None,
        decode: DecodeSettings | None = None,
        overrides: Mapping[str, Any] | None = None,
        device_id: int = 0,
        trt_fp16: bool = True,
        trt_cache_dir: str | Path | None = None,
        optimization: str = "all",
        spinning: bool | None = None,
    ) -> None:
        super().__init__(decode)
        import onnxruntime as ort

        self.backend, self.threads = backend, threads
        provider = ORT_PROVIDERS[backend]
        have = ort.get_available_providers()
        if provider not in have:
            raise GhostqError(
                f"backend {backend} needs {provider}, which this onnxruntime lacks (it has "
                f"{', '.join(have)}); install onnxruntime-gpu (pip install ghostq[gpu])"
            )
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[optimization]
        if threads is not None:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        if spinning is not None:  # idle intra-op threads busy-wait for work (ORT default) or sleep
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.spinning = spinning
        cuda = ("CUDAExecutionProvider", {"device_id": device_id})
        if backend == "ort-cpu":
            providers: list[Any] = ["CPUExecutionProvider"]
        elif backend == "ort-cuda":
            providers = [cuda, "CPUExecutionProvider"]
        else:
            cache = Path(trt_cache_dir) if trt_cache_dir else path.parent / "trt_cache"
            trt_opts = {
                "device_id": device_id,
                "trt_fp16_enable": trt_fp16,
                "trt_int8_enable": has_qdq(path),  # explicit quantization: Q/DQ graphs build in INT8
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
            }
            providers = [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as err:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
            hint = ""
            if b"EfficientNMS_TRT" in path.read_bytes():
                hint = (
                    "; its EfficientNMS_TRT node is a TensorRT plugin: run the engine (.plan), or the file without it"
                )
            raise GhostqError(f"{path}: ONNX Runtime cannot load it ({first_line(err)}){hint}") from None
        active = self.session.get_providers()
        if not active or active[0] != provider:
            raise GhostqError(
                f"{path}: {provider} did not initialise (active: {', '.join(active)}); "
                "check the CUDA / TensorRT libraries onnxruntime-gpu needs"
            )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise GhostqError(f"{path}: expected one input, the graph has {[i.name for i in inputs]}")
        if inputs[0].type not in INPUT_DTYPES:
            raise GhostqError(
                f"{path}: input {inputs[0].name!r} is {inputs[0].type}; ghostq feeds float32 (or float16) images "
                "in [0, 1] (export the model with a float input)"
            )
        self._input_dtype = INPUT_DTYPES[inputs[0].type]
        try:
            meta = self.session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError:
            raise GhostqError(f"{path}: its metadata_props are not valid UTF-8 (a damaged file?)") from None
        outs = self.session.get_outputs()
        names = tuple(o.name for o in outs)
        shapes = [None if o.shape is None else tuple(o.shape) for o in outs]
        self.info = model_info(path, meta, inputs[0].name, tuple(inputs[0].shape), names, overrides, shapes)
        self.precision = file_precision(path, self.info.extra)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        b = self.check_batch(batch)
        if self._input_dtype != np.float32:
            b = b.astype(self._input_dtype)
        outs = self.session.run(None, {self.info.input_name: b})
        return dict(zip(self.info.output_names, outs, strict=True))

    def _float_parts(self) -> str:
        """Precision of the float ops: fp32 on the CPU provider (it runs an fp16 file's ops mostly in fp32 through
        casts), else the file's."""
        return "fp16" if self.backend != "ort-cpu" and self.precision == "fp16" else "fp32"

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            **super().describe(),
            "providers": self.session.get_providers(),
            "threads": self.threads,
            "spinning": "default" if self.spinning is None else self.spinning,
            "precision": self.precision,  # a Q/DQ file's quantized ops run as integer kernels
            "effective_precision": {"file": self.precision, "float_parts": self._float_parts()},
            "onnxruntime": ort.__version__,
        }


def _backend(name: str) -> Backend:
    """The registry entry of one execution provider."""
    provider = ORT_PROVIDERS[name]

    def open_ort(path: Path, threads: int | None, decode: DecodeSettings | None, overrides: Any, **kw: Any) -> Runtime:
        return OrtRuntime(path, name, threads, decode, overrides, **kw)

    def probe() -> str | None:
        import onnxruntime as ort

        have = ort.get_available_providers()
        return None if provider in have else f"onnxruntime has no {provider} (pip install ghostq[gpu])"

    options = ("device_id", "trt_fp16", "trt_cache_dir", "optimization", "spinning")
    return Backend(name, (".onnx",), open_ort, ("onnxruntime",), "pip install ghostq[deploy]",
                   default=name == "ort-cpu", options=options, probe=probe)  # fmt: skip


BACKENDS = tuple(_backend(name) for name in ORT_PROVIDERS)
