"""The TensorRT engine runtime's control flow against a stand-in of the TensorRT 10 Python API and of the CUDA
runtime (host memory): name-based I/O, one buffer set per batch size, pinned-host staging, the output
allocator for data-dependent outputs, metadata from the sidecar JSON. What it cannot show: that real TensorRT
and libcudart behave as the stand-ins do (tests/deploy/test_deploy_runtimes.py has the real-GPU test)."""

from __future__ import annotations

import ctypes
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from onnx_models import scene

from ghostq.core.errors import GhostqError
from ghostq.deploy import load_runtime, preprocess, unletterbox


class HostCuda:
    """CudaRuntime over host memory: every pointer is a real address of a numpy buffer."""

    def __init__(self) -> None:
        self.live: dict[int, np.ndarray] = {}
        self.copies = 0

    def malloc(self, nbytes: int) -> int:
        buf = np.zeros(max(nbytes, 1), np.uint8)
        self.live[buf.ctypes.data] = buf
        return buf.ctypes.data

    def malloc_host(self, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
        ptr = self.malloc(nbytes)
        return ptr, self.live[ptr][:nbytes].view(dtype).reshape(shape)

    def free(self, ptr: int, host: bool = False) -> None:
        del self.live[ptr]

    def stream(self) -> int:
        return 7

    def copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        ctypes.memmove(dst, src, nbytes)
        self.copies += 1

    def sync(self, stream: int) -> None:
        pass

    lib = types.SimpleNamespace(cudaStreamDestroy=lambda s: None)


def _view(ptr: int, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_byte * max(n, 1)).from_address(ptr), dtype, int(np.prod(shape))).reshape(shape)


