"""Runtimes: metadata and overrides, the one interface on ONNX Runtime, clear errors; GPU / TensorRT paths
where those exist (skipped here with the reason)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import NMS_BOXES, NMS_NUM, blob_meta, make_blob_model, make_nms_model, scene

from ghostq.core.errors import GhostqError
from ghostq.core.runtime import Backend, ModelInfo, Runtime, backend_names, register_runtime, unregister_runtime
from ghostq.deploy import DecodeSettings, available_backends, default_backend, load_runtime, preprocess, unletterbox
from ghostq.deploy.model_info import model_info
from ghostq.deploy.ort_runtime import has_qdq

ort = pytest.importorskip("onnxruntime")


def test_metadata_read_and_blob_detected(blob_onnx: Path) -> None:
    with load_runtime(blob_onnx, threads=1) as rt:
        assert rt.backend == "ort-cpu" and rt.info.classes == ("car",)
        assert (rt.info.img_size, rt.info.in_channels, rt.info.head, rt.info.nms) == (64, 3, "sigmoid", "none")
        assert rt.info.batch is None  # dynamic batch
        images = [scene(100, 80, (10, 20, 40, 50)), scene(64, 64, (0, 0, 64, 64)), np.zeros((30, 30, 3), np.uint8)]
        batch, placements = preprocess(images, 64)
        dets = rt.infer(batch)
        assert [len(d) for d in dets] == [1, 1, 0]
        np.testing.assert_allclose(unletterbox(dets[0].boxes, placements[0])[0], [10, 20, 40, 50], atol=1.5)
        np.testing.assert_allclose(dets[1].boxes[0], [0, 0, 64, 64])
        assert dets[0].labels.tolist() == [0] and dets[0].scores[0] == pytest.approx(0.982, abs=1e-3)
        assert rt.describe()["providers"] == ["CPUExecutionProvider"] and rt.describe()["threads"] == 1


def test_overrides_when_metadata_is_absent(tmp_path: Path) -> None:
    bare = make_blob_model(tmp_path / "bare.onnx", size=32, batch=2, meta={})
    rt = load_runtime(bare, overrides={"classes": ["plane"]})
    assert (rt.info.img_size, rt.info.in_channels, rt.info.classes, rt.info.batch) == (32, 3, ("plane",), 2)
    assert rt.info.class_name(0) == "plane" and rt.info.class_name(3) == "class3"
    with pytest.raises(GhostqError, match="fixed batch of 2"):
        rt.run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(GhostqError, match=r"input must be \[B, 3, 32, 32\]"):
        rt.run(np.zeros((2, 3, 16, 16), np.float32))
    # overrides win over metadata
    meta = make_blob_model(tmp_path / "meta.onnx", size=32, meta=blob_meta(32, classes=("a",)))
    assert load_runtime(meta, overrides={"classes": ["b"]}).info.classes == ("b",)


def test_dynamic_input_without_metadata_asks_for_sizes() -> None:
    with pytest.raises(GhostqError, match="--img-size"):
        model_info(Path("m.onnx"), {}, "images", ("B", 3, "S", "S"), ("scores", "boxes"))
    with pytest.raises(GhostqError, match="ghostq.nms must be"):
        model_info(Path("m.onnx"), {"ghostq.nms": "maybe"}, "images", (1, 3, 8, 8), ("scores", "boxes"))
    with pytest.raises(GhostqError, match="ghostq.img_size"):
        model_info(Path("m.onnx"), {"ghostq.img_size": "big"}, "images", (1, 3, 8, 8), ("scores", "boxes"))


def test_in_graph_nms_outputs(nms_onnx: Path) -> None:
    rt = load_runtime(nms_onnx, decode=DecodeSettings(score_threshold=0.05))
    assert rt.info.nms == "trt" and rt.info.classes == ("car", "truck")
    dets = rt.infer(np.zeros((2, 3, 32, 32), np.float32))
    assert len(dets) == 2
    for d in dets:  # the padding row and the 0.01 row are left out
        np.testing.assert_array_equal(d.boxes, NMS_BOXES[:2])
        assert d.labels.tolist() == [1, 0] and NMS_NUM == 3


def test_nms_detected_from_output_names_without_metadata(tmp_path: Path) -> None:
    path = make_nms_model(tmp_path / "nms.onnx")
    outputs = ("det_batch", "det_boxes", "det_scores", "det_labels")
    assert model_info(path, {}, "images", (1, 3, 32, 32), outputs).nms == "onnx"


def test_onnx_nonmaxsuppression_graph_from_the_export(tmp_path: Path) -> None:
    """The export's in-graph ONNX NMS (det_* outputs, data-dependent M) appended to the blob model."""
    onnx = pytest.importorskip("onnx")
    nms_graph = pytest.importorskip("ghostq.export.nms_graph")
    proto = nms_graph.add_onnx_nms(onnx.load(str(make_blob_model(tmp_path / "raw.onnx", size=64))), 0.25, 0.5)
    onnx.helper.set_model_props(proto, {**blob_meta(64), "ghostq.nms": '{"kind": "onnx", "iou_threshold": 0.5}'})
    path = tmp_path / "nms_onnx.onnx"
    onnx.save(proto, str(path))
    rt = load_runtime(path, threads=1)
    assert rt.info.nms == "onnx" and rt.info.output_names == ("det_batch", "det_boxes", "det_scores", "det_labels")
    images = [scene(64, 64, (5, 6, 20, 30)), np.zeros((64, 64, 3), np.uint8), scene(64, 64, (40, 40, 60, 50))]
    batch, _ = preprocess(images, 64)
    dets = rt.infer(batch)
    assert [len(d) for d in dets] == [1, 0, 1]
    np.testing.assert_allclose(dets[0].boxes[0], [5, 6, 20, 30])
    np.testing.assert_allclose(dets[2].boxes[0], [40, 40, 60, 50])


