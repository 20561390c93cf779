"""OpenVINO as a runtime: our FP32 / FP16 / INT8 ONNX files on x86 (and ARM) CPUs, fixed threads, static batch.

Registers ``ov-cpu`` (OpenVINO's default inference precision: bf16 on CPUs with AMX / AVX-512 BF16, f32 elsewhere),
``ov-cpu-f32`` (strict f32: INFERENCE_PRECISION_HINT f32) and ``ov-cpu-bf16`` (bf16 asked for; refused where the
CPU has no bf16). Q/DQ files run their quantized convolutions as integer kernels (VNNI / AMX-INT8) whatever the
hint; the hint sets the precision of the float parts. The model facts come from the file's ``ghostq.spec``
metadata as for ONNX Runtime (:func:`ghostq.deploy.model_info.onnx_metadata`).

Each batch size is compiled once for a static input shape [B, C, S, S] (OpenVINO picks its fastest kernels for
known shapes); the first batch size is compiled at load, so a file OpenVINO cannot compile fails there, in one line.
``describe()`` records the precision that ran: the compiled hint, and per op type the runtime precisions of the
executed graph (``Convolution: {"u8": 51, "bf16": 12}``), read from OpenVINO's runtime model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Backend, Runtime
from ghostq.deploy.model_info import OUTPUT_LAYOUTS, model_info, onnx_metadata
from ghostq.deploy.ort_runtime import file_precision, first_line

# backend -> INFERENCE_PRECISION_HINT (None: OpenVINO's default for the CPU)
OV_PRECISIONS: dict[str, str | None] = {"ov-cpu": None, "ov-cpu-f32": "f32", "ov-cpu-bf16": "bf16"}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
COUNTED_OPS = ("Convolution", "FullyConnected", "MatMul", "Pooling", "Concatenation", "Eltwise", "Interpolate")


def _output_name(output: Any) -> str:
    """The ONNX graph output name of an OpenVINO output (a tensor can carry several names: its producer's too)."""
    names = output.get_names()
    known = [n for n in (*OUTPUT_LAYOUTS, "ood") if n in names]
    if known:
        return known[0]
    plain = sorted(n for n in names if not n.startswith("/"))
    return plain[0] if plain else output.get_any_name()


def _dim(d: Any) -> int | str:
    """A static dimension as int, a dynamic one as '?'."""
    return d.get_length() if d.is_static else "?"


class OvRuntime(Runtime):
    """OpenVINO CPU runtime of one ONNX file.

    Options: ``performance_hint`` (LATENCY, the default: one stream, every thread on one request; THROUGHPUT),
    ``static_batch`` (True: compile per batch size for a static shape; False: one dynamic-batch compile),
    ``pinning`` (ENABLE_CPU_PINNING; None: OpenVINO's default).
    """

    def __init__(
        self,
        path: Path,
        backend: str,
        threads: int | None = None,
        decode: DecodeSettings | None = None,
        overrides: Mapping[str, Any] | None = None,
        performance_hint: str = "LATENCY",
        static_batch: bool = True,
        pinning: bool | None = None,
    ) -> None:
        super().__init__(decode)
        import openvino as ov

        if performance_hint not in PERFORMANCE_HINTS:
            raise GhostqError(f"performance_hint must be LATENCY or THROUGHPUT, got {performance_hint!r}")
        self.backend, self.threads, self.static_batch = backend, threads, static_batch
        self._core = ov.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": performance_hint}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        hint = OV_PRECISIONS[backend]
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        if pinning is not None:
            config["ENABLE_CPU_PINNING"] = bool(pinning)
        self._config = config
        try:
            self._model = self._core.read_model(str(path))
        except Exception as err:  # OpenVINO raises RuntimeError with a multi-line message
            raise GhostqError(f"{path}: OpenVINO cannot read it ({_ov_reason(err)})") from None
        inputs = self._model.inputs
        if len(inputs) != 1:
            raise GhostqError(f"{path}: expected one input, the graph has {[i.get_any_name() for i in inputs]}")
        in_type = inputs[0].get_element_type().get_type_name()
        if in_type not in ("f32", "f16"):
            raise GhostqError(
                f"{path}: input {inputs[0].get_any_name()!r} is {in_type}; ghostq feeds float32 (or float16) images "
                "in [0, 1] (export the model with a float input)"
            )
        self._input_dtype = np.float16 if in_type == "f16" else np.float32
        in_shape = tuple(_dim(d) for d in inputs[0].get_partial_shape())
        outs = self._model.outputs
        names = tuple(_output_name(o) for o in outs)
        shapes = [tuple(_dim(d) for d in o.get_partial_shape()) if o.get_partial_shape().rank.is_static else None
                  for o in outs]  # fmt: skip
        meta = onnx_metadata(path) if path.suffix.lower() == ".onnx" else {}
        self.info = model_info(path, meta, inputs[0].get_any_name(), in_shape, names, overrides, shapes)
        self.precision = file_precision(path, self.info.extra)
        self._compiled: dict[int | None, tuple[Any, Any]] = {}
        self._compile(self.info.batch or 1)

    def _compile(self, batch: int) -> tuple[Any, Any]:
        """The compiled model and infer request for ``batch`` (one for every batch when not static)."""
        key: int | None = batch if self.static_batch else None
        found = self._compiled.get(key)
        if found is not None:
            return found
        model = self._model.clone()
        c, s = self.info.in_channels, self.info.img_size
        model.reshape({self.info.input_name: [batch if self.static_batch else -1, c, s, s]})
        try:
            compiled = self._core.compile_model(model, "CPU", self._config)
        except Exception as err:
            raise GhostqError(f"{self.info.path}: OpenVINO cannot compile it ({_ov_reason(err)})") from None
        self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        b = self.check_batch(batch)
        if self._input_dtype != np.float32:
            b = b.astype(self._input_dtype)
        compiled, request = self._compile(len(b))
        result = request.infer({0: b}, share_inputs=True)
        return dict(zip(self.info.output_names, (np.asarray(v) for v in result.values()), strict=True))

    def effective_precision(self) -> dict[str, Any]:
        """What ran: the file's precision, OpenVINO's inference precision hint for the float parts, and per op
        type the runtime precisions of the compiled graph (of the first compiled batch size)."""
        compiled = next(iter(self._compiled.values()))[0]
        counts: dict[str, Counter[str]] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            kind = rt["layerType"].astype(str)
            if kind in COUNTED_OPS:
                counts.setdefault(kind, Counter())[rt["runtimePrecision"].astype(str)] += 1
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # an ov.Type: "bf16", "f32"
        return {
            "file": self.precision,
            "float_parts": {"bf16": "bf16", "f16": "fp16"}.get(hint, "fp32"),
            "inference_precision_hint": hint,
            "ops": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        }

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        prec = self.effective_precision()
        return {
            **super().describe(),
            "threads": self.threads,
            "precision": prec["file"] if prec["file"] == "int8" else prec["float_parts"],
            "effective_precision": prec,
            "config": {k: str(v) for k, v in self._config.items()},
            "static_batch": self.static_batch,
            "openvino": ov.get_version(),
        }

    def close(self) -> None:
        self._compiled.clear()


def _ov_reason(err: BaseException) -> str:
    """The informative line of an OpenVINO error (its first lines name C++ source files)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful or lines)[0][:300] if lines else first_line(err)


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports bf16 among its optimisation capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _backend(name: str) -> Backend:
    """The registry entry of one precision setting."""

    def open_ov(path: Path, threads: int | None, decode: DecodeSettings | None, overrides: Any, **kw: Any) -> Runtime:
        if name == "ov-cpu-bf16" and not cpu_has_bf16():
            raise GhostqError(f"backend {name}: this CPU has no bf16 support in OpenVINO (use ov-cpu or ov-cpu-f32)")
        return OvRuntime(path, name, threads, decode, overrides, **kw)

    def probe() -> str | None:
        if name == "ov-cpu-bf16" and not cpu_has_bf16():
            return "this CPU has no bf16 support in OpenVINO"
        return None

    return Backend(name, (".onnx",), open_ov, ("openvino",), "pip install ghostq[openvino]", default=False,
                   options=("performance_hint", "static_batch", "pinning"), probe=probe)  # fmt: skip


BACKENDS = tuple(_backend(name) for name in OV_PRECISIONS)
