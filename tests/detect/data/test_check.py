"""`check_dataset`: every planted problem is reported once, with its file and line, and nothing else is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.detect.data.check import check_dataset, summarize
from ghostq.detect.data.formats import Problem
from ghostq.detect.data.formats.dota_writer import write_dota_labels


def _take(
    problems: list[Problem], path: Path, line: int | None, *words: str, severity: str = "error"
) -> Problem:
    """Remove and return the one problem at path:line whose message holds every word."""
    hits = [
        p for p in problems if p.path == str(path) and p.line == line and all(w in p.message for w in words)
    ]
    assert len(hits) == 1, f"expected one {severity} at {path}:{line} with {words}; problems: {problems}"
    assert hits[0].severity == severity
    problems.remove(hits[0])
    return hits[0]


def _append(path: Path, lines: list[str], newline: str = "\n") -> int:
    """Append lines; return the 1-based line number of the first appended one."""
    text = path.read_bytes().decode()
    if text and not text.endswith("\n"):
        text += newline
    first = text.count("\n") + 1
    path.write_bytes((text + newline.join(lines) + newline).encode())
    return first


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------------------------------ generated data
def _tiny_dota(root: Path) -> None:
    polys = np.array([[2, 2, 12, 2, 12, 8, 2, 8], [20, 20, 30, 20, 30, 28, 20, 28]], float)
    for stem in ("a", "b"):
        write_dota_labels(root / f"labelTxt/{stem}.txt", polys, ["plane", "ship"], [False, False])
        (root / "images").mkdir(exist_ok=True)
        Image.new("RGB", (40, 32), (90, 90, 90)).save(root / f"images/{stem}.png")


def test_clean_dataset_has_no_problems(tmp_path):
    _tiny_dota(tmp_path)
    assert check_dataset("dota", tmp_path) == []


def test_every_planted_problem_is_reported_on_generated_dota(tmp_path):
    _tiny_dota(tmp_path)
    ann = tmp_path / "labelTxt/a.txt"
    first = _append(
        ann,
        [
            "1 2 3 4 5 6 7 plane 0",  # first: a lost coordinate (9 fields, the last a flag)
            "1 2 3 4 5 6 7 8 zeppelin 0",  # +1: unknown class
            "50 50 60 50 60 60 50 60 plane 0",  # +2: entirely outside the 40x32 image
            "5 5 6 5 6 6 5 6 ship 0",  # +3: fine
            "7 7 7 7 7 9 7 9 ship 0",  # +4: degenerate, zero width
            "2 2 12 2 12 8 2 8 plane 0",  # +5: identical to line 3
            "2.3 2 12 2 12 8 2.3 8 plane 0",  # +6: IoU 0.97 with line 3
            "1 1 2 1 2 2 1 2 plane 0 extra",  # +7: 11 fields
            "0 0 4 4 8 8 4 4 ship 0",  # +8: zero-area polygon around a real box
            "30 20 41 20 41 28 30 28 plane 0",  # +9: 1 px beyond the right edge: within tolerance
            "30 20 45 20 45 28 30 28 plane 0",  # +10: 5 px beyond
        ],
    )
    _truncate(tmp_path / "images/b.png", 0.6)
    c = tmp_path / "labelTxt/c.txt"
    write_dota_labels(c, np.ones((1, 8)), ["plane"], [False])  # no image for it
    problems = check_dataset("dota", tmp_path)
    assert summarize(problems) == {"errors": 8, "warnings": 3}
    _take(problems, ann, first, "expected 10 fields", "found 9")
    _take(problems, ann, first + 1, "unknown class 'zeppelin'")
    _take(problems, ann, first + 2, "plane box (50, 50, 60, 60) lies entirely outside the 40x32 image")
    _take(problems, ann, first + 4, "degenerate ship box", "width 0")
    _take(problems, ann, first + 5, "duplicate plane box: identical to the one on line 3", severity="warning")
    _take(
        problems, ann, first + 6, "duplicate plane box: IoU 0.97 with the one on line 3", severity="warning"
    )
    _take(problems, ann, first + 7, "expected 10 fields", "found 11")
    _take(problems, ann, first + 8, "degenerate ship polygon (zero area)", severity="warning")
    _take(problems, ann, first + 10, "extends outside the 40x32 image")
    _take(problems, tmp_path / "images/b.png", None, "corrupt image")
    _take(problems, c, None, "annotation without image", str(tmp_path / "images/c.png"))
    assert problems == []


def test_empty_dataset_and_missing_layout(tmp_path):
    (tmp_path / "labelTxt").mkdir()
    assert [str(p) for p in check_dataset("dota", tmp_path)] == [
        f"{tmp_path}: empty dataset: no annotated images found (expected labelTxt/*.txt and "
        "images/<stem>.png|.jpg|.tif|.bmp)"
    ]
    problems = check_dataset("nwpu", tmp_path)
    assert [p.severity for p in problems] == ["error", "error"]
    assert "no 'ground truth' folder" in problems[0].message and "empty dataset" in problems[1].message


def test_check_reads_only_headers_without_decode(tmp_path):
    _tiny_dota(tmp_path)
    _truncate(tmp_path / "images/b.png", 0.6)
    assert check_dataset("dota", tmp_path, decode_images=False) == []
    (tmp_path / "images/b.png").write_bytes(b"GIF89a?")
    (p,) = check_dataset("dota", tmp_path, decode_images=False)
    assert p.path == str(tmp_path / "images/b.png") and p.message.startswith("unreadable image")


# ---------------------------------------------------------------------------------------------- real samples
@pytest.fixture
def copy_sample(rs_samples, tmp_path):
    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(rs_samples / name, dst)
        return dst

    return copy


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("fmt", "folder", "missing"),
    [
        ("dota", "dota", 2),
        ("dior", "dior", 4),
        ("dior-r", "dior", 4),
        ("nwpu", "nwpu_vhr10", 42),
        ("vedai", "vedai", 0),
    ],
)
def test_real_samples_only_lack_images(rs_samples, fmt, folder, missing):
    problems = check_dataset(fmt, rs_samples / folder)
    assert len(problems) == missing
    assert all(p.severity == "error" and p.message.startswith("annotation without image") for p in problems)


@pytest.mark.realdata
def test_planted_problems_real_dota(copy_sample):
    root = copy_sample("dota")
    ann = root / "labelTxt/P1888.txt"
    line3 = ann.read_bytes().decode().split("\r\n")[2]
    first = _append(
        ann,
        [
            "1 2 3 plane 0",
            "10 10 20 10 20 20 10 20 spaceship 0",
            "800 10 900 10 900 50 800 50 plane 0",  # the image is 712x557
            "700 500 730 500 730 540 700 540 plane 0",
            "10 10 10 10 10 30 10 30 plane 0",
            line3,
            "1 nan 3 4 5 6 7 8 plane 0",
        ],
        newline="\r\n",
    )
    _truncate(root / "images/P1888.png")
    (root / "labelTxt/P9999.txt").write_text("1 1 2 1 2 2 1 2 plane 0\n")
    (root / "images/P9999.png").write_bytes(b"this is not a png")
    problems = check_dataset("dota", root)
    _take(problems, ann, first, "expected 10 fields", "found 5")
    _take(problems, ann, first + 1, "unknown class 'spaceship'")
    _take(problems, ann, first + 2, "lies entirely outside the 712x557 image")
    _take(problems, ann, first + 3, "plane box (700, 500, 730, 540) extends outside the 712x557 image")
    _take(problems, ann, first + 4, "degenerate plane box", "width 0")
    _take(
        problems,
        ann,
        first + 5,
        "duplicate small-vehicle box: identical to the one on line 3",
        severity="warning",
    )
    _take(problems, ann, first + 6, "coordinate 2 is not finite: 'nan'")
    _take(problems, root / "images/P1888.png", None, "corrupt image")
    _take(problems, root / "images/P9999.png", None, "unreadable image")
    _take(problems, root / "labelTxt/P0770.txt", None, "annotation without image")
    _take(problems, root / "labelTxt/P1234.txt", None, "annotation without image")
    assert problems == []


@pytest.mark.realdata
def test_planted_problems_real_nwpu(copy_sample):
    root = copy_sample("nwpu_vhr10")
    ann = root / "ground truth/036.txt"
    first = _append(
        ann,
        [
            "(1,2),(3,4),11 ",
            "(1,2),(3,4) ",
            "(500,10),(560,40),1 ",  # 036.jpg is 533x597
            "(100,107),(182,179),1 ",  # line 1 again
            "(50,50),(40,60),2 ",  # x2 < x1
        ],
    )
    _truncate(root / "negative image set/001.jpg")
    problems = check_dataset("nwpu", root)
    _take(problems, ann, first, "unknown class number 11")
    _take(problems, ann, first + 1, "expected '(x1,y1),(x2,y2),class'")
    _take(problems, ann, first + 2, "airplane box (500, 10, 560, 40) extends outside the 533x597 image")
    _take(
        problems, ann, first + 3, "duplicate airplane box: identical to the one on line 1", severity="warning"
    )
    _take(problems, ann, first + 4, "degenerate ship box", "width -10")
    _take(problems, root / "negative image set/001.jpg", None, "corrupt image", "truncated")
    assert len(problems) == 42 and all("annotation without image" in p.message for p in problems)


@pytest.mark.realdata
def test_planted_problems_real_vedai(copy_sample):
    root = copy_sample("vedai")
    ann = root / "Annotations512/00000057.txt"
    first = _append(
        ann,
        [
            "1 2 3 3 1 0 1 2 3 4 5 6 7 8",
            "1 2 3",
            "600 10 0 1 1 0 600 610 610 600 10 10 20 20",
        ],
    )
    (root / "Vehicules512/00000000_ir.png").unlink()
    _truncate(root / "Vehicules512/00000057_ir.png")
    problems = check_dataset("vedai", root)
    _take(problems, ann, first, "unknown class code 3")
    _take(problems, ann, first + 1, "expected 14 fields", "found 3")
    _take(problems, ann, first + 2, "car box (600, 10, 610, 20) lies entirely outside the 512x512 image")
    _take(problems, root / "Vehicules512/00000000_co.png", None, "no infrared image", severity="warning")
    _take(problems, root / "Vehicules512/00000057_ir.png", None, "corrupt image")
    assert problems == []


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", ["dior", "dior-r"])
def test_planted_problems_real_dior(copy_sample, fmt):
    root = copy_sample("dior")
    sub = "Oriented Bounding Boxes" if fmt == "dior-r" else "Horizontal Bounding Boxes"
    ann = root / "Annotations" / sub / "00001.xml"
    text = ann.read_bytes().decode()
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(nl)
    end = lines.index("</annotation>")

    def obj(name: str, x1: str, y1: str, x2: str, y2: str) -> list[str]:
        if fmt == "dior-r":
            corners = {
                "x_left_top": x1,
                "y_left_top": y1,
                "x_right_top": x2,
                "y_right_top": y1,
                "x_right_bottom": x2,
                "y_right_bottom": y2,
                "x_left_bottom": x1,
                "y_left_bottom": y2,
            }
            body = ["<robndbox>", *(f"<{k}>{v}</{k}>" for k, v in corners.items()), "</robndbox>"]
        else:
            body = [
                "<bndbox>",
                f"<xmin>{x1}</xmin>",
                f"<ymin>{y1}</ymin>",
                f"<xmax>{x2}</xmax>",
                f"<ymax>{y2}</ymax>",
                "</bndbox>",
            ]
        return ["<object>", f"<name>{name}</name>", *body, "</object>"]

    planted = [
        obj("Helipad", "1", "2", "3", "4"),
        obj("ship", "1", "two", "3", "4"),
        obj("ship", "700", "700", "900", "900"),
        obj("GolfField", "133", "237", "684", "672"),
    ]
    starts = []
    for o in planted:
        starts.append(end + 1)
        lines[end:end] = o
        end += len(o)
    ann.write_bytes(nl.join(lines).encode())
    broken = root / "Annotations" / sub / "00003.xml"
    broken.write_text("<annotation>\n<object>\n<name>ship</name>\n</annotation>\n")
    problems = check_dataset(fmt, root)
    _take(problems, ann, starts[0] + 1, "unknown class 'Helipad'")
    coord = "y_left_top" if fmt == "dior-r" else "ymin"
    _take(problems, ann, starts[1] + 4, f"<{coord}> is not a number: 'two'")
    _take(problems, ann, starts[2], "ship box (700, 700, 900, 900) extends outside the 800x800 image")
    _take(
        problems, ann, starts[3], "duplicate golffield box: identical to the one on line", severity="warning"
    )
    _take(problems, broken, 4, "not valid XML: mismatched tag")
    for stem in ("00002", "00003", "00007", "00025"):
        _take(problems, root / "Annotations" / sub / f"{stem}.xml", None, "annotation without image")
    assert problems == []


@pytest.mark.realdata
def test_planted_problems_real_coco(copy_sample):
    root = copy_sample("coco")
    ann = root / "instances_val2017_1img-sample.json"
    data = json.loads(ann.read_text())
    n = len(data["annotations"])
    first = dict(data["annotations"][0])
    data["annotations"] += [
        {**first, "id": 1, "category_id": 12},  # 12 is not a COCO category id
        {**first, "id": 2, "bbox": [1, 2, float("nan"), 4]},
        {**first, "id": 3, "bbox": [300, 200, 100, 100]},  # the image is 320x240
        {**first, "id": 4},  # the same box as annotations[0]
        {**first, "id": 5, "bbox": [10, 10, 0, 5]},
    ]
    ann.write_text(json.dumps(data))  # writes NaN, which Python's json reads back
    Image.new("RGB", (320, 240)).save(root / "000000448263.jpg")
    problems = check_dataset("coco", root)
    _take(problems, ann, None, f"annotations[{n}] (id 1): unknown category_id 12")
    _take(problems, ann, None, f"annotations[{n + 1}] (id 2): bbox[2] is not finite")
    _take(
        problems, ann, None, f"annotations[{n + 2}] (id 3): person box (300, 200, 400, 300) extends outside"
    )
    _take(
        problems,
        ann,
        None,
        f"annotations[{n + 3}] (id 4): duplicate person box: identical to annotations[0]",
        severity="warning",
    )
    _take(problems, ann, None, f"annotations[{n + 4}] (id 5): degenerate person box", "width 0")
    assert problems == []
