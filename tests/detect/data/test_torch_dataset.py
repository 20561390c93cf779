"""DetectionDataset, collate_detection and image loading on small images generated in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.core.image_io import load_image, load_ir, load_record_image
from ghostq.core.records import ImageRecord
from ghostq.detect.data.torch_dataset import DetectionDataset, collate_detection
from ghostq.detect.data.transforms import AugmentConfig, unletterbox_boxes
from ghostq.detect.models.output import Targets

GROUND_RGB, GROUND_IR = 20, 5
ALL_ON = AugmentConfig(mosaic_prob=1.0, hflip_prob=0.5, vflip_prob=0.5, rot90_prob=1.0, hsv_prob=1.0)


def write_scene(root: Path, idx: int, w: int, h: int, ir_mode: str = "RGB") -> ImageRecord:
    """A VEDAI-like _co / _ir pair: dark ground, 6 solid non-overlapping rectangles. Box j of image idx has
    label idx * 6 + j, a unique RGB colour and the unique IR level 30 + 4 * label. Box 0 is difficult."""
    rng = np.random.default_rng(idx)
    rgb = np.full((h, w, 3), GROUND_RGB, np.uint8)
    ir = np.full((h, w), GROUND_IR, np.uint8)
    boxes, labels = [], []
    for row in range(2):
        for col in range(3):
            x1 = col * w // 3 + int(rng.integers(2, 8))
            y1 = row * h // 2 + int(rng.integers(2, 8))
            x2, y2 = x1 + int(rng.integers(16, w // 3 - 10)), y1 + int(rng.integers(16, h // 2 - 10))
            label = idx * 6 + len(boxes)
            rgb[y1:y2, x1:x2] = colour_of(label)
            ir[y1:y2, x1:x2] = ir_of(label)
            boxes.append([x1, y1, x2, y2])
            labels.append(label)
    co, irp = root / f"{idx:08d}_co.png", root / f"{idx:08d}_ir.png"
    Image.fromarray(rgb).save(co)
    Image.fromarray(np.repeat(ir[..., None], 3, axis=2) if ir_mode == "RGB" else ir).save(irp)
    difficult = np.zeros(len(boxes), bool)
    difficult[0] = True
    return ImageRecord(
        file_name=co.name,
        path=co,
        width=w,
        height=h,
        boxes=boxes,
        labels=labels,
        difficult=difficult,
        ir_path=irp,
    )


def colour_of(label: int) -> np.ndarray:
    """A distinct saturated colour per label (hue steps of 8 / 256 of the circle, up to 32 labels)."""
    hue = Image.fromarray(np.array([[[label * 8 % 256, 220, 200]]], np.uint8), "HSV")
    return np.asarray(hue.convert("RGB"))[0, 0]


def ir_of(label: int) -> int:
    return 30 + 4 * label


@pytest.fixture
def scenes(tmp_path: Path) -> list[ImageRecord]:
    sizes = [(160, 120), (120, 160), (200, 100), (96, 96), (180, 150)]
    return [write_scene(tmp_path, i, w, h, ir_mode="RGB" if i % 2 else "L") for i, (w, h) in enumerate(sizes)]


def interior(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Pixels of an H x W x C image strictly inside box (one pixel off each edge: bilinear edges blend)."""
    x1, y1, x2, y2 = box
    return image[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1].reshape(
        -1, image.shape[2]
    )


def test_full_train_pipeline_boxes_cover_their_objects(scenes: list[ImageRecord]) -> None:
    """Mosaic, scale jitter, flips, rot90 and HSV on, RGB + IR: every output box lies inside the canvas and
    covers its own object: the IR level (never jittered) inside is the box's label's level, and the RGB
    inside is one colour, distinct per label (HSV maps colours consistently within an image)."""
    size = 96
    checked = 0
    for cfg in (ALL_ON, AugmentConfig(mosaic_prob=0.0, rot90_prob=1.0), AugmentConfig()):
        ds = DetectionDataset(scenes, size, in_channels=4, train=True, augment=cfg, seed=1)
        for epoch in range(4):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                image, boxes, labels, ignore, meta = ds[i]
                assert image.shape == (4, size, size) and image.dtype == torch.float32
                assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
                assert meta["augmented"] and meta["index"] == i
                assert (boxes >= 0).all() and (boxes <= size).all()
                assert ((boxes[:, 2:] - boxes[:, :2]) >= cfg.min_size).all()
                pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                medians: dict[int, np.ndarray] = {}
                for box, label, ign in zip(boxes.numpy(), labels.tolist(), ignore.tolist(), strict=True):
                    if label % 6 == 0:
                        assert ign, "difficult box lost its ignore flag"
                    inner = interior(pixels, box)
                    if len(inner) == 0:
                        continue
                    assert (inner[:, 3] == ir_of(label)).mean() >= 0.9, (epoch, i, label)
                    med = np.median(inner[:, :3], axis=0)
                    assert (np.abs(inner[:, :3] - med).max(axis=1) <= 3).mean() >= 0.9
                    medians[label] = med
                    checked += 1
                labs = list(medians)
                for a in range(len(labs)):
                    for b in range(a + 1, len(labs)):
                        assert np.abs(medians[labs[a]] - medians[labs[b]]).max() > 4
    assert checked >= 150


