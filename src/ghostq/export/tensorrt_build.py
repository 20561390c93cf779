"""TensorRT engine builds from the exported ONNX files, through TensorRT's Python API (imported lazily).

- TensorRT 10: ``typing="weak"`` builds with precision flags: FP16 for the FP16 file, INT8 + FP16 for the Q/DQ
  file (explicit quantization: the Q/DQ nodes set the INT8 layers; FP16 lets the rest run in half precision);
  ``typing="strong"`` creates the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` and sets no
  precision flag (the ONNX's types and Q/DQ nodes decide).
- TensorRT 11: always strongly typed; the precision flags and calibrators are gone, so none is set.
Both: the ONNX parser with TensorRT's plugins registered (EfficientNMS_TRT), an optimization profile over the
batch axis, a workspace limit (``MemoryPoolType.WORKSPACE``), a timing cache read before and written after
the build, and the builder's log written next to the engine.

Without the ``tensorrt`` package: :class:`TensorRTUnavailable` with a one-line install hint.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_write_bytes, atomic_write_text
from ghostq.core.errors import GhostqError

INSTALL_HINT = (
    "TensorRT is not installed: `pip install tensorrt` (x86-64 with an NVIDIA GPU) or JetPack's "
    "python3-libnvinfer on a Jetson; run export/trtexec.sh there instead"
)


class TensorRTUnavailable(GhostqError):
    """The tensorrt package cannot be imported (message: the install hint)."""


@dataclass
class BuildResult:
    """One engine build: where things went and how long it took."""

    engine: Path
    log: Path
    timing_cache: Path | None
    tensorrt_version: str
    typing: str  # "weak" or "strong" (what was actually used)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"engine": str(self.engine), "log": str(self.log), "timing_cache": str(self.timing_cache),
                "tensorrt_version": self.tensorrt_version, "typing": self.typing, "flags": self.flags,
                "seconds": round(self.seconds, 3)}


def import_tensorrt() -> Any:
    """The tensorrt module, or TensorRTUnavailable with the install hint."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        raise TensorRTUnavailable(INSTALL_HINT) from None


def tensorrt_version() -> str | None:
    """The installed TensorRT version, None when absent."""
    try:
        return import_tensorrt().__version__
    except TensorRTUnavailable:
        return None


def _major(version: str) -> int:
    return int(version.split(".")[0])


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str = "fp32",
    typing: str = "weak",
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
) -> BuildResult:
    """Build and serialize an engine (``.plan``) from an ONNX file; see the module docstring.

    ``precision`` names the file's kind ("fp32", "fp16", "int8"): it picks the weakly typed flags on
    TensorRT 10 and is otherwise informative. The log goes to ``<engine>.log``.
    """
    trt = import_tensorrt()
    version = str(trt.__version__)
    major = _major(version)
    if major < 10:
        raise GhostqError(f"TensorRT {version} found; ghostq builds with TensorRT 10 or 11")
    if typing not in ("weak", "strong"):
        raise ValueError(f"typing must be 'weak' or 'strong', got {typing!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    log_path = engine_path.with_suffix(".log")
    strong = typing == "strong" or major >= 11
    logger = _make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0
    if strong and major == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        _write_log(log_path, logger.lines)
        raise GhostqError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    set_flags = []
    if not strong:  # TensorRT 10 weakly typed
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            set_flags.append("FP16")
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            set_flags.append("INT8")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        dims = list(inp.shape)
        rest = tuple(int(d) for d in dims[1:])
        profile.set_shape(inp.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.time()
    plan = builder.build_serialized_network(network, config)
    seconds = time.time() - t0
    _write_log(log_path, logger.lines)
    if plan is None:
        tail = " | ".join(line for line in logger.lines if "ERROR" in line)[-400:]
        raise GhostqError(f"{onnx_path}: TensorRT engine build failed (log: {log_path}): {tail}")
    atomic_write_bytes(engine_path, bytes(plan))
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return BuildResult(engine_path, log_path, cache_path, version, "strong" if strong else "weak", set_flags, seconds)


def _make_logger(trt: Any) -> Any:
    class _Logger(trt.ILogger):
        """Collects every message (the build log) at INFO and above."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.INFO):
                self.lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return _Logger()


def _write_log(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "\n".join(lines) + "\n")
