"""trtexec command lines (run here), the TensorRT builder's code paths against a stand-in module that records
the calls (TensorRT 10 weak / strong, TensorRT 11), the one-line hint without TensorRT, and real engine
builds under the `tensorrt` marker."""

from __future__ import annotations

import shlex
import sys
import types

import pytest

from ghostq.export.tensorrt_build import INSTALL_HINT, TensorRTUnavailable, build_engine, tensorrt_version
from ghostq.export.trtexec import trtexec_command, write_trtexec_script


def test_trtexec_weak_int8_command() -> None:
    cmd = trtexec_command("model_int8.onnx", "model_int8.plan", (3, 320, 320), "int8", "weak", 1, 2, 8, 512,
                          tensorrt_major=10)
    assert cmd[0] == "/usr/src/tensorrt/bin/trtexec"
    assert "--onnx=model_int8.onnx" in cmd and "--saveEngine=model_int8.plan" in cmd
    assert "--minShapes=images:1x3x320x320" in cmd and "--optShapes=images:2x3x320x320" in cmd
    assert "--maxShapes=images:8x3x320x320" in cmd
    assert "--memPoolSize=workspace:512M" in cmd and "--timingCacheFile=timing.cache" in cmd
    assert "--int8" in cmd and "--fp16" in cmd and "--stronglyTyped" not in cmd


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_strong_has_no_precision_flags(precision: str) -> None:
    cmd = trtexec_command("m.onnx", "m.plan", (4, 64, 64), precision, "strong")
    assert "--stronglyTyped" in cmd and "--int8" not in cmd and "--fp16" not in cmd
    assert "--minShapes=images:1x4x64x64" in cmd


def test_trtexec_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        trtexec_command("m.onnx", "m.plan", (3, 64, 64), "int4")
    with pytest.raises(ValueError):
        trtexec_command("m.onnx", "m.plan", (3, 64, 64), "fp16", min_batch=4, opt_batch=2)


def test_trtexec_script(tmp_path) -> None:
    cmds = [trtexec_command("model_fp16.onnx", "model_fp16.plan", (3, 64, 64), "fp16"),
            trtexec_command("model int8.onnx", "model_int8.plan", (3, 64, 64), "int8")]
    path = write_trtexec_script(tmp_path / "trtexec.sh", cmds, note="jetson")
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and 'cd "$(dirname "$0")"' in text and "# jetson" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("/usr/src")]
    assert [shlex.split(ln) for ln in lines] == cmds  # quoted: a space in a name survives
    assert path.stat().st_mode & 0o111


# ----------------------------------------------------------------------------- stand-in tensorrt module
def _fake_tensorrt(version: str, calls: list, parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Severity(int):
        pass

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    class Input:
        name, shape = "images", (-1, 3, 64, 64)

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return Input()

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger) -> None:
            self.logger = logger

        def parse_from_file(self, path):
            calls.append(("parse", path))
            self.logger.log(3, "parsed")
            return parse_ok

        def get_error(self, i):
            return "unsupported node X"

    class Cache:
        def serialize(self):
            return b"CACHE"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", size))

        def set_flag(self, flag):
            calls.append(("flag", flag))

        def add_optimization_profile(self, p):
            calls.append(("profile", p.shapes))

        def create_timing_cache(self, data):
            calls.append(("cache_in", bytes(data)))
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_cache", ignore_mismatch))

        def get_timing_cache(self):
            return Cache()

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (mn, opt, mx)

    class Builder:
        def __init__(self, logger) -> None:
            self.logger = logger

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            self.logger.log(1 if not build_ok else 3, "building")
            return b"PLAN" if build_ok else None

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, Parser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.init_libnvinfer_plugins = lambda logger, ns: calls.append(("plugins", ns))
    return trt


def _build(monkeypatch, tmp_path, version, typing, precision, **kw):
    calls: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(version, calls, **kw))
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    res = build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", precision, typing, 256, tmp_path / "t.cache", 1, 2, 4)
    return res, calls


