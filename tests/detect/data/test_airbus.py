"""Airbus oil-storage CSV reader: layout, quoting quirks, and one file:line error per planted bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.core.errors import DataFormatError
from ghostq.detect.data.check import check_dataset
from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.formats.airbus import parse_bounds
from ghostq.detect.data.formats.common import LineError

HEADER = "image_id,class,bounds"
GOOD = 'a1,oil-storage-tank,"(10, 20, 30, 44)"'


def _dataset(root: Path, rows: list[str], images: tuple[str, ...] = ("a1", "b2"), newline: str = "\n") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem in images:
        Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "images" / f"{stem}.jpg")
    csv_path = root / "annotations.csv"
    csv_path.write_bytes(newline.join(rows).encode("utf-8"))
    return csv_path


def test_reads_boxes_per_image_and_images_without_rows(tmp_path):
    _dataset(
        tmp_path,
        ["\ufeff" + HEADER, GOOD, "", 'b2,Oil-Storage-Tank," ( 1.5 ,2, 3,4 ) "', 'a1,oil-storage-tank,"(0, 0, 5, 5)"'],
        images=("a1", "b2", "c3"),
        newline="\r\n",
    )
    ds = load_dataset("airbus", tmp_path)
    assert ds.classes == ("oil-storage-tank",)
    assert [r.file_name for r in ds.records] == ["images/a1.jpg", "images/b2.jpg", "images/c3.jpg"]
    np.testing.assert_array_equal(ds.records[0].boxes, [[10, 20, 30, 44], [0, 0, 5, 5]])
    np.testing.assert_array_equal(ds.records[1].boxes, [[1.5, 2, 3, 4]])
    assert ds.records[2].num_objects == 0 and ds.records[0].width == 64


def test_columns_in_another_order_and_extra_columns(tmp_path):
    _dataset(tmp_path, ["bounds,note,image_id,class", '"(1, 2, 3, 4)",x,a1,oil-storage-tank'])
    np.testing.assert_array_equal(load_dataset("airbus", tmp_path).records[0].boxes, [[1, 2, 3, 4]])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('a1,oil-storage-tank,"(1, 2, 3)"', "bounds must hold 4 numbers"),
        ('a1,oil-storage-tank,"1, 2, 3, 4"', "bounds must be '\\(x1, y1, x2, y2\\)'"),
        ('a1,oil-storage-tank,"(30, 2, 10, 4)"', "x2 < x1 or y2 < y1"),
        ('a1,oil-storage-tank,"(1, 9, 3, 4)"', "x2 < x1 or y2 < y1"),
        ('a1,oil-storage-tank,"(1, a, 3, 4)"', "y1 is not a number"),
        ('a1,oil-storage-tank,"(1, 2, nan, 4)"', "x2 is not finite"),
        ('a1,oil-storage-tank,"(1, 2, 1e999, 4)"', "x2 is not finite"),
        ("a1,oil-storage-tank", "expected 3 columns"),
        ('a1,oil-storage-tank,"(1, 2, 3, 4)",extra', "expected 3 columns"),
        ('a1,ship,"(1, 2, 3, 4)"', "unknown class 'ship'"),
        ('../a1,oil-storage-tank,"(1, 2, 3, 4)"', "image_id must be an image's file name"),
        (',oil-storage-tank,"(1, 2, 3, 4)"', "image_id must be an image's file name"),
        ('zz9,oil-storage-tank,"(1, 2, 3, 4)"', "unknown image 'zz9': no images/zz9"),
        ('a1,oil-storage-tank,"(1, 2, 3, 4', "not a CSV line"),
    ],
)
def test_planted_bad_row_is_one_line_with_file_and_line(tmp_path, row, message):
    csv_path = _dataset(tmp_path, [HEADER, GOOD, "", row, GOOD])
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("airbus", tmp_path)
    assert (err.value.path, err.value.line) == (str(csv_path), 4)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{csv_path}:4: ")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("image_id,class", "header lacks column\\(s\\) bounds"),
        ("id,label,box", "header lacks column\\(s\\) image_id, class, bounds"),
        ("", "the first line must be the header"),
        ("image_id,class,bounds,class", "names column 'class' twice"),
    ],
)
def test_bad_header_names_line_1(tmp_path, header, message):
    csv_path = _dataset(tmp_path, [header, GOOD])
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("airbus", tmp_path)
    assert (err.value.path, err.value.line) == (str(csv_path), 1)


def test_missing_csv_names_the_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataFormatError, match="no 'annotations.csv'.*images/<image_id>.jpg"):
        load_dataset("airbus", tmp_path)


def test_check_collects_every_bad_row(tmp_path):
    _dataset(tmp_path, [HEADER, 'a1,oil-storage-tank,"(3, 2, 1, 4)"', GOOD, 'a1,tank,"(1, 2, 3, 4)"'])
    problems = check_dataset("airbus", tmp_path)
    lines = sorted(p.line for p in problems if p.severity == "error")
    assert lines == [2, 4]


def test_parse_bounds_accepts_spaces_and_decimals():
    assert parse_bounds(" (1205, 1493.5 ,1231,1516) ") == (1205.0, 1493.5, 1231.0, 1516.0)
    with pytest.raises(LineError, match="found 0|bounds must"):
        parse_bounds("()")