def _blob(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blob detector of onnx_models, in numpy: scores [B, 1, 1], boxes [B, 1, 4]."""
    mask = x.mean(1) > 0.9
    out = np.zeros((len(x), 1, 4), np.float32)
    for b, m in enumerate(mask):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[b, 0] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    scores = 1 / (1 + np.exp(-(mask.any((1, 2)) * 24.0 - 20.0)))
    return scores.astype(np.float32).reshape(-1, 1, 1), out


def fake_tensorrt(size: int, flat_nms: bool) -> types.ModuleType:
    """The parts of the TensorRT 10 Python API that TrtRuntime uses."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99-fake"
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.float32, trt.int64 = "f32", "i64"
    trt.nptype = lambda t: {"f32": np.float32, "i64": np.int64}[t]
    trt.init_libnvinfer_plugins = lambda logger, ns: True

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class IOutputAllocator:
        def __init__(self) -> None:
            pass

    outputs = ["det_batch", "det_boxes", "det_scores", "det_labels"] if flat_nms else ["scores", "boxes"]

    class Context:
        def __init__(self) -> None:
            self.shape: tuple[int, ...] | None = None
            self.addr: dict[str, int] = {}
            self.alloc: dict[str, object] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            assert name == "images"
            if not 1 <= shape[0] <= 4:
                return False
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            b = self.shape[0]
            if name == "images":
                return self.shape
            if flat_nms:
                return (-1, 4) if name == "det_boxes" else (-1,)
            return {"scores": (b, 1, 1), "boxes": (b, 1, 4)}[name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def set_output_allocator(self, name: str, allocator: object) -> bool:
            self.alloc[name] = allocator
            return True

        def execute_async_v3(self, stream: int) -> bool:
            x = _view(self.addr["images"], np.float32, self.shape).copy()
            scores, boxes = _blob(x)
            if not flat_nms:
                _view(self.addr["scores"], np.float32, scores.shape)[...] = scores
                _view(self.addr["boxes"], np.float32, boxes.shape)[...] = boxes
                return True
            keep = np.flatnonzero(scores.reshape(-1) > 0.25)
            values = {
                "det_batch": keep.astype(np.int64),
                "det_boxes": boxes[keep, 0],
                "det_scores": scores.reshape(-1)[keep],
                "det_labels": np.zeros(len(keep), np.int64),
            }
            for name, arr in values.items():
                alloc = self.alloc[name]
                ptr = alloc.reallocate_output_async(name, 0, arr.nbytes, 256, stream)
                if arr.nbytes:
                    ctypes.memmove(ptr, arr.ctypes.data, arr.nbytes)
                alloc.notify_shape(name, arr.shape)
            return True

    class Engine:
        names = ["images", *outputs]
        num_io_tensors = len(names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return "in" if name == "images" else "out"

        def get_tensor_dtype(self, name: str) -> str:
            return "i64" if name in ("det_batch", "det_labels") else "f32"

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (-1, 3, size, size)

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            return [(1, 3, size, size), (2, 3, size, size), (4, 3, size, size)]

        def create_execution_context(self) -> Context:
            return Context()

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == b"fake-plan" else None

    trt.Logger, trt.IOutputAllocator, trt.Runtime = Logger, IOutputAllocator, Runtime
    return trt


@pytest.fixture
def host_cuda(monkeypatch: pytest.MonkeyPatch) -> HostCuda:
    cuda = HostCuda()
    monkeypatch.setattr("ghostq.deploy.trt_engine.CudaRuntime", lambda: cuda)
    return cuda


def _plan(tmp_path: Path, size: int) -> Path:
    plan = tmp_path / "model_fp16.plan"
    plan.write_bytes(b"fake-plan")
    meta = {"ghostq.classes": ["car"], "ghostq.input_size": [size, size], "ghostq.head": "sigmoid"}
    (tmp_path / "model_fp16.plan.json").write_text(json.dumps(meta))
    return plan


@pytest.mark.parametrize("flat_nms", [False, True])
def test_engine_runtime_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_cuda: HostCuda, flat_nms: bool):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(64, flat_nms))
    images = [scene(100, 80, (10, 20, 40, 50)), np.zeros((40, 40, 3), np.uint8), scene(64, 64, (3, 4, 30, 20))]
    batch, placements = preprocess(images, 64)
    with load_runtime(_plan(tmp_path, 64)) as rt:
        assert rt.backend == "trt" and rt.info.classes == ("car",) and rt.info.img_size == 64
        assert rt.info.nms == ("onnx" if flat_nms else "none") and rt.info.batch is None
        dets = rt.infer(batch)
        assert [len(d) for d in dets] == [1, 0, 1]
        np.testing.assert_allclose(unletterbox(dets[0].boxes, placements[0])[0], [10, 20, 40, 50], atol=1.5)
        np.testing.assert_allclose(dets[2].boxes[0], [3, 4, 30, 20])
        again = rt.infer(batch[:1])  # another batch size: its own buffers
        np.testing.assert_allclose(again[0].boxes, dets[0].boxes)
        assert sorted(rt._buffers) == [1, 3] and rt.describe()["tensorrt"] == "10.99-fake"
        with pytest.raises(GhostqError, match="outside the engine's profile"):
            rt.run(np.zeros((5, 3, 64, 64), np.float32))
    assert host_cuda.live == {}  # close() freed every device and host buffer


def test_engine_metadata_from_the_same_stem_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_cuda):
    """No sidecar: the metadata comes from model.onnx beside model.plan, even an EfficientNMS_TRT graph that
    ONNX Runtime cannot load."""
    onnx = pytest.importorskip("onnx")
    from onnx_models import blob_meta, make_blob_model

    from ghostq.export.nms_graph import add_efficient_nms_trt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(64, False))
    proto = add_efficient_nms_trt(onnx.load(str(make_blob_model(tmp_path / "raw.onnx", size=64))))
    onnx.helper.set_model_props(proto, {**blob_meta(64, classes=("plane",)), "ghostq.nms": '{"kind": "trt"}'})
    onnx.save(proto, str(tmp_path / "model.onnx"))
    (tmp_path / "model.plan").write_bytes(b"fake-plan")
    with load_runtime(tmp_path / "model.plan") as rt:
        assert rt.info.classes == ("plane",) and rt.info.nms == "trt"


def test_engine_that_does_not_deserialize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_cuda: HostCuda):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(64, False))
    plan = tmp_path / "other.engine"
    plan.write_bytes(b"built elsewhere")
    with pytest.raises(GhostqError, match="cannot deserialize it.*10.99-fake"):
        load_runtime(plan)


def test_engine_without_tensorrt_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    with pytest.raises(GhostqError, match=r"needs the tensorrt package \(pip install ghostq\[trt\]"):
        load_runtime(plan)