def test_validation_items_are_letterboxed_and_map_back(scenes: list[ImageRecord]) -> None:
    ds = DetectionDataset(scenes, 128, in_channels=3, train=False)
    for i, rec in enumerate(scenes):
        image, boxes, labels, ignore, meta = ds[i]
        assert image.shape == (3, 128, 128)
        assert meta["file_name"] == rec.file_name and meta["orig_size"] == (rec.width, rec.height)
        assert not meta["augmented"]
        np.testing.assert_allclose(
            unletterbox_boxes(boxes.numpy(), meta["ratio"], meta["pad"]), rec.boxes, atol=1e-3
        )
        assert labels.tolist() == rec.labels.tolist()
        assert ignore.tolist() == rec.difficult.tolist()
        # padding is grey 114
        px, py = meta["pad"]
        if py > 0:
            assert torch.allclose(image[:, 0], torch.tensor(114 / 255))
        if px > 0:
            assert torch.allclose(image[:, :, 0], torch.tensor(114 / 255))


def test_train_without_augment_is_letterbox(scenes: list[ImageRecord]) -> None:
    a = DetectionDataset(scenes, 64, train=True, augment=None)[2]
    b = DetectionDataset(scenes, 64, train=False)[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_deterministic_per_seed_epoch_index(scenes: list[ImageRecord]) -> None:
    def items(ds: DetectionDataset, order: list[int]) -> dict[int, tuple]:
        return {i: ds[i] for i in order}

    cached = DetectionDataset(scenes, 64, train=True, augment=AugmentConfig(), seed=7)
    uncached = DetectionDataset(scenes, 64, train=True, augment=AugmentConfig(), seed=7, cache_images=False)
    cached.set_epoch(3)
    uncached.set_epoch(3)
    a = items(cached, [0, 1, 2, 3, 4])
    b = items(uncached, [4, 2, 0, 3, 1])  # another order, no cache
    for i in a:
        for x, y in zip(a[i][:4], b[i][:4], strict=True):
            assert torch.equal(x, y)
    cached.set_epoch(4)
    c = items(cached, [0, 1, 2, 3, 4])
    assert sum(not torch.equal(a[i][0], c[i][0]) for i in a) >= 4
    other_seed = DetectionDataset(scenes, 64, train=True, augment=AugmentConfig(), seed=8)
    other_seed.set_epoch(3)
    assert not torch.equal(other_seed[0][0], a[0][0])


def test_worker_count_does_not_change_batches(scenes: list[ImageRecord]) -> None:
    ds = DetectionDataset(scenes, 64, train=True, augment=ALL_ON, seed=2)
    ds.set_epoch(1)
    ds.preload()
    serial = list(DataLoader(ds, batch_size=2, collate_fn=collate_detection))
    workers = list(DataLoader(ds, batch_size=2, collate_fn=collate_detection, num_workers=2))
    for (im_a, t_a, _), (im_b, t_b, _) in zip(serial, workers, strict=True):
        assert (
            torch.equal(im_a, im_b) and torch.equal(t_a.boxes, t_b.boxes) and torch.equal(t_a.mask, t_b.mask)
        )


def test_persistent_workers_follow_set_epoch(scenes: list[ImageRecord]) -> None:
    ds = DetectionDataset(scenes, 48, train=True, augment=ALL_ON, seed=2)
    loader = DataLoader(
        ds, batch_size=5, collate_fn=collate_detection, num_workers=1, persistent_workers=True
    )
    seen = []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        ((images, _, _),) = list(loader)
        reference = torch.stack([ds[i][0] for i in range(len(ds))])  # main process, same epoch
        assert torch.equal(images, reference)
        seen.append(images)
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[0], seen[2])


def test_collate_pads_and_masks() -> None:
    def item(n: int, ignore: list[bool]) -> tuple:
        boxes = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4) + 1
        return (
            torch.rand(3, 32, 32),
            boxes,
            torch.arange(n) + 1,
            torch.tensor(ignore, dtype=torch.bool).reshape(n),
            {"index": n},
        )

    images, targets, metas = collate_detection([item(2, [False, True]), item(0, []), item(3, [False] * 3)])
    assert isinstance(targets, Targets)
    assert images.shape == (3, 3, 32, 32)
    assert (
        targets.boxes.shape == (3, 3, 4) and targets.labels.shape == (3, 3) and targets.mask.shape == (3, 3)
    )
    assert targets.labels.dtype == torch.int64 and targets.mask.dtype == torch.bool
    assert targets.mask.tolist() == [[True, False, False], [False, False, False], [True, True, True]]
    assert targets.boxes[0, 1].tolist() == [5.0, 6.0, 7.0, 8.0]  # ignore box kept, masked
    assert targets.boxes[0, 2].abs().sum() == 0 and targets.boxes[1].abs().sum() == 0  # padding zeros
    assert targets.labels[0].tolist() == [1, 2, 0]
    assert [m["index"] for m in metas] == [2, 0, 3]
    _, empty, _ = collate_detection([item(0, []), item(0, [])])
    assert empty.boxes.shape == (2, 1, 4) and not empty.mask.any()


