"""Transforms of ghostq.detect.data.transforms against hand-computed boxes and painted pixels."""

from __future__ import annotations

import numpy as np
import pytest

from ghostq.core.letterbox import PAD_VALUE, Sample, letterbox, place_boxes, rescale, unletterbox_boxes
from ghostq.detect.data.transforms import (
    AugmentConfig,
    hflip,
    hsv_jitter,
    mosaic,
    random_flip_rot90,
    random_scale_place,
    rot90,
    vflip,
)

BOX = (10, 20, 30, 40)  # x1 y1 x2 y2 in a 100 x 80 (W x H) image


def painted(box: tuple[int, int, int, int] = BOX, w: int = 100, h: int = 80, channels: int = 3) -> Sample:
    """A black W x H image with the box painted white, and that box (label 7, not ignored)."""
    img = np.zeros((h, w, channels), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return Sample(img, [box], [7], [False])


def paint_extent(img: np.ndarray, threshold: int = 128) -> tuple[int, int, int, int]:
    """Pixel extent (x1, y1, x2, y2) of the bright pixels of channel 0."""
    ys, xs = np.nonzero(img[..., 0] > threshold)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(
    ("fn", "expected", "shape"),
    [
        (hflip, (70, 20, 90, 40), (80, 100)),
        (vflip, (10, 40, 30, 60), (80, 100)),
        (lambda s: rot90(s, 0), (10, 20, 30, 40), (80, 100)),
        (lambda s: rot90(s, 1), (20, 70, 40, 90), (100, 80)),  # counter-clockwise: (x, y) -> (y, W - x)
        (lambda s: rot90(s, 2), (70, 40, 90, 60), (80, 100)),
        (lambda s: rot90(s, 3), (40, 10, 60, 30), (100, 80)),  # clockwise: (x, y) -> (H - y, x)
        (lambda s: rot90(s, 4), (10, 20, 30, 40), (80, 100)),
        (lambda s: rot90(s, -1), (40, 10, 60, 30), (100, 80)),
    ],
)
def test_flip_rot90_hand_computed(fn, expected, shape) -> None:
    out = fn(painted())
    assert out.image.shape[:2] == shape
    np.testing.assert_array_equal(out.boxes, [expected])
    assert paint_extent(out.image) == expected  # the pixels moved the same way
    assert out.labels.tolist() == [7] and out.ignore.tolist() == [False]


def test_flip_rot90_inverses_and_flags_travel() -> None:
    s = Sample(
        np.arange(80 * 100 * 4, dtype=np.uint32).astype(np.uint8).reshape(80, 100, 4),
        [[1.5, 2.25, 50, 60], [0, 0, 100, 80]],
        [3, 4],
        [True, False],
    )
    for back in (hflip(hflip(s)), vflip(vflip(s)), rot90(rot90(s, 1), 3), rot90(rot90(s, 2), 2)):
        np.testing.assert_array_equal(back.image, s.image)
        np.testing.assert_allclose(back.boxes, s.boxes)
        assert back.labels.tolist() == [3, 4] and back.ignore.tolist() == [True, False]
    # hflip then vflip equals a half turn
    np.testing.assert_array_equal(vflip(hflip(s)).image, rot90(s, 2).image)
    np.testing.assert_allclose(vflip(hflip(s)).boxes, rot90(s, 2).boxes)


def test_letterbox_hand_computed() -> None:
    # 100 x 80 into 64: ratio 0.64, content 64 x 51, centred pad (0, 6)
    out, ratio, pad = letterbox(painted(channels=4), 64)
    assert ratio == pytest.approx(0.64) and pad == (0, 6)
    np.testing.assert_allclose(out.boxes, [[6.4, 18.8, 19.2, 31.6]], atol=1e-9)
    assert out.image.shape == (64, 64, 4)
    assert (out.image[:6] == PAD_VALUE).all() and (out.image[57:] == PAD_VALUE).all()  # every channel
    assert (out.image[6:57] != PAD_VALUE).all()
    inner = out.image[20:31, 8:18]  # well inside the scaled box
    assert (inner == 255).all()
    _, _, pad_tl = letterbox(painted(), 64, center=False)
    assert pad_tl == (0, 0)


@pytest.mark.parametrize(
    ("w", "h", "size"), [(100, 80, 64), (100, 80, 320), (1000, 300, 320), (37, 211, 96), (320, 320, 320)]
)
@pytest.mark.parametrize("center", [True, False])
def test_letterbox_round_trip(w: int, h: int, size: int, center: bool) -> None:
    rng = np.random.default_rng(w * h + size)
    xy = rng.uniform(0, [w * 0.8, h * 0.8], (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, [w * 0.2, h * 0.2], (20, 2))], axis=1)
    s = Sample(np.zeros((h, w, 3), np.uint8), boxes, np.arange(20), np.zeros(20, bool))
    out, ratio, pad = letterbox(s, size, center=center)
    assert out.image.shape == (size, size, 3)
    assert len(out.boxes) == 20
    assert (out.boxes >= 0).all() and (out.boxes <= size).all()
    np.testing.assert_allclose(unletterbox_boxes(out.boxes, ratio, pad), boxes, atol=1e-4)
    # float32, as the dataset returns them
    np.testing.assert_allclose(unletterbox_boxes(out.boxes.astype(np.float32), ratio, pad), boxes, atol=1e-3)


def test_rescale_exact_mapping() -> None:
    s = painted(box=(20, 40, 60, 80), w=200, h=160)
    small = rescale(s.image, 0.25)
    assert small.shape == (40, 50, 3)
    assert paint_extent(small) == (5, 10, 15, 20)


