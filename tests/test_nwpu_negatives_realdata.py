"""NWPU VHR-10's real negative images (../shared/nwpu_vhr10): they load as records without objects, crops of
them form an open-set patch bank, and the recorded split keeps val negatives apart from the train ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NWPU = REPO.parent / "shared" / "nwpu_vhr10"
pytestmark = pytest.mark.realdata


@pytest.fixture
def nwpu() -> Path:
    if not NWPU.is_dir():
        pytest.skip(f"NWPU VHR-10 not found at {NWPU} (realdata tests need ../shared/nwpu_vhr10)")
    return NWPU


def test_negative_images_give_crops_and_stay_split(nwpu: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from ghostq.detect.data.formats import load_dataset
    from ghostq.detect.data.negative_crops import negative_crops
    from ghostq.detect.data.open_set_paste import folder_patches
    from ghostq.detect.data.prepare import split_records

    ds = load_dataset("nwpu", nwpu)
    negatives = [r for r in ds.records if r.num_objects == 0]
    assert len(negatives) == 120 and all(r.file_name.startswith("negative image set/") for r in negatives)
    train, val = split_records(ds.records, 0.2, 0)  # the split of configs/nwpu.yaml (seed 0, 20% val)
    train_neg = {r.file_name for r in train if r.num_objects == 0}
    val_neg = {r.file_name for r in val if r.num_objects == 0}
    assert len(train_neg) + len(val_neg) == 120 and not train_neg & val_neg
    picked = sorted((r for r in negatives if r.file_name in train_neg), key=lambda r: r.file_name)[:2]
    paths = negative_crops(picked, tmp_path / "crops", per_image=3, seed=0)
    patches = folder_patches(tmp_path / "crops")
    assert len(paths) == len(patches) == 6
    assert all(32 <= p.rgb.shape[0] == p.rgb.shape[1] <= 128 for p in patches)
    assert all(float(np.std(p.rgb)) > 5.0 for p in patches)  # textured, not flat field or water