def test_four_channel_loading_from_co_ir_pair(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ir = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "00000001_co.png")
    Image.fromarray(np.stack([ir] * 3, axis=2)).save(tmp_path / "00000001_ir.png")  # VEDAI: 3 equal channels
    Image.fromarray(ir).save(tmp_path / "00000002_ir.png")  # single channel
    for ir_name in ("00000001_ir.png", "00000002_ir.png"):
        rec = ImageRecord(
            file_name="00000001_co.png",
            path=tmp_path / "00000001_co.png",
            width=64,
            height=64,
            boxes=[[1, 2, 30, 40]],
            labels=[0],
            difficult=[False],
            ir_path=tmp_path / ir_name,
        )
        arr = load_record_image(rec, 4)
        assert arr.shape == (64, 64, 4)
        np.testing.assert_array_equal(arr[..., :3], rgb)
        np.testing.assert_array_equal(arr[..., 3], ir)
        image = DetectionDataset([rec], 64, in_channels=4)[0][0]  # 64 -> 64: no resampling
        assert torch.equal(image, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(load_ir(tmp_path / "00000001_ir.png"), ir)


def test_four_channels_without_ir_names_the_image(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a_co.png")
    rec = ImageRecord(file_name="a_co.png", path=tmp_path / "a_co.png", width=8, height=8)
    with pytest.raises(DataFormatError, match="a_co.png.*ir_path"):
        DetectionDataset([rec], 32, in_channels=4)
    with pytest.raises(DataFormatError, match="a_co.png"):
        load_record_image(rec, 4)


def test_ir_size_mismatch_names_the_ir_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b_co.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "b_ir.png")
    rec = ImageRecord(
        file_name="b_co.png", path=tmp_path / "b_co.png", width=8, height=8, ir_path=tmp_path / "b_ir.png"
    )
    with pytest.raises(DataFormatError, match="b_ir.png.*9x8"):
        load_record_image(rec, 4)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "missing", "size"])
def test_bad_image_is_a_data_format_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "broken_image.png"
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    if kind == "garbage":
        path.write_bytes(b"this is not a png file at all")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:2000])
    elif kind == "size":
        path.write_bytes(good.read_bytes())
    rec = ImageRecord(file_name=path.name, path=path, width=64 if kind != "size" else 50, height=64)
    ds = DetectionDataset([rec], 32, train=True, augment=AugmentConfig())
    with pytest.raises(DataFormatError) as err:
        ds[0]
    assert "broken_image.png" in str(err.value) and err.value.path == str(path)
    if kind in ("garbage", "truncated", "missing"):
        with pytest.raises(DataFormatError, match="broken_image.png"):
            load_image(path)


def test_cache_budget_and_downscaled_cache(tmp_path: Path, scenes: list[ImageRecord]) -> None:
    sizes = [64 * (64 * min(r.width, r.height) // max(r.width, r.height)) * 3 for r in scenes]
    budget = sizes[0] + sizes[1] + sizes[2] // 2
    ds = DetectionDataset(scenes, 64, train=False, cache_max_bytes=budget)
    # validation caches at the letterbox size; the third image no longer fits, the others may
    assert 2 <= ds.preload() < len(scenes)
    assert 0 in ds._cache and 1 in ds._cache and 2 not in ds._cache
    assert ds.cache_bytes <= budget
    img, scale = ds.image(0)
    assert max(img.shape[:2]) == 64 and scale == pytest.approx(64 / 160)
    unbounded = DetectionDataset(scenes, 64, train=False, cache_images=False)
    assert unbounded.preload() == 0
    for i in range(len(scenes)):  # cached or not, the same items
        assert torch.equal(ds[i][0], unbounded[i][0]) and torch.equal(ds[i][1], unbounded[i][1])


def test_constructor_rejects_bad_arguments(scenes: list[ImageRecord]) -> None:
    with pytest.raises(GhostqError, match="empty"):
        DetectionDataset([], 64)
    with pytest.raises(ValueError, match="in_channels"):
        DetectionDataset(scenes, 64, in_channels=2)
    with pytest.raises(IndexError):
        DetectionDataset(scenes, 64)[len(scenes)]


def test_grey_16bit_and_palette_images_load_as_rgb(tmp_path: Path) -> None:
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], (grey16 >> 8).astype(np.uint8))
    solid = Image.fromarray(np.full((5, 6, 3), (10, 200, 30), np.uint8))
    solid.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    np.testing.assert_array_equal(load_image(tmp_path / "pal.png")[2, 3], [10, 200, 30])