def test_random_scale_place_maps_boxes_like_pixels() -> None:
    cfg = AugmentConfig(scale_range=(0.6, 1.4))
    kept = 0
    for seed in range(20):
        s = painted(box=(30, 20, 70, 60), w=100, h=80)
        out, r, (ox, oy) = random_scale_place(s, 64, np.random.default_rng(seed), cfg)
        assert out.image.shape == (64, 64, 3)
        assert 64 / 100 * 0.6 <= r <= 64 / 100 * 1.4
        clipped = np.clip(np.array([30, 20, 70, 60]) * r + [ox, oy, ox, oy], 0, 64)
        if len(out.boxes):
            kept += 1
            np.testing.assert_allclose(out.boxes[0], clipped, atol=1e-9)
            # the painted pixels end where the box ends (bilinear edges: within a pixel)
            assert np.abs(np.array(paint_extent(out.image)) - clipped).max() <= 1.0
    assert kept >= 15


def test_cut_boxes_ignore_or_drop() -> None:
    s = Sample(
        np.zeros((100, 100, 3), np.uint8),
        [[0, 0, 40, 40], [0, 60, 10, 100], [50, 50, 99, 51.5], [10, 40, 20, 50]],
        [0, 1, 2, 3],
        [False, False, False, True],
    )
    region = (5, 0, 100, 100)  # cuts 5 px off the left
    kw = {"min_size": 2.0, "min_visible": 0.6}
    out = place_boxes(s, 1.0, 0, 0, region, cut_to_ignore=True, **kw)
    # box 0 keeps 35/40 -> kept; box 1 keeps 5/10 < 0.6 -> ignore; box 2 is 1.5 px high -> dropped;
    # box 3 was difficult -> stays ignore
    assert out.labels.tolist() == [0, 1, 3]
    assert out.ignore.tolist() == [False, True, True]
    np.testing.assert_allclose(out.boxes, [[5, 0, 40, 40], [5, 60, 10, 100], [10, 40, 20, 50]])
    out = place_boxes(s, 1.0, 0, 0, region, cut_to_ignore=False, **kw)
    assert out.labels.tolist() == [0, 3]


def test_hsv_jitter_rgb_only_and_deterministic() -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 4), dtype=np.uint8)
    a, b = img.copy(), img.copy()
    hsv_jitter(a, np.random.default_rng(5), 0.05, 0.7, 0.4)
    hsv_jitter(b, np.random.default_rng(5), 0.05, 0.7, 0.4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[..., 3], img[..., 3])  # IR untouched
    assert np.abs(a[..., :3].astype(int) - img[..., :3]).mean() > 1.0  # RGB changed
    # value gain only: grey stays grey and scales
    grey = np.full((4, 4, 4), 100, np.uint8)
    hsv_jitter(grey, np.random.default_rng(1), 0.0, 0.0, 0.4)
    assert len(np.unique(grey[..., :3])) == 1 and (grey[..., 3] == 100).all()


def colour_scene(seed: int, w: int, h: int, channels: int = 3) -> tuple[Sample, dict[int, np.ndarray]]:
    """Dark image with non-overlapping solid rectangles, one unique colour per box (label = box id)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, channels), 20, np.uint8)
    boxes, colours = [], {}
    for row in range(2):
        for col in range(3):
            x1 = col * w // 3 + int(rng.integers(2, 10))
            y1 = row * h // 2 + int(rng.integers(2, 10))
            x2, y2 = x1 + int(rng.integers(20, w // 3 - 12)), y1 + int(rng.integers(20, h // 2 - 12))
            label = seed * 10 + len(boxes)
            colours[label] = rng.integers(60, 256, channels).astype(np.uint8)
            img[y1:y2, x1:x2] = colours[label]
            boxes.append([x1, y1, x2, y2])
    return Sample(img, boxes, list(colours), np.zeros(len(boxes), bool)), colours


def test_mosaic_boxes_inside_and_on_their_objects() -> None:
    cfg = AugmentConfig()
    checked = 0
    for seed in range(12):
        scenes = [colour_scene(seed * 4 + i, 120 + 30 * i, 100 + 20 * (3 - i)) for i in range(4)]
        colours = {k: v for _, c in scenes for k, v in c.items()}
        rng = np.random.default_rng(seed)
        out = random_flip_rot90(mosaic([s for s, _ in scenes], 96, rng, cfg), rng, cfg)
        assert out.image.shape == (96, 96, 3)
        assert (out.boxes >= 0).all() and (out.boxes <= 96).all()
        wh = out.boxes[:, 2:] - out.boxes[:, :2]
        assert (wh >= cfg.min_size).all()
        for box, label in zip(out.boxes, out.labels, strict=True):
            x1, y1, x2, y2 = box
            inner = out.image[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
            if inner.size == 0:
                continue
            close = (np.abs(inner.astype(int) - colours[int(label)]).max(axis=-1) <= 3).mean()
            assert close >= 0.9, (seed, label, close)
            checked += 1
    assert checked >= 40


def test_mosaic_deterministic_given_rng() -> None:
    scenes = [colour_scene(i, 150, 110)[0] for i in range(4)]
    a = mosaic(scenes, 64, np.random.default_rng(3), AugmentConfig())
    b = mosaic(scenes, 64, np.random.default_rng(3), AugmentConfig())
    c = mosaic(scenes, 64, np.random.default_rng(4), AugmentConfig())
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mosaic_prob": 1.5},
        {"hflip_prob": -0.1},
        {"scale_range": (0.0, 1.0)},
        {"scale_range": (1.2, 1.0)},
        {"mosaic_center": (0.0, 0.5)},
        {"hsv_s": -1.0},
        {"min_visible": 2.0},
    ],
)
def test_augment_config_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AugmentConfig(**kwargs)
