"""The synthetic aerial set: determinism, object statistics and scale, label geometry, output folder rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ghostq.core.errors import GhostqError
from ghostq.detect.data.classes import SYNTHETIC
from ghostq.detect.data.synthetic import (
    MARKER,
    ensure_synthetic,
    generate_synthetic,
    load_synthetic,
    render_scene,
)

SMALL, LARGE, PLANE, SHIP, TANK = range(5)


@pytest.fixture(scope="module")
def scenes() -> list:
    """16 images of 384 px (about 0.8 s): enough for every class to appear."""
    return [render_scene(384, 0, i) for i in range(16)]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate_synthetic(out, images=4, size=192, seed=3, ir=True, val_frac=0.25)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _signed_area(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0::2].astype(np.float64), poly[:, 1::2].astype(np.float64)
    return (np.sum(x * np.roll(y, -1, 1), 1) - np.sum(y * np.roll(x, -1, 1), 1)) / 2


def test_same_seed_same_bytes(tmp_path: Path, small_set: Path) -> None:
    again = tmp_path / "again"
    generate_synthetic(again, images=4, size=192, seed=3, ir=True, val_frac=0.25)
    assert _files(again) == _files(small_set)
    other = render_scene(192, 4, 0)
    assert not np.array_equal(other.rgb, render_scene(192, 3, 0).rgb)


def test_image_depends_only_on_seed_and_index_and_ir_leaves_rgb_alone(small_set: Path) -> None:
    from PIL import Image

    with_ir, without = render_scene(192, 3, 2, ir=True), render_scene(192, 3, 2, ir=False)
    assert np.array_equal(with_ir.rgb, without.rgb) and without.ir is None
    assert with_ir.ir.shape == (192, 192) and with_ir.ir.dtype == np.uint8
    assert np.array_equal(np.asarray(Image.open(small_set / "images" / "synth_00002.png")), with_ir.rgb)
    assert np.array_equal(np.asarray(Image.open(small_set / "images_ir" / "synth_00002.png")), with_ir.ir)


def test_every_class_present_and_many_small_objects(scenes: list) -> None:
    labels = np.concatenate([s.labels for s in scenes])
    counts = np.bincount(labels, minlength=5)
    assert (counts > 0).all(), counts
    assert counts[SMALL] / len(scenes) >= 10  # many vehicles per image
    sides = np.concatenate(
        [np.maximum(s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]) for s in scenes]
    )
    assert np.mean(sides < 24) > 0.6  # most objects are small, as in DOTA


def test_object_sizes_follow_the_fixed_ground_resolution(scenes: list) -> None:
    """Polygon side lengths: edge 0-1 is the width (front), edge 1-2 the length; same at any image size."""
    expected = {
        SMALL: ((6, 9), (12, 18)),
        LARGE: ((10, 14), (28, 40)),
        PLANE: ((29.75, 73.5), (35, 70)),
        SHIP: ((12, 20), (40, 80)),
        TANK: ((14, 40.5), (14, 40.5)),
    }
    polys = np.concatenate([s.polygons for s in scenes]).reshape(-1, 4, 2).astype(np.float64)
    labels = np.concatenate([s.labels for s in scenes])
    width = np.linalg.norm(polys[:, 1] - polys[:, 0], axis=1)
    length = np.linalg.norm(polys[:, 2] - polys[:, 1], axis=1)
    for cls, ((w0, w1), (l0, l1)) in expected.items():
        m = labels == cls
        assert np.all((width[m] > w0 - 0.2) & (width[m] < w1 + 0.2)), (
            SYNTHETIC[cls],
            width[m].min(),
            width[m].max(),
        )
        assert np.all((length[m] > l0 - 0.2) & (length[m] < l1 + 0.2)), (SYNTHETIC[cls], length[m].min())
    big = render_scene(768, 0, 0)
    assert np.all(
        np.linalg.norm(
            big.polygons[big.labels == SMALL].reshape(-1, 4, 2)[:, 1]
            - big.polygons[big.labels == SMALL].reshape(-1, 4, 2)[:, 0],
            axis=1,
        )
        < 9.2
    )


def test_boxes_inside_polygons_consistent_rounded_clockwise(scenes: list) -> None:
    for s in scenes:
        h, w = s.rgb.shape[:2]
        assert s.boxes.dtype == np.float32 and s.polygons.dtype == np.float32
        assert np.all(s.boxes[:, :2] >= 0) and np.all(s.boxes[:, 2] <= w) and np.all(s.boxes[:, 3] <= h)
        assert np.all(s.boxes[:, 2] > s.boxes[:, 0]) and np.all(s.boxes[:, 3] > s.boxes[:, 1])
        xs, ys = s.polygons[:, 0::2], s.polygons[:, 1::2]
        assert np.array_equal(s.boxes, np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1))
        tenths = s.polygons.astype(np.float64) * 10
        assert np.allclose(tenths, np.round(tenths), atol=1e-3)  # 0.1 px: the DOTA text round-trips exactly
        assert np.all(_signed_area(s.polygons) > 0)  # clockwise on screen (y down), DOTA order


def test_objects_barely_overlap(scenes: list) -> None:
    """Rasterized label polygons: each object shares only a sliver of its pixels with its neighbours."""
    from ghostq.detect.data.synthetic_scene import raster

    for s in scenes[:8]:
        size = s.rgb.shape[0]
        count = np.zeros((size, size), np.int32)
        masks = [raster(p.reshape(4, 2).astype(np.float64), size) for p in s.polygons]
        for x0, y0, m in masks:
            count[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] += m
        shared = np.array(
            [(count[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m] > 1).mean() for x0, y0, m in masks]
        )
        assert shared.max() < 0.35 and shared.mean() < 0.06, (shared.max(), shared.mean())


def test_output_layout_and_coco(small_set: Path) -> None:
    stems = [f"synth_{i:05d}" for i in range(4)]
    for stem in stems:
        assert (small_set / "images" / f"{stem}.png").is_file()
        assert (small_set / "images_ir" / f"{stem}.png").is_file()
        lines = (small_set / "labelTxt" / f"{stem}.txt").read_text().splitlines()
        assert lines[:2] == ["imagesource:ghostq-synthetic", "gsd:0.3"]
    coco = json.loads((small_set / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC)
    assert [im["file_name"] for im in coco["images"]] == [f"images/{s}.png" for s in stems]
    assert [im["ir_file_name"] for im in coco["images"]] == [f"images_ir/{s}.png" for s in stems]
    train, val = (json.loads((small_set / n).read_text()) for n in ("train.json", "val.json"))
    tr, va = {im["id"] for im in train["images"]}, {im["id"] for im in val["images"]}
    assert len(va) == 1 and not tr & va and tr | va == {im["id"] for im in coco["images"]}
    assert len(train["annotations"]) + len(val["annotations"]) == len(coco["annotations"])
    assert all(a["image_id"] in va for a in val["annotations"])
    marker = json.loads((small_set / MARKER).read_text())
    assert marker["complete"] and marker["params"]["seed"] == 3 and marker["files"] == stems
    assert (small_set / "preview.png").stat().st_size > 1000


def test_returned_records_equal_annotations_json(small_set: Path, tmp_path: Path) -> None:
    ds = generate_synthetic(tmp_path / "s", images=4, size=192, seed=3, ir=True, val_frac=0.25)
    back = load_synthetic(tmp_path / "s")
    assert ds.classes == back.classes == SYNTHETIC
    for a, b in zip(ds.records, back.records, strict=True):
        assert a.file_name == b.file_name and (a.width, a.height) == (b.width, b.height)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.polygons, b.polygons)
        assert np.array_equal(a.labels, b.labels) and a.ir_path == b.ir_path


def test_round_trip_through_the_dota_loader(small_set: Path) -> None:
    formats = pytest.importorskip(
        "ghostq.detect.data.formats", reason="the dataset loaders are not there yet"
    )
    if not hasattr(formats, "load_dataset"):
        pytest.skip("ghostq.detect.data.formats.load_dataset is not there yet")
    ours = load_synthetic(small_set)
    loaded = formats.load_dataset("dota", small_set)
    assert [r.file_name for r in loaded.records] == [r.file_name for r in ours.records]
    for a, b in zip(ours.records, loaded.records, strict=True):
        assert (a.width, a.height) == (b.width, b.height)
        assert [ours.classes[i] for i in a.labels] == [loaded.classes[i] for i in b.labels]
        assert np.array_equal(a.polygons, b.polygons) and np.array_equal(a.boxes, b.boxes)
        assert not b.difficult.any()
        assert b.ir_path is not None and b.ir_path.resolve() == a.ir_path


def test_refuses_foreign_folder_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(GhostqError, match="not empty"):
        generate_synthetic(out, images=1, size=96)
    assert not (out / "images").exists()
    generate_synthetic(out, images=1, size=96, force=True)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "images" / "synth_00000.png").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(GhostqError, match="not a folder"):
        generate_synthetic(tmp_path / "file", images=1, size=96)


def test_regenerating_replaces_a_previous_set_and_removes_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "s"
    generate_synthetic(out, images=3, size=96, ir=True, val_frac=0.4)
    generate_synthetic(out, images=2, size=96, ir=False, val_frac=0)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["synth_00000.png", "synth_00001.png"]
    assert sorted(p.name for p in (out / "labelTxt").iterdir()) == ["synth_00000.txt", "synth_00001.txt"]
    assert not (out / "images_ir").exists() and not (out / "train.json").exists()
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2


def test_ensure_reuses_a_complete_set_and_regenerates_on_change(tmp_path: Path) -> None:
    out = tmp_path / "s"
    first = ensure_synthetic(out, images=2, size=96, seed=1)
    stamp = (out / "annotations.json").stat().st_mtime_ns
    os.utime(out / "annotations.json", ns=(stamp - 10**9, stamp - 10**9))
    again = ensure_synthetic(out, images=2, size=96, seed=1)
    assert (out / "annotations.json").stat().st_mtime_ns == stamp - 10**9  # not rewritten
    assert [r.file_name for r in again.records] == [r.file_name for r in first.records]
    pairs = zip(first.records, again.records, strict=True)
    assert all(np.array_equal(a.polygons, b.polygons) for a, b in pairs)
    ensure_synthetic(out, images=2, size=96, seed=2)
    assert json.loads((out / MARKER).read_text())["params"]["seed"] == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": 0}, "images"),
        ({"size": 32}, "size"),
        ({"seed": -1}, "seed"),
        ({"val_frac": 1.0}, "val_frac"),
    ],
)
def test_bad_parameters_are_clear_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(GhostqError, match=match):
        generate_synthetic(tmp_path / "s", **{"images": 1, "size": 96, **kwargs})
    assert not (tmp_path / "s").exists()
