"""DOTA-style tiling: windows cover the image like DOTA_devkit, the area rule, clipping, files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ghostq.core.errors import GhostqError
from ghostq.core.records import Dataset, ImageRecord
from ghostq.detect.data.tiling import (
    clip_polygon,
    polygon_area,
    reduce_to_quad,
    split_dataset,
    tile_name,
    tile_objects,
    tile_windows,
)


def devkit_windows(width: int, height: int, subsize: int, gap: int) -> list[tuple[int, int]]:
    """The loop of DOTA_devkit ImgSplit_multi_process.SplitSingle (left/up of each patch)."""
    slide, out, left = subsize - gap, [], 0
    while left < width:
        if left + subsize >= width:
            left = max(width - subsize, 0)
        up = 0
        while up < height:
            if up + subsize >= height:
                up = max(height - subsize, 0)
            out.append((left, up))
            if up + subsize >= height:
                break
            up += slide
        if left + subsize >= width:
            break
        left += slide
    return out


@settings(max_examples=150, deadline=None)
@given(w=st.integers(1, 700), h=st.integers(1, 700), tile=st.integers(16, 300), data=st.data())
def test_windows_cover_the_image_and_match_devkit(w: int, h: int, tile: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    wins = tile_windows(w, h, tile, overlap)
    assert [(x0, y0) for x0, y0, _, _ in wins] == devkit_windows(w, h, tile, overlap)
    cover = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in wins:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert x1 - x0 == min(tile, w) and y1 - y0 == min(tile, h)  # full tiles; the last one snapped back
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert len(set(wins)) == len(wins)


def test_windows_examples() -> None:
    assert tile_windows(1800, 1000, 1024, 200) == [(0, 0, 1024, 1000), (776, 0, 1800, 1000)]
    assert tile_windows(500, 400, 1024, 200) == [(0, 0, 500, 400)]  # smaller than a tile: kept as is
    xs = sorted({w[0] for w in tile_windows(3000, 100, 1024, 200)})
    assert xs == [0, 824, 1648, 1976]
    with pytest.raises(GhostqError, match="overlap"):
        tile_windows(100, 100, 64, 64)


def _rec(
    boxes: list,
    polygons: list | None = None,
    difficult: list | None = None,
    size=(300, 200),
    path: Path = Path("x.png"),
) -> ImageRecord:
    n = len(boxes)
    return ImageRecord(
        file_name=f"images/{path.name}",
        path=path,
        width=size[0],
        height=size[1],
        boxes=boxes,
        labels=list(range(n)),
        difficult=difficult or [False] * n,
        polygons=polygons,
    )


def test_area_rule_kept_ignored_dropped() -> None:
    rec = _rec(
        [
            [10, 10, 50, 40],  # 0 inside: kept as is
            [80, 10, 105, 30],  # 1 80% inside: kept, clipped, not ignored
            [90, 50, 110, 70],  # 2 50% inside: kept, clipped, ignored
            [120, 10, 150, 30],  # 3 outside: dropped
            [100, 80, 130, 90],  # 4 touches the edge only: dropped
            [60, 60, 90, 70],  # 5 inside but difficult in the source: stays difficult
            [95, 0, 104, 10],  # 6 5/9 inside (0.556 < 0.7): ignored
        ],
        difficult=[False] * 5 + [True, False],
    )
    boxes, polys, labels, diff = tile_objects(rec, (0, 0, 100, 100), min_area_frac=0.7)
    assert labels.tolist() == [0, 1, 2, 5, 6]
    assert diff.tolist() == [False, False, True, True, True]
    assert boxes.tolist() == [
        [10, 10, 50, 40],
        [80, 10, 100, 30],
        [90, 50, 100, 70],
        [60, 60, 90, 70],
        [95, 0, 100, 10],
    ]
    xs, ys = polys[:, 0::2], polys[:, 1::2]
    assert np.array_equal(boxes, np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1))
    _, _, labels, diff = tile_objects(rec, (0, 0, 100, 100), min_area_frac=0.5)
    assert diff.tolist() == [False, False, False, True, False]  # exactly 0.5 is enough at 0.5


def test_tile_coordinates_are_relative_to_the_window() -> None:
    rec = _rec([[210, 120, 250, 160]])
    boxes, polys, _, diff = tile_objects(rec, (100, 100, 300, 200))
    assert boxes.tolist() == [[110, 20, 150, 60]] and not diff[0]
    assert polys.tolist() == [[110, 20, 150, 20, 150, 60, 110, 60]]


def test_rotated_polygon_cut_by_the_border() -> None:
    """A diamond centred on the window edge: half its area inside, quad inside the tile, box exact."""
    diamond = [100, 40, 110, 50, 100, 60, 90, 50]
    rec = _rec([[90, 40, 110, 60]], polygons=[diamond])
    boxes, polys, _, diff = tile_objects(rec, (0, 0, 100, 100))
    assert diff.tolist() == [True]
    assert boxes.tolist() == [[90, 40, 100, 60]]
    quad = polys[0].reshape(4, 2)
    assert quad[:, 0].max() <= 100 and quad[0].tolist() == [100, 40]  # starts at the original first corner
    assert polygon_area(quad) == pytest.approx(100.0)


@settings(max_examples=100, deadline=None)
@given(
    cx=st.floats(0, 120), cy=st.floats(0, 120), w=st.floats(2, 60), h=st.floats(2, 60), a=st.floats(0, 3.14)
)
def test_clipped_quad_keeps_the_clipped_extent(cx: float, cy: float, w: float, h: float, a: float) -> None:
    c, s = np.cos(a), np.sin(a)
    local = np.array([[w, -h], [w, h], [-w, h], [-w, -h]]) / 2
    pts = np.stack([cx + local[:, 0] * c - local[:, 1] * s, cy + local[:, 0] * s + local[:, 1] * c], 1)
    clipped = clip_polygon(pts, (0, 0, 100, 100))
    if polygon_area(clipped) <= 1e-9:
        return
    assert polygon_area(clipped) <= polygon_area(pts) + 1e-6
    assert clipped[:, 0].min() >= -1e-9 and clipped[:, 0].max() <= 100 + 1e-9
    quad = reduce_to_quad(clipped, pts[0])
    assert quad.shape == (4, 2)
    for axis in (0, 1):
        assert quad[:, axis].min() == pytest.approx(clipped[:, axis].min())
        assert quad[:, axis].max() == pytest.approx(clipped[:, axis].max())


@pytest.fixture
def big_image(tmp_path: Path) -> Dataset:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "images_ir").mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "images" / "P0001.png")
    Image.fromarray(rgb[..., 0]).save(src / "images_ir" / "P0001.png")
    rec = _rec(
        [[10, 10, 50, 40], [130, 50, 170, 80], [180, 100, 220, 140]],
        polygons=[
            [10, 10, 50, 10, 50, 40, 10, 40],
            [130, 50, 170, 50, 170, 80, 130, 80],
            [180, 100, 220, 100, 220, 140, 180, 140],
        ],
        path=src / "images" / "P0001.png",
    )
    rec.ir_path = src / "images_ir" / "P0001.png"
    return Dataset("dota", src, ("plane", "storage tank", "ship"), [rec])


def test_split_dataset_writes_tiles_labels_ir_and_coco(big_image: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    tiles = split_dataset(big_image, out, tile=200, overlap=100)
    names = [tile_name("P0001", 200, w) for w in tile_windows(300, 200, 200, 100)]
    assert names == ["P0001__200__0___0", "P0001__200__100___0"]
    assert [Path(r.file_name).stem for r in tiles.records] == names
    t0, t1 = tiles.records
    # object 1 (x 130..170) is in both windows; object 2 (x 180..220): half in the first, whole in the second
    assert t0.labels.tolist() == [0, 1, 2] and t0.difficult.tolist() == [False, False, True]
    assert t1.labels.tolist() == [1, 2] and t1.difficult.tolist() == [False, False]
    assert t1.boxes.tolist() == [[30, 50, 70, 80], [80, 100, 120, 140]]
    src = np.asarray(Image.open(big_image.records[0].path))
    assert np.array_equal(np.asarray(Image.open(t1.path)), src[0:200, 100:300])
    assert np.array_equal(np.asarray(Image.open(t1.ir_path)), src[0:200, 100:300, 0])
    text = (out / "labelTxt" / f"{names[0]}.txt").read_text().splitlines()
    assert text[2:] == [
        "10.0 10.0 50.0 10.0 50.0 40.0 10.0 40.0 plane 0",
        "130.0 50.0 170.0 50.0 170.0 80.0 130.0 80.0 storage-tank 0",
        "180.0 100.0 200.0 100.0 200.0 140.0 180.0 140.0 ship 1",
    ]
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 5
    assert sum(a["ignore"] for a in coco["annotations"]) == 1
    assert coco["images"][1]["ir_file_name"] == f"images_ir/{names[1]}.png"


def test_split_skip_empty_refusals_and_rerun(big_image: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    few = split_dataset(big_image, out, tile=64, overlap=0, skip_empty=True)
    assert len(few.records) < len(tile_windows(300, 200, 64, 0)) and all(r.num_objects for r in few.records)
    again = split_dataset(
        big_image, out, tile=200, overlap=100
    )  # a previous split: replaced, stale tiles gone
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(
        Path(r.file_name).stem for r in again.records
    )
    with pytest.raises(GhostqError, match="own folder"):
        split_dataset(big_image, big_image.root)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    with pytest.raises(GhostqError, match="not empty"):
        split_dataset(big_image, foreign)
    with pytest.raises(GhostqError, match="min_area_frac"):
        split_dataset(big_image, tmp_path / "t2", min_area_frac=0)


def test_small_image_gives_one_unpadded_tile(big_image: Dataset, tmp_path: Path) -> None:
    tiles = split_dataset(big_image, tmp_path / "t", tile=1024, overlap=200)
    (rec,) = tiles.records
    assert (rec.width, rec.height) == (300, 200) and Image.open(rec.path).size == (300, 200)
    assert np.array_equal(rec.boxes, big_image.records[0].boxes) and not rec.difficult.any()


def test_missing_image_is_a_clear_error(big_image: Dataset, tmp_path: Path) -> None:
    big_image.records[0].path.unlink()
    with pytest.raises(GhostqError, match="P0001.png: image not found"):
        split_dataset(big_image, tmp_path / "t", tile=200, overlap=100)


def test_synthetic_set_tiles_round_trip_through_the_dota_loader(tmp_path: Path) -> None:
    formats = pytest.importorskip(
        "ghostq.detect.data.formats", reason="the dataset loaders are not there yet"
    )
    from ghostq.detect.data.classes import SYNTHETIC
    from ghostq.detect.data.synthetic import generate_synthetic

    ds = generate_synthetic(tmp_path / "s", images=1, size=256, seed=5, val_frac=0)
    tiles = split_dataset(ds, tmp_path / "t", tile=160, overlap=40)
    loaded = formats.load_dataset("dota", tmp_path / "t", classes=SYNTHETIC)
    assert len(loaded.records) == len(tiles.records) == 4
    for a, b in zip(tiles.records, loaded.records, strict=True):
        assert a.file_name == b.file_name
        assert np.array_equal(a.polygons, b.polygons) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.difficult, b.difficult)
    total = sum(r.num_objects for r in tiles.records)
    assert total >= ds.records[0].num_objects  # every object lands in at least one tile
