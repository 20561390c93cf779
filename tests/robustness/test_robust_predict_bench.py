"""Predict and bench on bad input: outputs that would replace inputs or clash, unwritable outputs, and ONNX
files that do not match what ghostq feeds them; each one exact one-line error, inputs unchanged."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.cli import main
from ghostq.core.errors import GhostqError
from ghostq.core.tiling import list_images
from ghostq.deploy import DecodeSettings, load_runtime
from ghostq.deploy.predict import predict_paths

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto  # noqa: E402

BENCH_FAST = ["--iters", "1", "--warmup", "0", "--threads", "1"]


ONNX_MODELS = Path(__file__).parents[1] / "deploy" / "onnx_models.py"


def _onnx_models():  # noqa: ANN202 - tests/deploy/onnx_models.py as a module (tests have no package)
    spec = importlib.util.spec_from_file_location("onnx_models", ONNX_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meta(size: int | str) -> dict[str, str]:
    return {"ghostq.classes": '["car"]', "ghostq.img_size": str(size), "ghostq.in_channels": "3"}


def blob_model(
    path: Path,
    size: int | str = 64,
    in_type: int = TensorProto.FLOAT,
    scores_shape: tuple[int, ...] = (-1, 1, 1),
    scores_name: str = "scores",
    meta: dict[str, str] | None = None,
) -> Path:
    """The blob detector of tests/deploy/onnx_models.py; ``scores_shape`` / ``scores_name`` / ``in_type`` plant
    contract violations."""
    grid = size if isinstance(size, int) else 64
    return _onnx_models().make_blob_model(path, size, meta=_meta(grid) if meta is None else meta, in_type=in_type,
                                          scores_shape=scores_shape, scores_name=scores_name)


def scene(box: tuple[int, int, int, int], width: int = 80, height: int = 60) -> np.ndarray:
    """Dark RGB image with one bright rectangle."""
    image = np.full((height, width, 3), 40, np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def ghostq(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the `ghostq` entry point; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ghostq", *args])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, message: str) -> None:
    """Exit code 2 and exactly one line on stderr: `error: <message>`."""
    assert (code, err) == (2, f"error: {message}\n")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- item 1: an output folder that holds the inputs -------------------------------------------------------


def test_predict_into_the_input_folder_is_refused_and_inputs_stay(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "m.onnx")
    imgs = tmp_path / "imgs"
    save(imgs / "a.png", scene((10, 10, 30, 30)))
    save(imgs / "b.png", scene((40, 20, 60, 50)))
    before = snapshot(imgs)
    code, err = ghostq(monkeypatch, capsys, "predict", str(imgs), "--model", str(model), "--out", str(imgs))
    one_line_error(
        code,
        err,
        f"{imgs}: the output folder holds input images ({imgs / 'a.png'}); choose a folder outside the inputs",
    )
    assert snapshot(imgs) == before


def test_predict_into_a_parent_of_the_inputs_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    image = save(tmp_path / "sub" / "x.png", scene((10, 10, 30, 30)))
    before = image.read_bytes()
    missing = tmp_path / "no_such.pt"  # loading it would fail: the output check must come first
    code, err = ghostq(monkeypatch, capsys, "predict", str(image), "--model", str(missing), "--out", str(tmp_path))
    one_line_error(
        code, err, f"{tmp_path}: the output folder holds input images ({image}); choose a folder outside the inputs"
    )
    assert image.read_bytes() == before and not (tmp_path / "detections.json").exists()


def test_library_predict_paths_refuses_the_input_folder(tmp_path: Path) -> None:
    rt = load_runtime(blob_model(tmp_path / "m.onnx"), threads=1, decode=DecodeSettings(score_threshold=0.5))
    image = save(tmp_path / "imgs" / "a.png", scene((10, 10, 30, 30)))
    before = image.read_bytes()
    with pytest.raises(GhostqError) as info:
        predict_paths(rt, [image], tmp_path / "imgs")
    assert str(info.value) == (
        f"{tmp_path / 'imgs'}: the output folder holds input images ({image}); choose a folder outside the inputs"
    )
    assert image.read_bytes() == before and sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["a.png"]


# --- item 2: equal file names stay apart --------------------------------------------------------------------


def test_equal_file_names_get_their_relative_paths(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "m.onnx")
    boxes = {"a/x": (10, 10, 30, 30), "a/y": (5, 30, 25, 50), "b/x": (40, 20, 70, 40)}
    for name, box in boxes.items():
        save(tmp_path / "in" / f"{name}.png", scene(box))
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "in" / "a"), str(tmp_path / "in" / "b"), "--model", str(model)]
    code, err = ghostq(
        monkeypatch, capsys, *args, "--out", str(out), "--score", "0.5", "--json", str(tmp_path / "s.json")
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["images"], summary["detections"]) == (3, 3)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a/x.png", "a/y.png", "b/x.png"]
    coco = json.loads((out / "detections.json").read_text())
    assert [(c["file_name"], c["image_id"]) for c in coco] == [("a/x.png", 1), ("a/y.png", 2), ("b/x.png", 3)]
    for c in coco:  # each image's own detection under its own name
        x1, y1, x2, y2 = boxes[c["file_name"][:-4]]
        np.testing.assert_allclose(c["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1.5)
    rows = [line.split() for line in (out / "dota" / "Task2_car.txt").read_text().splitlines()]
    assert [r[0] for r in rows] == ["a/x", "a/y", "b/x"]
    np.testing.assert_allclose([float(v) for v in rows[2][2:]], boxes["b/x"], atol=1.5)
    drawn = np.asarray(Image.open(out / "b" / "x.png"))
    assert drawn.shape == (60, 80, 3) and (drawn != scene(boxes["b/x"])).any()  # the b image, with its box


def test_same_stem_with_two_suffixes_and_a_repeated_file(tmp_path: Path) -> None:
    rt = load_runtime(blob_model(tmp_path / "m.onnx"), threads=1, decode=DecodeSettings(score_threshold=0.5))
    png = save(tmp_path / "in" / "x.png", scene((10, 10, 30, 30)))
    save(tmp_path / "in" / "x.bmp", scene((40, 20, 70, 40)))
    paths = list_images([tmp_path / "in", png])  # x.png twice: listed once
    assert paths == [tmp_path / "in" / "x.bmp", png]
    summary = predict_paths(rt, paths, tmp_path / "out")
    assert (summary["images"], summary["detections"]) == (2, 2)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["x.bmp.png", "x.png.png"]
    ids = [line.split()[0] for line in (tmp_path / "out" / "dota" / "Task2_car.txt").read_text().splitlines()]
    assert ids == ["x.bmp", "x.png"]


# --- item 19: --out names an existing file ------------------------------------------------------------------


def test_predict_out_is_an_existing_file(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "m.onnx")
    image = save(tmp_path / "imgs" / "a.png", scene((10, 10, 30, 30)))
    target = tmp_path / "existing_file.json"
    target.write_text('{"keep": true}\n')
    code, err = ghostq(monkeypatch, capsys, "predict", str(image), "--model", str(model), "--out", str(target))
    one_line_error(code, err, f"{target}: the output folder is an existing file; give a folder (--out DIR)")
    assert target.read_text() == '{"keep": true}\n'


# --- item 17: unwritable outputs, found before any work -----------------------------------------------------


def test_predict_unwritable_out_or_json_before_the_model_loads(
    tmp_path: Path, unwritable_dir: Path, monkeypatch, capsys
) -> None:
    image = save(tmp_path / "imgs" / "a.png", scene((10, 10, 30, 30)))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")  # loading it would fail: the output checks must come first
    code, err = ghostq(monkeypatch, capsys, "predict", str(image), "--model", str(junk), "--out", str(unwritable_dir))
    one_line_error(
        code, err, f"{unwritable_dir}: output folder (--out) is not writable (Not a directory); choose another location"
    )
    summary = unwritable_dir / "s.json"
    code, err = ghostq(
        monkeypatch, capsys, "predict", str(image), "--model", str(junk), "--out", str(tmp_path / "o"),
        "--json", str(summary),
    )  # fmt: skip
    one_line_error(
        code,
        err,
        f"{unwritable_dir}: folder of the summary JSON (--json) is not writable (Not a directory); "
        "choose another location",
    )
    code, err = ghostq(
        monkeypatch, capsys, "predict", str(image), "--model", str(junk), "--out", str(tmp_path / "o"),
        "--json", str(image),
    )  # fmt: skip
    one_line_error(code, err, f"{image}: --json names an input image; give another file name")


def test_bench_unwritable_json_or_md_before_timing(tmp_path: Path, unwritable_dir: Path, monkeypatch, capsys) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(junk), "--json", str(unwritable_dir / "b.json"))
    one_line_error(
        code,
        err,
        f"{unwritable_dir}: folder of the --json file is not writable (Not a directory); choose another location",
    )
    model = blob_model(tmp_path / "m.onnx")
    before = model.read_bytes()
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST, "--md", str(tmp_path))
    one_line_error(code, err, f"{tmp_path}: --md file is a folder; give a file name")
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST, "--json", str(model))
    one_line_error(code, err, f"{model}: --json names a model being timed; give another file name")
    assert model.read_bytes() == before
    code, err = ghostq(
        monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST, "--json", str(tmp_path / "b.json")
    )
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["input"] == [3, 64, 64]


# --- item 16: ONNX files that do not match ------------------------------------------------------------------


def test_bench_img_size_against_a_static_model(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "m128.onnx", size=128)
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST, "--img-size", "96")
    one_line_error(
        code,
        err,
        f"{model}: input 'images' is fixed at 128x128, the requested --img-size 96 does not match; "
        "the model's size is 128",
    )
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST, "--channels", "4")
    one_line_error(
        code,
        err,
        f"{model}: input 'images' is fixed at 3 channels, the requested --channels 4 does not match; "
        "the model takes 3 channels",
    )


def test_metadata_against_a_static_model(tmp_path: Path) -> None:
    model = blob_model(tmp_path / "m.onnx", size=128, meta=_meta(96))
    with pytest.raises(GhostqError) as info:
        load_runtime(model)
    assert str(info.value) == (
        f"{model}: input 'images' is fixed at 128x128, metadata ghostq.img_size='96' does not match; "
        "the model's size is 128"
    )


@pytest.mark.parametrize("size", ["0", "-96"])
def test_zero_or_negative_img_size_metadata(tmp_path: Path, monkeypatch, capsys, size: str) -> None:
    model = blob_model(tmp_path / "m.onnx", size="S", meta=_meta(size))  # dynamic input side
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST)
    one_line_error(code, err, f"{model}: metadata ghostq.img_size='{size}' is not a positive img_size")


def test_uint8_input_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "u8.onnx", in_type=TensorProto.UINT8)
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST)
    one_line_error(
        code,
        err,
        f"{model}: input 'images' is tensor(uint8); ghostq feeds float32 (or float16) images in [0, 1] "
        "(export the model with a float input)",
    )


def test_wrong_output_rank_and_names(tmp_path: Path, monkeypatch, capsys) -> None:
    model = blob_model(tmp_path / "rank.onnx", scores_shape=(-1, 1))
    image = save(tmp_path / "imgs" / "a.png", scene((10, 10, 30, 30)))
    code, err = ghostq(monkeypatch, capsys, "predict", str(image), "--model", str(model), "--out", str(tmp_path / "o"))
    one_line_error(code, err, f"{model}: output 'scores' has rank 2 (shape ['B', 1]), expected [B, N, C]")
    code, err = ghostq(monkeypatch, capsys, "bench", "--model", str(model), *BENCH_FAST)
    one_line_error(code, err, f"{model}: output 'scores' has rank 2 (shape ['B', 1]), expected [B, N, C]")
    other = blob_model(tmp_path / "names.onnx", scores_name="logits")
    with pytest.raises(GhostqError) as info:
        load_runtime(other)
    assert str(info.value) == (
        f"{other}: outputs ['logits', 'boxes'] are none of ['scores', 'boxes'], ['num_detections', "
        "'detection_boxes', 'detection_scores', 'detection_classes'], ['det_batch', 'det_boxes', 'det_scores', "
        "'det_labels'] (the ghostq export contract)"
    )


def test_a_matching_model_still_runs(tmp_path: Path) -> None:
    """The checks refuse only what does not match: a dynamic-size model with --img-size, and the blob."""
    model = blob_model(tmp_path / "dyn.onnx", size="S", meta={})
    with load_runtime(model, threads=1, overrides={"img_size": 64}, decode=DecodeSettings(score_threshold=0.5)) as rt:
        assert (rt.info.img_size, rt.info.in_channels) == (64, 3)
        x = np.zeros((1, 3, 64, 64), np.float32)
        x[:, :, 4:20, 8:30] = 1.0
        det = rt.infer(x)[0]
        np.testing.assert_allclose(det.boxes, [[8, 4, 30, 20]])
