"""A serialized TensorRT engine as a runtime (TensorRT 10 / 11 name-based I/O API), without torch or pycuda.

Registers the backend ``trt`` for ``.plan`` / ``.engine`` / ``.trt`` files.

Device memory and streams come from the CUDA runtime library itself (``libcudart``, through ctypes): it is
on every machine that runs TensorRT (JetPack ships it; pip TensorRT pulls ``nvidia-cuda-runtime``), so the
engine runs with numpy + tensorrt only. One ``run``: copy the batch into pinned host memory, then
host -> device, ``set_input_shape`` + ``set_tensor_address`` per tensor, ``execute_async_v3`` on a private
stream, device -> host for each output, synchronize. Buffers are allocated once per batch size.

Outputs whose shape is known once the input shape is set (raw ``scores`` / ``boxes``, EfficientNMS_TRT padded
to K rows) get fixed buffers; a data-dependent output (ONNX NonMaxSuppression, which TensorRT 10 builds as
its NMS layer: ``det_*`` [M, ...]) gets device memory from an ``IOutputAllocator`` as TensorRT asks for it,
and is copied back once its shape is known. Engine plugins (EfficientNMS_TRT) are registered with
``init_libnvinfer_plugins`` before deserializing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ghostq.core.detections import DecodeSettings
from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Backend, Runtime
from ghostq.deploy.model_info import model_info, sidecar_meta

_H2D, _D2H = 1, 2  # cudaMemcpyKind


def _cudart_candidates() -> list[str]:
    names = [ctypes.util.find_library("cudart") or ""]
    for root in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/lib/aarch64-linux-gnu"):
        names += sorted(glob.glob(os.path.join(root, "libcudart.so*")), reverse=True)
    for site in sys.path:  # pip wheels: nvidia-cuda-runtime-cu12 / cu13
        names += sorted(glob.glob(os.path.join(site, "nvidia", "cuda_runtime", "lib", "libcudart.so*")), reverse=True)
    names += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    return [n for n in dict.fromkeys(names) if n]


class CudaRuntime:
    """The few CUDA runtime calls an engine needs: malloc / free (device and pinned host), async copies,
    a stream. Errors raise GhostqError with CUDA's own message."""

    def __init__(self) -> None:
        self.lib = None
        for name in _cudart_candidates():
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if self.lib is None:
            raise GhostqError(
                "the CUDA runtime library (libcudart.so) was not found; install the CUDA runtime "
                "(JetPack has it; on a desktop: pip install nvidia-cuda-runtime-cu12)"
            )
        lib = self.lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaMemcpyAsync.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaMallocHost.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    def check(self, code: int, what: str) -> None:
        if code != 0:
            msg = self.lib.cudaGetErrorString(code).decode(errors="replace")
            raise GhostqError(f"CUDA {what} failed: {msg} (error {code})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), max(nbytes, 1)), "cudaMalloc")
        return int(ptr.value)

    def malloc_host(self, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
        """Pinned host memory, and a numpy view of it."""
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMallocHost(ctypes.byref(ptr), max(nbytes, 1)), "cudaMallocHost")
        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(int(ptr.value))
        return int(ptr.value), np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self, ptr: int, host: bool = False) -> None:
        (self.lib.cudaFreeHost if host else self.lib.cudaFree)(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        s = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return int(s.value or 0)

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self.check(self.lib.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def _output_allocator(trt: Any, cuda: CudaRuntime) -> Any:
    """An ``IOutputAllocator`` that keeps one growing device buffer per output and records its shape."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name: str, memory: Any, size: int, alignment: int) -> int:
            ptr, cap = self.buffers.get(tensor_name, (0, 0))
            if size > cap or not ptr:
                if ptr:
                    cuda.free(ptr)
                ptr = cuda.malloc(max(int(size), 1))
                self.buffers[tensor_name] = (ptr, max(int(size), 1))
            return ptr

        def reallocate_output_async(self, tensor_name: str, memory: Any, size: int, alignment: int, stream: Any) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(shape)

        def free(self) -> None:
            for ptr, _ in self.buffers.values():
                cuda.free(ptr)
            self.buffers.clear()

    return OutputAllocator()


class TrtRuntime(Runtime):
    """A ``.plan`` / ``.engine`` file on the GPU (or the Jetson's iGPU)."""

    backend = "trt"

    def __init__(
        self,
        path: Path,
        decode: DecodeSettings | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(decode)
        try:
            import tensorrt as trt
        except ImportError:
            raise GhostqError(
                "backend trt needs the tensorrt package (pip install ghostq[trt]; on a Jetson it comes with JetPack)"
            ) from None
        self.trt = trt
        self.cuda = CudaRuntime()
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self.runtime = trt.Runtime(self.logger)  # kept: the engine must not outlive its runtime
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise GhostqError(
                f"{path}: TensorRT cannot deserialize it (built by another TensorRT version or "
                f"for another GPU? this is TensorRT {trt.__version__})"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        inputs = [n for n in names if is_input[n]]
        if len(inputs) != 1:
            raise GhostqError(f"{path}: expected one input tensor, the engine has {inputs}")
        self.outputs = tuple(n for n in names if not is_input[n])
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        shape = tuple(self.engine.get_tensor_shape(inputs[0]))
        self.info = model_info(Path(path), sidecar_meta(Path(path)), inputs[0], shape, self.outputs, overrides)
        self.stream = self.cuda.stream()
        self._buffers: dict[int, dict[str, tuple[int, int, np.ndarray]]] = {}  # batch -> name -> (dev, host, view)
        self._dynamic: set[str] = set()  # outputs of data-dependent shape, served by the output allocator
        self._allocator: Any = None

    def _allocate(self, batch: int) -> dict[str, tuple[int, int, np.ndarray]]:
        if batch in self._buffers:
            return self._buffers[batch]
        name = self.info.input_name
        shape = (batch, self.info.in_channels, self.info.img_size, self.info.img_size)
        if not self.context.set_input_shape(name, shape):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            raise GhostqError(
                f"{self.info.path.name}: batch {batch} is outside the engine's profile "
                f"({tuple(lo)} .. {tuple(hi)}); rebuild it with a larger max batch"
            )
        bufs = {}
        for n in (name, *self.outputs):
            dims = tuple(self.context.get_tensor_shape(n))
            if any(d < 0 for d in dims):  # data-dependent (NMS layer): TensorRT asks the allocator for memory
                if self._allocator is None:
                    self._allocator = _output_allocator(self.trt, self.cuda)
                self.context.set_output_allocator(n, self._allocator)
                self._dynamic.add(n)
                continue
            nbytes = int(np.prod(dims)) * self.dtypes[n].itemsize
            host, view = self.cuda.malloc_host(nbytes, self.dtypes[n], dims)
            bufs[n] = (self.cuda.malloc(nbytes), host, view)
        self._buffers[batch] = bufs
        return bufs

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        b = self.check_batch(batch)
        bufs = self._allocate(b.shape[0])
        name = self.info.input_name
        self.context.set_input_shape(name, b.shape)
        dev, host, view = bufs[name]
        view[...] = b  # casts to the engine's input dtype (float16 engines)
        self.cuda.copy(dev, host, view.nbytes, _H2D, self.stream)
        for n, (d, _, _) in bufs.items():
            self.context.set_tensor_address(n, d)
        if not self.context.execute_async_v3(self.stream):
            raise GhostqError(f"{self.info.path.name}: TensorRT execution failed (see the TensorRT log above)")
        for n in self.outputs:
            if n not in self._dynamic:
                d, h, v = bufs[n]
                self.cuda.copy(h, d, v.nbytes, _D2H, self.stream)
        self.cuda.sync(self.stream)
        out = {n: bufs[n][2].copy() for n in self.outputs if n not in self._dynamic}
        for n in self._dynamic:  # shapes are known now that the run has finished
            arr = np.empty(self._allocator.shapes[n], self.dtypes[n])
            if arr.nbytes:
                self.cuda.copy(arr.ctypes.data, self._allocator.buffers[n][0], arr.nbytes, _D2H, self.stream)
            out[n] = arr
        if self._dynamic:
            self.cuda.sync(self.stream)
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tensorrt": self.trt.__version__}

    def close(self) -> None:
        for bufs in self._buffers.values():
            for dev, host, _ in bufs.values():
                self.cuda.free(dev)
                self.cuda.free(host, host=True)
        self._buffers.clear()
        if self._allocator is not None:
            self._allocator.free()
        if self.stream:
            self.cuda.lib.cudaStreamDestroy(ctypes.c_void_p(self.stream))
            self.stream = 0


def _open_engine(path: Path, threads: int | None, decode: DecodeSettings | None, overrides: Any) -> Runtime:
    """Registry opener: an engine takes no CPU thread count."""
    return TrtRuntime(path, decode, overrides)


BACKEND = Backend(
    "trt", (".plan", ".engine", ".trt"), _open_engine, ("tensorrt",),
    "pip install ghostq[trt]; on a Jetson it comes with JetPack", cpu_threads=False,
)  # fmt: skip
