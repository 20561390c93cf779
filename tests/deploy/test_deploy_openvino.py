"""The OpenVINO runtime: the same outputs as ONNX Runtime on an FP32 detector file (strict f32, within 1e-4), the
model facts from the file's metadata, a static compile per batch size, the precision that ran, one-line errors;
the CPU instruction sets parsed from a hand-made /proc/cpuinfo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import make_blob_model, scene

from ghostq.core.errors import GhostqError
from ghostq.deploy import load_runtime, preprocess
from ghostq.deploy.machine import cpu_isa

XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_tile \
amx_int8 amx_bf16 avx_vnni
processor\t: 1
flags\t\t: fpu sse4_2
"""
DESKTOP_AVX2 = "model name\t: AMD Ryzen 5 3600\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp i8mm bf16\n"


def test_cpu_isa_from_hand_made_cpuinfo() -> None:
    isa = cpu_isa(XEON_AMX)
    assert (isa["int8"], isa["bf16"], isa["amx"]) == ("AMX-INT8", "AMX-BF16", True)
    assert {"avx512_vnni", "avx512_bf16", "amx_int8", "avx2", "avx_vnni"} <= set(isa["flags"])
    assert "fpu" not in isa["flags"]  # only the flags that decide inference speed
    assert cpu_isa(DESKTOP_AVX2) == {"flags": ["sse4_2", "avx", "avx2", "fma", "f16c"], "int8": "AVX2",
                                     "bf16": "none", "amx": False}  # fmt: skip
    arm = cpu_isa(ARM)
    assert (arm["int8"], arm["bf16"], arm["amx"]) == ("NEON-I8MM", "ARM-BF16", False)
    assert cpu_isa("") == {"flags": [], "int8": "none", "bf16": "none", "amx": False}


def test_machine_record_has_the_isa() -> None:
    from ghostq.deploy.machine import machine_info

    isa = machine_info()["cpu_isa"]
    assert set(isa) == {"flags", "int8", "bf16", "amx"} and isinstance(isa["flags"], list)


def test_file_precision_from_qdq_nodes_and_metadata(tmp_path: Path) -> None:
    from ghostq.deploy.ort_runtime import file_precision

    qdq = tmp_path / "q.onnx"
    qdq.write_bytes(b"\x08\x07 ... DequantizeLinear ...")
    plain = tmp_path / "f.onnx"
    plain.write_bytes(b"\x08\x07 ... Conv ...")
    assert file_precision(qdq, {}) == "int8" and file_precision(qdq, {"ghostq.precision": "fp16"}) == "int8"
    assert file_precision(plain, {"ghostq.precision": "fp16"}) == "fp16" and file_precision(plain, {}) == "fp32"


ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install ghostq[openvino])")


def test_blob_model_metadata_batches_and_precision(blob_onnx: Path) -> None:
    with load_runtime(blob_onnx, "ov-cpu-f32", threads=1) as rt, load_runtime(blob_onnx, threads=1) as ref:
        assert rt.backend == "ov-cpu-f32" and rt.info.classes == ("car",) and rt.info.img_size == 64
        images = [scene(100, 80, (10, 20, 40, 50)), scene(64, 64, (0, 0, 64, 64)), np.zeros((30, 30, 3), np.uint8)]
        batch, _ = preprocess(images, 64)
        for b in (batch[:1], batch):  # batch 1, then 3: each compiled for its static shape
            got, want = rt.run(b), ref.run(b)
            for name in ("scores", "boxes"):
                np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)
        assert [len(d) for d in rt.infer(batch)] == [1, 1, 0]
        d = rt.describe()
        assert d["precision"] == "fp32" and d["effective_precision"]["inference_precision_hint"] == "f32"
        assert d["config"]["INFERENCE_NUM_THREADS"] == "1" and d["openvino"]
        assert ref.describe()["effective_precision"] == {"file": "fp32", "float_parts": "fp32"}


def test_fixed_batch_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    fixed = make_blob_model(tmp_path / "fixed.onnx", size=32, batch=2)
    rt = load_runtime(fixed, "ov-cpu", threads=1)
    assert rt.info.batch == 2 and rt.run(np.zeros((2, 3, 32, 32), np.float32))["scores"].shape == (2, 1, 1)
    with pytest.raises(GhostqError, match="fixed batch of 2"):
        rt.run(np.zeros((1, 3, 32, 32), np.float32))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(GhostqError, match=r"junk.onnx: OpenVINO cannot read it") as err:
        load_runtime(junk, "ov-cpu")
    assert "\n" not in str(err.value)


def test_bf16_backend_refused_without_bf16(blob_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ghostq.deploy.ov_runtime as ovr
    from ghostq.core.runtime import backends

    monkeypatch.setattr(ovr, "cpu_has_bf16", lambda: False)
    assert backends()["ov-cpu-bf16"].unavailable() == "this CPU has no bf16 support in OpenVINO"
    with pytest.raises(GhostqError, match="no bf16 support"):
        load_runtime(blob_onnx, "ov-cpu-bf16")


def test_openvino_equals_onnx_runtime_on_an_fp32_detector(tmp_path: Path) -> None:
    """A real (tiny) detector exported by ghostq: OpenVINO in strict f32 gives ONNX Runtime's outputs within 1e-4;
    the default precision runs too and says which it used."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ghostq.core.config import Config
    from ghostq.core.spec import spec_from_config
    from ghostq.detect.models.from_spec import build_detector_from_spec
    from ghostq.export.onnx_export import export_onnx

    spec = spec_from_config(Config.model_validate({"data": {"img_size": 64}}), ["car", "ship"])
    torch.manual_seed(0)
    net = build_detector_from_spec(spec).eval()
    path = tmp_path / "model_fp32.onnx"
    export_onnx(net, path, spec=spec)
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    with load_runtime(path, "ov-cpu-f32", threads=1) as rt, load_runtime(path, "ort-cpu", threads=1) as ref:
        assert rt.info.classes == ("car", "ship") and rt.info.spec == ref.info.spec
        got, want = rt.run(x), ref.run(x)
        assert set(got) == set(want) == {"scores", "boxes"}
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)
        conv = rt.describe()["effective_precision"]["ops"]["Convolution"]
        assert set(conv) == {"f32"}  # strict f32: every convolution in f32
    with load_runtime(path, "ov-cpu", threads=1) as rt:
        prec = rt.describe()["effective_precision"]
        assert prec["file"] == "fp32" and prec["float_parts"] in ("bf16", "fp32", "fp16")
        assert np.isfinite(rt.run(x)["scores"]).all()
