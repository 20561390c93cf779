"""The Airbus oil-storage reader on the real file (../shared/airbus_oil_storage): every row read, every box as
written in the CSV text; the benchmark's seeded image-level split is stable and keeps whole images apart."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.prepare import split_records

AIRBUS = Path(__file__).resolve().parents[3].parent / "shared" / "airbus_oil_storage"
pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def airbus() -> Path:
    if not (AIRBUS / "annotations.csv").is_file():
        pytest.skip(f"Airbus oil storage sample not found at {AIRBUS} (needs ../shared/airbus_oil_storage)")
    return AIRBUS


def test_every_row_of_the_real_csv_is_read_as_written(airbus):
    ds = load_dataset("airbus", airbus)
    with (airbus / "annotations.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(ds.records) == len(list((airbus / "images").glob("*.jpg")))
    assert sum(r.num_objects for r in ds.records) == len(rows) > 5000
    by_image: dict[str, list[list[float]]] = {}
    for row in rows:
        by_image.setdefault(row["image_id"], []).append([float(v) for v in re.findall(r"[-\d.]+", row["bounds"])])
    for rec in ds.records:
        expected = np.array(by_image.get(Path(rec.file_name).stem, []), np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(rec.boxes, expected)
        assert (rec.width, rec.height) == (2560, 2560)
    assert max(r.num_objects for r in ds.records) > 300  # more than the default max_det in one image


def test_image_level_split_is_seeded_and_disjoint(airbus):
    ds = load_dataset("airbus", airbus)
    train, val = split_records(ds.records, 0.2, 0)
    again = split_records(load_dataset("airbus", airbus).records, 0.2, 0)
    assert [r.file_name for r in val] == [r.file_name for r in again[1]]
    assert (len(train), len(val)) == (32, 8)
    assert not {r.file_name for r in train} & {r.file_name for r in val}