def test_efficient_nms_file_on_onnx_runtime_says_tensorrt_only(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    nms_graph = pytest.importorskip("ghostq.export.nms_graph")
    proto = nms_graph.add_efficient_nms_trt(onnx.load(str(make_blob_model(tmp_path / "raw.onnx", size=64))))
    path = tmp_path / "trt_nms.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(GhostqError, match="EfficientNMS_TRT node is a TensorRT plugin"):
        load_runtime(path)


def test_export_metadata_forms() -> None:
    info = model_info(
        Path("m.onnx"),
        {"ghostq.input_size": "[96, 96]", "ghostq.nms": '{"kind": "trt", "max_det": 100}', "ghostq.classes": '["a"]'},
        "images",
        ("batch", 3, 96, 96),
        ("num_detections", "detection_boxes", "detection_scores", "detection_classes"),
    )
    assert (info.img_size, info.nms, info.classes, info.batch) == (96, "trt", ("a",), None)
    with pytest.raises(GhostqError, match="not square"):
        model_info(Path("m.onnx"), {"ghostq.input_size": "[64, 96]"}, "images", (1, 3, 64, 96), ("scores", "boxes"))
    info = model_info(
        Path("m.onnx"),
        {},
        "images",
        (1, 3, 64, 64),
        ("num_detections", "detection_boxes", "detection_scores", "detection_classes"),
    )
    assert info.nms == "trt"


def test_bad_files_and_choices_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(GhostqError, match="junk.onnx: ONNX Runtime cannot load it"):
        load_runtime(junk)
    with pytest.raises(GhostqError, match="model file not found"):
        load_runtime(tmp_path / "missing.onnx")
    with pytest.raises(GhostqError, match="unknown backend"):
        load_runtime(junk, backend="tflite")
    with pytest.raises(GhostqError, match="runs .plan/.engine/.trt files"):
        load_runtime(junk, backend="trt")
    with pytest.raises(GhostqError, match="unknown model type"):
        default_backend("model.tflite")
    assert default_backend("a.plan") == "trt" and default_backend("b.pt") == "torch"
    assert not has_qdq(junk)


def test_available_backends_say_why() -> None:
    status = available_backends()
    assert set(status) == set(backend_names()) and status["ort-cpu"] == "ok"
    assert {"ort-cpu", "ort-cuda", "ort-trt", "trt", "torch"} <= set(status)
    for backend in ("ort-cuda", "ort-trt"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            assert "onnxruntime-gpu" in status[backend] or "ghostq[gpu]" in status[backend]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has the CUDA provider"
)
def test_gpu_backend_without_gpu_build_is_a_clear_error(blob_onnx: Path) -> None:
    with pytest.raises(GhostqError, match="needs CUDAExecutionProvider.*onnxruntime-gpu"):
        load_runtime(blob_onnx, backend="ort-cuda")


class _FakeRuntime(Runtime):
    """A backend registered by the test: one fixed detection."""

    backend = "fake"

    def __init__(self, path: Path, threads: int | None, decode: DecodeSettings | None, overrides: object) -> None:
        super().__init__(decode)
        self.info = ModelInfo(path, 32, 3, ("thing",))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        boxes = np.tile(np.float32([[[1, 2, 10, 12]]]), (len(batch), 1, 1))
        return {"scores": np.full((len(batch), 1, 1), 0.9, np.float32), "boxes": boxes}


def test_a_registered_backend_is_found_by_suffix_and_listed(tmp_path: Path) -> None:
    model = tmp_path / "m.fake"
    model.write_bytes(b"weights")
    register_runtime(Backend("fake", (".fake",), _FakeRuntime, hint="nothing to install"))
    try:
        assert available_backends()["fake"] == "ok" and "fake" in backend_names()
        assert default_backend(model) == "fake"
        with load_runtime(model) as rt:
            dets = rt.infer(np.zeros((2, 3, 32, 32), np.float32))
        assert rt.backend == "fake" and [d.labels.tolist() for d in dets] == [[0], [0]]
        np.testing.assert_allclose(dets[0].boxes, [[1, 2, 10, 12]])
        register_runtime(Backend("needy", (".needy",), _FakeRuntime, ("no_such_module_here",), "pip install needy"))
        (tmp_path / "m.needy").write_bytes(b"")
        assert available_backends()["needy"] == "no_such_module_here is not installed (pip install needy)"
        with pytest.raises(GhostqError, match=r"needs the no_such_module_here package \(pip install needy"):
            load_runtime(tmp_path / "m.needy")
    finally:
        unregister_runtime("fake")
        unregister_runtime("needy")
    with pytest.raises(GhostqError, match="unknown model type '.fake'"):
        default_backend(model)


def _needs_provider(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        name not in ort.get_available_providers(), reason=f"onnxruntime here has no {name} (needs onnxruntime-gpu)"
    )


@pytest.mark.gpu
@_needs_provider("CUDAExecutionProvider")
def test_ort_cuda_matches_cpu(blob_onnx: Path) -> None:
    batch, _ = preprocess([scene(100, 80, (10, 20, 40, 50))] * 3, 64)
    cpu = load_runtime(blob_onnx, "ort-cpu").run(batch)
    gpu = load_runtime(blob_onnx, "ort-cuda").run(batch)
    for name in cpu:
        np.testing.assert_allclose(gpu[name], cpu[name], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.tensorrt
@_needs_provider("TensorrtExecutionProvider")
def test_ort_tensorrt_matches_cpu(blob_onnx: Path, tmp_path: Path) -> None:
    batch, _ = preprocess([scene(100, 80, (10, 20, 40, 50))], 64)
    cpu = load_runtime(blob_onnx, "ort-cpu").infer(batch)
    trt = load_runtime(blob_onnx, "ort-trt", trt_cache_dir=tmp_path / "cache").infer(batch)
    np.testing.assert_allclose(trt[0].boxes, cpu[0].boxes, atol=0.5)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_engine_matches_onnx_runtime(blob_onnx: Path, tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(blob_onnx.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    config.add_optimization_profile(profile)
    plan = tmp_path / "blob.plan"
    plan.write_bytes(bytes(builder.build_serialized_network(network, config)))
    batch, _ = preprocess([scene(100, 80, (10, 20, 40, 50)), scene(50, 50, (5, 5, 20, 20))], 64)
    ref = load_runtime(blob_onnx).infer(batch)  # metadata comes from the same-stem .onnx beside the plan
    with load_runtime(plan) as rt:
        assert rt.backend == "trt" and rt.info.classes == ("car",)
        got = rt.infer(batch)
        got_again = rt.infer(batch[:1])  # another batch size: its own buffers
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g.boxes, r.boxes, atol=0.5)
    np.testing.assert_allclose(got_again[0].boxes, ref[0].boxes, atol=0.5)
