"""Open-set crops from negative images: the textured windows are picked, they load as a patch bank, and a
positive image is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.core.errors import GhostqError
from ghostq.core.records import ImageRecord
from ghostq.detect.data.negative_crops import negative_crops, pick_windows


def _flat_with_checker(path: Path) -> ImageRecord:
    image = np.full((120, 160, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:40, 0:40]
    image[60:100, 100:140] = np.where((yy // 4 + xx // 4) % 2 == 0, 250, 10)[..., None]  # one textured block
    Image.fromarray(image).save(path)
    return ImageRecord(path.name, path, 160, 120)


def test_most_textured_window_covers_the_checker(tmp_path: Path) -> None:
    rec = _flat_with_checker(tmp_path / "neg 1.png")
    image = np.asarray(Image.open(rec.path))
    (x, y, side), = pick_windows(image, 1, (20, 30), 200, np.random.default_rng(0))
    assert 100 - side < x < 140 and 60 - side < y < 100  # overlaps the textured block


def test_crops_written_and_loadable_as_patch_bank(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from ghostq.detect.data.open_set_paste import folder_patches

    recs = [_flat_with_checker(tmp_path / f"{k}.png") for k in range(2)]
    paths = negative_crops(recs, tmp_path / "crops", per_image=3, sizes=(16, 32), candidates=12, seed=0)
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    sides = [Image.open(p).size for p in paths]
    assert all(w == h and 16 <= w <= 32 for w, h in sides)
    again = negative_crops(recs, tmp_path / "again", per_image=3, sizes=(16, 32), candidates=12, seed=0)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]  # deterministic
    patches = folder_patches(tmp_path / "crops")
    assert len(patches) == 6 and all(float(p.alpha.min()) == 1.0 for p in patches)  # opaque


def test_positive_image_and_bad_sizes_refused(tmp_path: Path) -> None:
    rec = _flat_with_checker(tmp_path / "p.png")
    pos = ImageRecord(rec.file_name, rec.path, 160, 120, boxes=np.array([[0, 0, 5, 5]], np.float32),
                      labels=np.array([0]), difficult=np.array([False]))
    with pytest.raises(GhostqError, match="negative images"):
        negative_crops([pos], tmp_path / "c")
    with pytest.raises(GhostqError, match="sizes"):
        negative_crops([rec], tmp_path / "c", sizes=(40, 20))
