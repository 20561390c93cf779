"""Tiled prediction on a deployed model: the same merge as the PyTorch path, result files, the CLI, a real
DOTA image; and the torch reference runtime agrees with ONNX Runtime on an exported detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx_models import make_blob_model, scene
from PIL import Image

from ghostq.core.tiling import list_images
from ghostq.deploy import DecodeSettings, load_runtime
from ghostq.deploy.predict import detect_image, predict_paths


@pytest.fixture
def blob128(tmp_path: Path) -> Path:
    return make_blob_model(tmp_path / "blob128.onnx", size=128)


def test_object_across_tile_border_is_one_detection(tmp_path: Path) -> None:
    model = make_blob_model(tmp_path / "blob256.onnx", size=256)
    box = (230, 100, 290, 140)  # cut by the first tile's right edge (x = 256), whole in the second tile
    rt = load_runtime(model, threads=1, decode=DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=10))
    dets = detect_image(rt, scene(600, 300, box), tile=256, overlap=96)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.boxes[0], box, atol=1.5)
    assert dets.labels.tolist() == [0] and dets.scores[0] > 0.9


def test_tiled_result_equals_the_whole_image_result(tmp_path: Path) -> None:
    model = make_blob_model(tmp_path / "blob128.onnx", size=128)
    rt = load_runtime(model, decode=DecodeSettings(score_threshold=0.5, iou_threshold=0.5, max_det=10))
    image = scene(400, 260, (100, 110, 150, 140))
    image[20:40, 300:330] = 255  # a second object, in another tile
    tiled = detect_image(rt, image, tile=128, overlap=32, batch_size=3)
    assert len(tiled) == 2
    order = np.argsort(tiled.boxes[:, 0])
    np.testing.assert_allclose(tiled.boxes[order], [[100, 110, 150, 140], [300, 20, 330, 40]], atol=1.5)


def test_fixed_batch_graph_gets_padded_chunks(tmp_path: Path) -> None:
    model = make_blob_model(tmp_path / "fixed.onnx", size=128, batch=4)
    rt = load_runtime(model, decode=DecodeSettings(score_threshold=0.5))
    dets = detect_image(rt, scene(300, 140, (20, 20, 60, 60)), tile=128, overlap=32)  # 6 windows
    assert len(dets) == 1


def test_predict_paths_writes_png_coco_and_dota(tmp_path: Path, blob128: Path) -> None:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(scene(300, 200, (100, 50, 140, 90))).save(img_dir / "scene1.png")
    Image.fromarray(scene(90, 90, (10, 10, 30, 30))).save(img_dir / "scene2.png")
    rt = load_runtime(blob128, decode=DecodeSettings(score_threshold=0.5))
    out = tmp_path / "out"
    summary = predict_paths(rt, list_images([img_dir]), out, tile=128, overlap=48)
    assert summary["images"] == 2 and summary["detections"] == 2 and summary["backend"] == "ort-cpu"
    coco = json.loads((out / "detections.json").read_text())
    assert [c["file_name"] for c in coco] == ["scene1.png", "scene2.png"] and coco[0]["category_id"] == 1
    np.testing.assert_allclose(coco[0]["bbox"], [100, 50, 40, 40], atol=1.5)
    lines = (out / "dota" / "Task2_car.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("scene1 0.98")
    png = np.asarray(Image.open(out / "scene1.png"))
    assert png.shape == (200, 300, 3) and (png != scene(300, 200, (100, 50, 140, 90))).any()  # boxes drawn


def test_cli_predict_with_onnx_and_overrides(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ghostq.cli.app import app

    model = make_blob_model(tmp_path / "bare.onnx", size=64, meta={})
    Image.fromarray(scene(120, 90, (30, 30, 60, 50))).save(tmp_path / "a.png")
    out = tmp_path / "pred"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "a.png"),
            "--model",
            str(model),
            "--out",
            str(out),
            "--classes",
            "small vehicle",
            "--score",
            "0.5",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["detections"] == 1
    assert (out / "dota" / "Task2_small-vehicle.txt").is_file() and (out / "a.png").is_file()
    bad = CliRunner().invoke(
        app, ["predict", str(tmp_path / "a.png"), "--model", str(model), "--out", str(out), "--backend", "ort-gpu"]
    )
    assert bad.exit_code != 0 and "unknown backend" in str(bad.exception)


@pytest.mark.realdata
def test_predict_tiles_the_real_dota_image(tmp_path: Path, rs_samples: Path) -> None:
    from ghostq.core.image_io import load_image

    image_path = rs_samples / "dota" / "images" / "P1888.png"
    if not image_path.is_file():
        pytest.skip(f"{image_path} is not in the sample folder")
    model = make_blob_model(tmp_path / "blob.onnx", size=256)
    rt = load_runtime(model, threads=1, decode=DecodeSettings(score_threshold=0.5))
    out = tmp_path / "pred"
    summary = predict_paths(rt, [image_path], out, tile=1024, overlap=200)
    h, w = load_image(image_path).shape[:2]
    assert Image.open(out / "P1888.png").size == (w, h)
    assert summary["images"] == 1 and (out / "detections.json").is_file()
    for path in summary["dota"]:  # DOTA Task2 lines: image score x1 y1 x2 y2, inside the image
        for line in Path(path).read_text().splitlines():
            name, score, *xyxy = line.split()
            x1, y1, x2, y2 = map(float, xyxy)
            assert name == "P1888" and 0.5 < float(score) <= 1 and 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h


@pytest.mark.slow
@pytest.mark.parametrize("logit_clip", [None, {"bound": 2.0}])
def test_torch_runtime_agrees_with_onnx_runtime_on_an_exported_detector(tmp_path: Path, logit_clip) -> None:
    """The reference runtime and ONNX Runtime on the same checkpoint exported by ghostq.export (the contract:
    metadata, scores after LogitClip, boxes in input pixels)."""
    torch = pytest.importorskip("torch")
    export = pytest.importorskip("ghostq.export.onnx_export")
    from ghostq.core.config import Config
    from ghostq.core.spec import spec_from_config
    from ghostq.detect.builders import build_model_from_config
    from ghostq.detect.checkpoint import save_checkpoint

    cfg = Config.model_validate({"data": {"img_size": 64}, "loss": {"logit_clip": logit_clip}})
    torch.manual_seed(0)
    net = build_model_from_config(cfg, 2).eval()
    spec = spec_from_config(cfg, ["car", "ship"])
    payload = {"model": net.state_dict(), "config": cfg.model_dump(mode="json"), "classes": ["car", "ship"],
               "spec": spec.to_dict()}  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "best.pt", payload)
    onnx_path = tmp_path / "model_fp32.onnx"
    clip = spec.logit_clip
    export.export_onnx(net, onnx_path, spec=spec)
    batch = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    ref = load_runtime(ckpt, threads=1)
    got = load_runtime(onnx_path, threads=1)
    assert ref.backend == "torch" and got.backend == "ort-cpu"
    for rt in (ref, got):
        assert (rt.info.classes, rt.info.img_size, rt.info.in_channels, rt.info.head) == (
            ("car", "ship"),
            64,
            3,
            "sigmoid",
        )
    a, b = ref.run(batch), got.run(batch)
    np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-4)
    np.testing.assert_allclose(b["boxes"], a["boxes"], atol=1e-3)
    if clip is not None:  # the bounded scores: every logit within the clip bound
        assert b["scores"].max() <= 1 / (1 + np.exp(-2.0)) + 1e-5
    da, db = ref.infer(batch), got.infer(batch)
    assert [len(d) for d in da] == [len(d) for d in db]