def test_trt10_weak_int8_sets_int8_and_fp16(monkeypatch, tmp_path) -> None:
    res, calls = _build(monkeypatch, tmp_path, "10.3.0", "weak", "int8")
    assert ("network_flags", 0) in calls and ("plugins", "") in calls
    assert [c[1] for c in calls if c[0] == "flag"] == ["FP16", "INT8"]
    assert ("workspace", 256 << 20) in calls
    assert ("profile", {"images": ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))}) in calls
    assert ("cache_in", b"") in calls and ("set_cache", False) in calls
    assert (tmp_path / "m.plan").read_bytes() == b"PLAN" and (tmp_path / "t.cache").read_bytes() == b"CACHE"
    assert "parsed" in (tmp_path / "m.log").read_text()
    assert res.typing == "weak" and res.flags == ["FP16", "INT8"] and res.tensorrt_version == "10.3.0"


def test_trt10_strong_sets_the_network_flag_and_no_precision(monkeypatch, tmp_path) -> None:
    (tmp_path / "t.cache").write_bytes(b"OLD")
    res, calls = _build(monkeypatch, tmp_path, "10.8.0", "strong", "int8")
    assert ("network_flags", 1 << 1) in calls and not [c for c in calls if c[0] == "flag"]
    assert ("cache_in", b"OLD") in calls  # the timing cache is reused
    assert res.typing == "strong"


def test_trt11_is_always_strongly_typed(monkeypatch, tmp_path) -> None:
    res, calls = _build(monkeypatch, tmp_path, "11.0.0", "weak", "int8")
    assert ("network_flags", 0) in calls  # the STRONGLY_TYPED flag is deprecated and ignored in 11
    assert not [c for c in calls if c[0] == "flag"]  # BuilderFlag.INT8 / FP16 no longer exist
    assert res.typing == "strong"


def test_parser_and_build_failures_are_one_line(monkeypatch, tmp_path) -> None:
    from ghostq.core.errors import GhostqError

    with pytest.raises(GhostqError, match="parser failed: unsupported node X"):
        _build(monkeypatch, tmp_path, "10.3.0", "weak", "fp32", parse_ok=False)
    with pytest.raises(GhostqError, match="engine build failed"):
        _build(monkeypatch, tmp_path, "10.3.0", "weak", "fp32", build_ok=False)
    assert not (tmp_path / "m.plan").exists()


def test_without_tensorrt_the_hint(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    assert tensorrt_version() is None
    with pytest.raises(TensorRTUnavailable) as err:
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan")
    assert str(err.value) == INSTALL_HINT and "\n" not in INSTALL_HINT and "pip install tensorrt" in INSTALL_HINT


# ----------------------------------------------------------------------------- the real thing
@pytest.mark.tensorrt
@pytest.mark.parametrize(("precision", "typing"), [("fp32", "weak"), ("fp16", "weak"), ("int8", "weak"),
                                                   ("int8", "strong")])
def test_real_engine_build(tmp_path, precision: str, typing: str) -> None:
    trt = pytest.importorskip("tensorrt")
    import numpy as np
    from export_helpers import SIZE, images, tiny_detector

    from ghostq.export.onnx_export import export_onnx
    from ghostq.export.qdq_export import ptq_minmax, write_qdq

    model = tiny_detector()
    fp32 = export_onnx(model, tmp_path / "model_fp32.onnx", SIZE)
    path = tmp_path / "model_fp32.onnx"
    if precision == "fp16":
        export_onnx(model, tmp_path / "model_fp16.onnx", SIZE, half=True)
        path = tmp_path / "model_fp16.onnx"
    elif precision == "int8":
        spec = ptq_minmax(fp32, [images(2)], skip=model.prediction_layer_names())
        path = tmp_path / "model_int8.onnx"
        path.write_bytes(write_qdq(fp32, spec).SerializeToString())
    if int(trt.__version__.split(".")[0]) >= 11 and typing == "weak":
        typing = "strong"
    res = build_engine(path, tmp_path / f"model_{precision}.plan", precision, typing, 256, tmp_path / "timing.cache")
    assert res.engine.stat().st_size > 1000 and (tmp_path / "timing.cache").stat().st_size > 0
    assert res.log.read_text().strip()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(res.engine.read_bytes())
    assert engine is not None and engine.num_io_tensors == 3
    assert np.isfinite(res.seconds)
