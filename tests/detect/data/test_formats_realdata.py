"""The loaders and `ghostq data convert` on the real sample files (../shared/rs_samples).

Reference counts below were counted from the raw files with awk/grep (not with ghostq), e.g.
`tr -d '\\r' < dota/labelTxt/P1234.txt | awk 'NF==10{print $9" d="$10}' | sort | uniq -c` and
`cat 'nwpu_vhr10/ground truth'/*.txt | grep -o '),[ 0-9]*[0-9]' | sort | uniq -c`; every box is also
compared with an independent parse of the raw text (split / regex / ElementTree).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.core.errors import GhostqError
from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.formats.dota import parse_dota_text
from ghostq.detect.data.formats.nwpu import parse_nwpu_text
from ghostq.detect.data.formats.vedai import parse_vedai_text

pytestmark = pytest.mark.realdata

DOTA_ALL = {  # per file: class -> objects (difficult in brackets)
    "P0770": {"baseball-diamond": 2, "ground-track-field": 1, "swimming-pool": 9, "tennis-court": 10},
    "P1234": {"bridge": 6, "harbor": 4, "ship": 24, "storage-tank": 110},  # 44 storage tanks difficult
    "P1888": {"large-vehicle": 50, "small-vehicle": 14},
}
NWPU_ALL = {"airplane": 372, "storage tank": 22, "vehicle": 59}  # 44 ground-truth files, 453 objects
DIOR_ALL = {
    "airport": 1,
    "Expressway-toll-station": 1,
    "golffield": 1,
    "harbor": 5,
    "ship": 144,
    "trainstation": 1,
    "vehicle": 3,
}
VEDAI_512 = {"car": 4, "truck": 2, "camping car": 1, "van": 1, "other": 1, "pickup": 2, "boat": 1}
COCO_ALL = {"person": 14, "sports ball": 1, "baseball glove": 1}


def _convert(tmp_path: Path, fmt: str, root: Path, *extra: str) -> tuple[dict, dict]:
    out, summary = tmp_path / f"{fmt}.json", tmp_path / f"{fmt}-summary.json"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "convert",
            "--format",
            fmt,
            "--root",
            str(root),
            "--out",
            str(out),
            "--json",
            str(summary),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    coco = json.loads(out.read_text())
    COCO(str(out))  # pycocotools reads it
    return coco, json.loads(summary.read_text())


def _per_class(coco: dict) -> dict[str, int]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return dict(Counter(names[a["category_id"]] for a in coco["annotations"]))


def _images(coco: dict) -> list[tuple[str, int, int]]:
    return [(im["file_name"], im["width"], im["height"]) for im in coco["images"]]


# ---------------------------------------------------------------------------------------------- DOTA
def test_dota_convert_skip_missing(rs_samples, tmp_path):
    coco, summary = _convert(tmp_path, "dota", rs_samples / "dota", "--skip-missing")
    assert _images(coco) == [("images/P1888.png", 712, 557)]
    assert _per_class(coco) == DOTA_ALL["P1888"]
    assert summary["skipped"] == 2 and summary["images"] == 1 and summary["objects"] == 64
    # line 3 of P1888.txt: "674 375 683 375 684 394 675 395 small-vehicle 0"
    first = coco["annotations"][0]
    assert first["bbox"] == [674.0, 375.0, 10.0, 20.0]
    assert first["segmentation"] == [[674.0, 375.0, 683.0, 375.0, 684.0, 394.0, 675.0, 395.0]]


def test_dota_every_polygon_matches_the_raw_text(rs_samples):
    for stem, expected in DOTA_ALL.items():
        path = rs_samples / "dota" / "labelTxt" / f"{stem}.txt"
        raw = path.read_bytes().decode()
        assert "\r\n" in raw  # the CRLF quirk is really there
        objs = parse_dota_text(raw, path)
        rows = [ln.split() for ln in raw.splitlines() if len(ln.split()) == 10]
        assert len(objs) == len(rows) == sum(expected.values())
        assert [o.polygon for o in objs] == [tuple(float(v) for v in r[:8]) for r in rows]
        assert [o.difficult for o in objs] == [r[9] == "1" for r in rows]
        assert [o.line for o in objs] == list(range(3, 3 + len(rows)))  # after the two header lines
    p1234 = parse_dota_text((rs_samples / "dota/labelTxt/P1234.txt").read_text(), "P1234.txt")
    assert sum(o.difficult for o in p1234) == 44


def test_dota_without_skip_missing_names_the_missing_images(rs_samples):
    with pytest.raises(GhostqError, match=r"2 of 3 images .* missing: .*P0770\.png, .*P1234\.png"):
        load_dataset("dota", rs_samples / "dota")


# ---------------------------------------------------------------------------------------------- NWPU
def test_nwpu_convert_skip_missing(rs_samples, tmp_path):
    coco, summary = _convert(tmp_path, "nwpu", rs_samples / "nwpu_vhr10", "--skip-missing")
    assert _images(coco) == [
        ("positive image set/001.jpg", 958, 808),
        ("positive image set/036.jpg", 533, 597),
        ("negative image set/001.jpg", 1066, 588),
    ]
    assert _per_class(coco) == {"airplane": 7}
    assert [a["image_id"] for a in coco["annotations"]] == [1] + [2] * 6
    assert summary["skipped"] == 44 - 2  # 44 ground-truth files, 2 of their images present
    # 036.txt line 2: "( 98,208),(188,278),1 "
    assert coco["annotations"][2]["bbox"] == [98.0, 208.0, 90.0, 70.0]


def test_nwpu_every_box_matches_the_raw_text(rs_samples):
    total: Counter = Counter()
    files = sorted((rs_samples / "nwpu_vhr10" / "ground truth").glob("*.txt"))
    assert len(files) == 44
    for path in files:
        raw = path.read_text()
        objs = parse_nwpu_text(raw, path)
        rows = [[int(v) for v in re.findall(r"\d+", ln)] for ln in raw.split("\n") if ln.strip()]
        assert [o.box for o in objs] == [tuple(float(v) for v in r[:4]) for r in rows]
        assert [o.label for o in objs] == [r[4] - 1 for r in rows]
        total.update(o.label for o in objs)
    from ghostq.detect.data.classes import NWPU_VHR10

    assert {NWPU_VHR10[k]: v for k, v in total.items()} == NWPU_ALL


# ---------------------------------------------------------------------------------------------- DIOR
@pytest.mark.parametrize("fmt", ["dior", "dior-r"])
def test_dior_convert_skip_missing(rs_samples, tmp_path, fmt):
    coco, summary = _convert(tmp_path, fmt, rs_samples / "dior", "--skip-missing")
    assert _images(coco) == [("JPEGImages-trainval/00001.jpg", 800, 800)]
    assert _per_class(coco) == {"golffield": 1}
    assert coco["annotations"][0]["bbox"] == [
        133.0,
        237.0,
        551.0,
        435.0,
    ]  # xmin 133 ymin 237 xmax 684 ymax 672
    assert summary["skipped"] == 4
    if fmt == "dior-r":
        assert coco["annotations"][0]["segmentation"] == [
            [133.0, 237.0, 684.0, 237.0, 684.0, 672.0, 133.0, 672.0]
        ]


def _xml_objects(path: Path, oriented: bool) -> list[tuple[str, tuple[float, ...]]]:
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        if oriented:
            rb = obj.find("robndbox")
            vals = [
                float(rb.find(f"{a}_{c}").text)
                for c in ("left_top", "right_top", "right_bottom", "left_bottom")
                for a in ("x", "y")
            ]
        else:
            bb = obj.find("bndbox")
            vals = [float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
        out.append((obj.find("name").text.lower(), tuple(vals)))
    return out


@pytest.mark.parametrize("fmt", ["dior", "dior-r"])
def test_dior_annotations_only_every_object(rs_samples, tmp_path, fmt):
    coco, _ = _convert(tmp_path, fmt, rs_samples / "dior", "--annotations-only")
    assert [im["file_name"] for im in coco["images"]] == [
        f"JPEGImages-trainval/{i}.jpg" for i in ("00001", "00002", "00003", "00007", "00025")
    ]
    assert _per_class(coco) == DIOR_ALL
    ds = load_dataset(fmt, rs_samples / "dior", require_images=False)
    sub = "Oriented Bounding Boxes" if fmt == "dior-r" else "Horizontal Bounding Boxes"
    for rec in ds.records:
        expected = _xml_objects(
            rs_samples / "dior" / "Annotations" / sub / f"{Path(rec.file_name).stem}.xml",
            oriented=fmt == "dior-r",
        )
        assert [ds.classes[i].lower() for i in rec.labels] == [n for n, _ in expected]
        got = rec.polygons if fmt == "dior-r" else rec.boxes
        np.testing.assert_array_equal(got, np.array([v for _, v in expected], np.float32).reshape(got.shape))
    if fmt == "dior-r":  # 00002.xml, 4th object: rotated toll station, angle -9.6; its box is the min/max
        np.testing.assert_array_equal(ds.records[1].boxes[3], [231, 231, 302, 304])
    else:  # the horizontal set lists the toll station first, with its own box
        np.testing.assert_array_equal(ds.records[1].boxes[0], [231, 221, 303, 304])


# ---------------------------------------------------------------------------------------------- VEDAI
def test_vedai_convert(rs_samples, tmp_path):
    coco, summary = _convert(tmp_path, "vedai", rs_samples / "vedai", "--skip-missing")
    assert _images(coco) == [
        ("Vehicules512/00000000_co.png", 512, 512),
        ("Vehicules512/00000057_co.png", 512, 512),
    ]
    assert [im["ir_file_name"] for im in coco["images"]] == [
        "Vehicules512/00000000_ir.png",
        "Vehicules512/00000057_ir.png",
    ]
    assert _per_class(coco) == VEDAI_512 and summary["skipped"] == 0
    # 00000000.txt: "... 2 1 0 277 303 304 279 502 498 508 511" (x1..x4 then y1..y4), a truck
    first = coco["annotations"][0]
    assert first["segmentation"] == [[277.0, 502.0, 303.0, 498.0, 304.0, 508.0, 279.0, 511.0]]
    assert first["bbox"] == [277.0, 498.0, 27.0, 13.0]


@pytest.mark.parametrize("res", [512, 1024])
def test_vedai_every_corner_matches_the_raw_text(rs_samples, res):
    for path in sorted((rs_samples / "vedai" / f"Annotations{res}").glob("*.txt")):
        raw = path.read_text()
        rows = [[float(v) for v in ln.split()] for ln in raw.splitlines() if ln.strip()]
        objs = parse_vedai_text(raw, path)
        assert [o.polygon for o in objs] == [
            (r[6], r[10], r[7], r[11], r[8], r[12], r[9], r[13]) for r in rows
        ]
    with pytest.raises(GhostqError, match="all 2 images"):  # no Vehicules1024 images in the samples
        load_dataset("vedai", rs_samples / "vedai", resolution=1024, skip_missing=True)


# ---------------------------------------------------------------------------------------------- COCO
def test_coco_sample(rs_samples, tmp_path):
    root = rs_samples / "coco"
    with pytest.raises(GhostqError, match="all 1 images .* missing .*000000448263.jpg.*--annotations-only"):
        load_dataset("coco", root)
    with pytest.raises(GhostqError, match="empty dataset: all 1 images"):  # skip-missing leaves nothing
        load_dataset("coco", root, skip_missing=True)
    coco, summary = _convert(tmp_path, "coco", root, "--annotations-only")
    assert _images(coco) == [("000000448263.jpg", 320, 240)]
    assert _per_class(coco) == COCO_ALL and summary["objects"] == 16
    raw = json.loads((root / "instances_val2017_1img-sample.json").read_text())
    by_id = {a["id"]: a for a in raw["annotations"]}
    assert [a["bbox"] for a in raw["annotations"]][0] == [80.0, 6.49, 223.89, 223.36]
    ds = load_dataset("coco", root, require_images=False)
    rec = ds.records[0]
    expected = np.array(
        [
            [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in raw["annotations"]
        ],
        np.float32,
    )
    np.testing.assert_array_equal(rec.boxes, expected)
    assert rec.difficult.tolist() == [bool(a["iscrowd"]) for a in raw["annotations"]]
    assert rec.difficult.sum() == 1 and by_id[900100448263]["iscrowd"] == 1
