"""Dataset loaders on small generated datasets: layouts, quirks, classes, missing images, file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.detect.data import classes as C
from ghostq.detect.data.formats import format_names, load_dataset
from ghostq.detect.data.formats.dota_writer import write_dota_labels
from ghostq.detect.data.formats.registry import formats, register_format


def _image(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)
    return path


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_registry_has_one_loader_per_format():
    assert set(format_names()) == {"airbus", "dota", "dior", "dior-r", "nwpu", "vedai", "coco"}
    assert all(callable(formats()[f].scan) for f in format_names())
    with pytest.raises(TypeError):
        formats()["x"] = formats()["dota"]  # read-only registry


def test_a_second_scan_function_under_a_registered_name_is_refused():
    with pytest.raises(ValueError, match="dataset format 'dota' is registered twice"):
        register_format("dota")(lambda root, issues: None)


def test_format_modules_import_nothing_from_the_package_namespace():
    """The format files use `common` and `registry` only: no import cycle through the package."""
    import ast

    folder = Path(__file__).parents[3] / "src/ghostq/detect/data/formats"
    for path in folder.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "ghostq.detect.data.formats", f"{path.name} imports from the package"


def test_unknown_format_lists_the_formats(tmp_path):
    listed = "airbus, coco, dior, dior-r, dota, nwpu, vedai"
    with pytest.raises(GhostqError, match=f"unknown dataset format 'voc'; choose one of: {listed}"):
        load_dataset("voc", tmp_path)


def test_missing_root_is_a_one_line_error(tmp_path):
    with pytest.raises(DataFormatError, match="dataset folder not found"):
        load_dataset("dota", tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- DOTA
def test_dota_header_crlf_polygon_to_box_and_image_extensions(tmp_path):
    _write(
        tmp_path / "labelTxt/a.txt",
        "imagesource:GoogleEarth\ngsd:0.5\n10 20 30 22 28.5 40 8 38 plane 0\n\n1 2 5 2 5 9 1 9 ship 1\n",
        newline="\r\n",
    )
    _write(tmp_path / "labelTxt/b.txt", "3 4 13 4 13 14 3 14 container-crane\n")  # 9 fields, v1.5 class
    _image(tmp_path / "images/a.jpg", (100, 80))
    _image(tmp_path / "images/b.tif", (50, 60))
    ds = load_dataset("dota", tmp_path)
    assert ds.classes == C.DOTA_V15
    a, b = ds.records
    assert (a.file_name, a.width, a.height) == ("images/a.jpg", 100, 80)
    assert a.path == tmp_path / "images/a.jpg" and a.ann_path == tmp_path / "labelTxt/a.txt"
    np.testing.assert_array_equal(a.boxes, np.array([[8, 20, 30, 40], [1, 2, 5, 9]], np.float32))
    np.testing.assert_array_equal(a.polygons[0], np.array([10, 20, 30, 22, 28.5, 40, 8, 38], np.float32))
    assert a.labels.tolist() == [C.DOTA_V15.index("plane"), C.DOTA_V15.index("ship")]
    assert a.difficult.tolist() == [False, True]
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert (b.file_name, b.width, b.height) == ("images/b.tif", 50, 60)
    assert b.labels.tolist() == [C.DOTA_V15.index("container-crane")] and b.difficult.tolist() == [False]


def test_dota_reads_what_the_dota_writer_writes_including_synthetic_headers(tmp_path):
    polys = np.array(
        [[1.5, 2, 11, 2, 11, 7.5, 1.5, 7.5], [20, 20, 30, 25, 25, 35, 15, 30.1]]
    )  # writer: 0.1 px
    write_dota_labels(tmp_path / "labelTxt/s0.txt", polys, ["small-vehicle", "storage-tank"], [False, True])
    _image(tmp_path / "images/s0.png")
    assert (tmp_path / "labelTxt/s0.txt").read_text().startswith("imagesource:ghostq\ngsd:null\n")
    rec = load_dataset("dota", tmp_path, classes=C.SYNTHETIC).records[0]
    np.testing.assert_allclose(rec.polygons, polys, rtol=0, atol=1e-5)
    assert rec.labels.tolist() == [C.SYNTHETIC.index("small-vehicle"), C.SYNTHETIC.index("storage-tank")]
    assert rec.difficult.tolist() == [False, True]


def test_dota_bad_line_names_file_and_line(tmp_path):
    ann = _write(
        tmp_path / "labelTxt/a.txt",
        "imagesource:GF\ngsd:1\n1 2 3 4 5 6 7 8 plane 0\n1 2 3 x 5 6 7 8 plane 0\n",
    )
    _image(tmp_path / "images/a.png")
    with pytest.raises(DataFormatError) as err:
        load_dataset("dota", tmp_path)
    assert str(err.value) == f"{ann}:4: coordinate 4 is not a number: 'x'"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 2 3 4 5 6 7 8 plane 0 7", "expected 10 fields"),
        ("1 2 3 4 5 6 7 plane 0", "expected 10 fields"),
        ("1 2 3 4 5 6 7 8 airport 0", "unknown class 'airport'"),
        ("1 2 3 nan 5 6 7 8 plane 0", "not finite"),
        ("1 2 3 4 5 6 7 1e999 plane 0", "not finite"),
        ("1 2 3 4 5 6 7 8 plane 2", "difficult flag must be 0 or 1"),
    ],
)
def test_dota_malformed_lines(tmp_path, line, message):
    ann = _write(tmp_path / "labelTxt/a.txt", f"1 1 2 1 2 2 1 2 plane 0\n{line}\n")
    _image(tmp_path / "images/a.png")
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("dota", tmp_path)
    assert (err.value.path, err.value.line) == (str(ann), 2)


def test_missing_images_error_lists_the_first_few_and_counts(tmp_path):
    for i in range(8):
        _write(tmp_path / f"labelTxt/p{i}.txt", "1 1 2 1 2 2 1 2 plane 0\n")
    _image(tmp_path / "images/p0.png")
    with pytest.raises(GhostqError) as err:
        load_dataset("dota", tmp_path)
    msg = str(err.value)
    assert msg.startswith("7 of 8 images named by the annotations are missing: ")
    assert str(tmp_path / "images/p1.png") in msg and "(and 2 more)" in msg and "p7.png" not in msg
    ds = load_dataset("dota", tmp_path, skip_missing=True)
    assert [r.file_name for r in ds.records] == ["images/p0.png"]
    assert ds.missing == [str(tmp_path / f"images/p{i}.png") for i in range(1, 8)]


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "labelTxt").mkdir()
    with pytest.raises(DataFormatError, match="empty dataset: no annotated images found"):
        load_dataset("dota", tmp_path)
    _write(tmp_path / "labelTxt/a.txt", "1 1 2 1 2 2 1 2 plane 0\n")
    with pytest.raises(DataFormatError, match="empty dataset: all 1 images .* are missing"):
        load_dataset("dota", tmp_path, skip_missing=True)
    with pytest.raises(DataFormatError, match="no labelTxt/ folder"):
        load_dataset("dota", tmp_path / "labelTxt")


def test_out_of_image_and_degenerate_boxes_load(tmp_path):
    """Loaders load what parses; `check` reports such boxes."""
    _write(tmp_path / "labelTxt/a.txt", "90 5 120 5 120 9 90 9 plane 0\n3 3 3 3 3 3 3 3 ship 0\n")
    _image(tmp_path / "images/a.png", (100, 100))
    rec = load_dataset("dota", tmp_path).records[0]
    np.testing.assert_array_equal(rec.boxes, [[90, 5, 120, 9], [3, 3, 3, 3]])


def test_corrupt_image_header_is_an_error_naming_the_image(tmp_path):
    _write(tmp_path / "labelTxt/a.txt", "1 1 2 1 2 2 1 2 plane 0\n")
    bad = _write(tmp_path / "images/a.png", "not an image")
    with pytest.raises(DataFormatError, match="unreadable image") as err:
        load_dataset("dota", tmp_path)
    assert err.value.path == str(bad)


# ---------------------------------------------------------------------------------------------- DIOR
def _voc(
    objects: str, folder: str = "JPEGImages", size: str = "<width>120</width><height>90</height>"
) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<annotation>\n<folder>{folder}</folder>\n'
        f"<filename>X.jpg</filename>\n<size>{size}<depth>3</depth></size>\n{objects}</annotation>\n"
    )


def _hobj(name: str, box: str, extra: str = "") -> str:
    x1, y1, x2, y2 = box.split()
    return (
        f"<object>\n<name>{name}</name>{extra}\n<bndbox>\n<xmin>{x1}</xmin>\n<ymin>{y1}</ymin>\n"
        f"<xmax>{x2}</xmax>\n<ymax>{y2}</ymax>\n</bndbox>\n</object>\n"
    )


def test_dior_horizontal_mixed_case_difficult_and_image_folders(tmp_path):
    ann = tmp_path / "Annotations/Horizontal Bounding Boxes"
    _write(
        ann / "00005.xml",
        _voc(
            _hobj("Expressway-Service-area", "10 20 30 40")
            + _hobj("VEHICLE", "1 2 3 4", "<difficult>1</difficult>"),
            folder="机场数据",
        ),
        newline="\r\n",
    )
    _write(ann / "00006.xml", _voc(_hobj("windmill", "5 6 7 8")).replace("X.jpg", "00006.jpg"))
    _image(tmp_path / "JPEGImages-test/00005.jpg", (120, 90))
    _image(tmp_path / "JPEGImages-trainval/00006.jpg", (120, 90))
    ds = load_dataset("dior", tmp_path)
    a, b = ds.records
    assert (a.file_name, b.file_name) == ("JPEGImages-test/00005.jpg", "JPEGImages-trainval/00006.jpg")
    assert a.labels.tolist() == [C.DIOR.index("Expressway-Service-area"), C.DIOR.index("vehicle")]
    assert a.difficult.tolist() == [False, True] and a.polygons is None
    np.testing.assert_array_equal(a.boxes, [[10, 20, 30, 40], [1, 2, 3, 4]])


def test_dior_r_polygons_from_robndbox_corners(tmp_path):
    corners = dict(
        x_left_top=231,
        y_left_top=241,
        x_right_top=292,
        y_right_top=231,
        x_right_bottom=302,
        y_right_bottom=294,
        x_left_bottom=242,
        y_left_bottom=304,
    )
    rb = "".join(f"<{k}>{v}</{k}>\n" for k, v in corners.items())
    obj = (
        f"<object>\n<type>robndbox</type>\n<name>ship</name>\n<robndbox>\n{rb}</robndbox>\n"
        "<angle>-9.6</angle>\n</object>\n"
    )
    _write(tmp_path / "Annotations/Oriented Bounding Boxes/00002.xml", _voc(obj))
    _image(tmp_path / "JPEGImages/00002.jpg", (120, 90))
    rec = load_dataset("dior-r", tmp_path).records[0]
    np.testing.assert_array_equal(rec.polygons, [[231, 241, 292, 231, 302, 294, 242, 304]])
    np.testing.assert_array_equal(rec.boxes, [[231, 231, 302, 304]])


def test_dior_errors_name_the_line_of_the_field(tmp_path):
    ann = _write(
        tmp_path / "Annotations/Horizontal Bounding Boxes/00001.xml",
        _voc(_hobj("ship", "1 2 3 4") + _hobj("boat", "1 2 3 4")),
    )
    _image(tmp_path / "JPEGImages/00001.jpg")
    with pytest.raises(DataFormatError, match="unknown class 'boat'") as err:
        load_dataset("dior", tmp_path)
    lines = ann.read_text().split("\n")
    assert err.value.line == lines.index("<name>boat</name>") + 1
    ann.write_text(_voc(_hobj("ship", "1 2 x 4")))
    with pytest.raises(DataFormatError, match=r"<xmax> is not a number: 'x'") as err:
        load_dataset("dior", tmp_path)
    assert err.value.line == ann.read_text().split("\n").index("<xmax>x</xmax>") + 1
    ann.write_text(_voc("<object><name>ship</name>\n</object>\n"))
    with pytest.raises(DataFormatError, match="<object> without <bndbox>"):
        load_dataset("dior", tmp_path)
    ann.write_text("<annotation>\n<object>\n</annotation>\n")
    with pytest.raises(DataFormatError, match="not valid XML: mismatched tag") as err:
        load_dataset("dior", tmp_path)
    assert err.value.line == 3


def test_dior_annotations_only_uses_the_xml_size(tmp_path):
    _write(tmp_path / "Annotations/Horizontal Bounding Boxes/00001.xml", _voc(_hobj("ship", "1 2 3 4")))
    with pytest.raises(GhostqError, match="missing"):
        load_dataset("dior", tmp_path)
    rec = load_dataset("dior", tmp_path, require_images=False).records[0]
    assert (rec.width, rec.height, rec.file_name) == (120, 90, "JPEGImages-trainval/X.jpg")


# ---------------------------------------------------------------------------------------------- NWPU
def test_nwpu_quirks_and_negative_images(tmp_path):
    _write(tmp_path / "ground truth/001.txt", "( 84,508),(130, 560),1 \n(1,2),(3,4),10 \n\n\n(5,6),(7,8),3 ")
    _image(tmp_path / "positive image set/001.jpg", (600, 700))
    _image(tmp_path / "negative image set/001.jpg", (30, 40))
    _image(tmp_path / "negative image set/002.jpg", (30, 40))
    ds = load_dataset("nwpu", tmp_path)
    assert [r.file_name for r in ds.records] == [
        "positive image set/001.jpg",
        "negative image set/001.jpg",
        "negative image set/002.jpg",
    ]
    pos = ds.records[0]
    np.testing.assert_array_equal(pos.boxes, [[84, 508, 130, 560], [1, 2, 3, 4], [5, 6, 7, 8]])
    assert [ds.classes[i] for i in pos.labels] == ["airplane", "vehicle", "storage tank"]
    assert all(r.num_objects == 0 and r.width == 30 for r in ds.records[1:])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("(1,2),(3,4),11", "unknown class number 11"),
        ("(1,2),(3,4),0", "unknown class number 0"),
        ("(1,2),(3,4)", "expected '\\(x1,y1\\),\\(x2,y2\\),class'"),
        ("(1,2,3),(3,4),1", "expected 2 numbers"),
        ("(1,a),(3,4),1", "top-left y is not a number"),
        ("(1,2),(3,4),1.5", "class number is not an integer"),
    ],
)
def test_nwpu_malformed_lines(tmp_path, line, message):
    ann = _write(tmp_path / "ground truth/001.txt", f"(1,2),(3,4),1\n\n{line}\n")
    _image(tmp_path / "positive image set/001.jpg")
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("nwpu", tmp_path)
    assert (err.value.path, err.value.line) == (str(ann), 3)


# ---------------------------------------------------------------------------------------------- VEDAI
VEDAI_LINE = "290.3 504.6 3.01 31 1 0 277 303 304 279 502 498 508 511\n"


def _vedai(root: Path, res: int, images: bool) -> None:
    _write(root / f"Annotations{res}/00000001.txt", VEDAI_LINE)
    if images:
        _image(root / f"Vehicules{res}/00000001_co.png", (res, res))
        _image(root / f"Vehicules{res}/00000001_ir.png", (res, res))


def test_vedai_columns_codes_and_ir(tmp_path):
    _vedai(tmp_path, 512, images=True)
    ds = load_dataset("vedai", tmp_path)
    rec = ds.records[0]
    assert (rec.file_name, rec.width) == ("Vehicules512/00000001_co.png", 512)
    assert rec.ir_path == tmp_path / "Vehicules512/00000001_ir.png"
    np.testing.assert_array_equal(rec.polygons, [[277, 502, 303, 498, 304, 508, 279, 511]])
    np.testing.assert_array_equal(rec.boxes, [[277, 498, 304, 511]])
    assert ds.classes[rec.labels[0]] == "plane" and rec.difficult.tolist() == [False]


def test_vedai_resolution_follows_what_exists(tmp_path):
    _vedai(tmp_path, 512, images=False)
    _vedai(tmp_path, 1024, images=True)
    assert load_dataset("vedai", tmp_path).records[0].width == 1024  # only 1024 images exist
    _vedai(tmp_path, 512, images=True)
    assert load_dataset("vedai", tmp_path).records[0].width == 512  # both: 512
    assert load_dataset("vedai", tmp_path, resolution=1024).records[0].file_name.startswith("Vehicules1024/")
    with pytest.raises(GhostqError, match="512, 1024"):
        load_dataset("vedai", tmp_path, resolution=256)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 2 3 1 1 0 1 2 3 4 5 6 7", "expected 14 fields"),
        ("1 2 3 3 1 0 1 2 3 4 5 6 7 8", "unknown class code 3"),
        ("1 2 3 1 1 0 1 2 3 4 5 6 7 inf", "corner y4 is not finite"),
        ("1 2 3 1.0 1 0 1 2 3 4 5 6 7 8", "class code is not an integer"),
        ("1 2 3 1 2 0 1 2 3 4 5 6 7 8", "contained flag must be 0 or 1"),
    ],
)
def test_vedai_malformed_lines(tmp_path, line, message):
    _vedai(tmp_path, 512, images=True)
    ann = _write(tmp_path / "Annotations512/00000001.txt", VEDAI_LINE + line + "\n")
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("vedai", tmp_path)
    assert (err.value.path, err.value.line) == (str(ann), 2)


# ---------------------------------------------------------------------------------------------- COCO
def _coco(tmp_path: Path, annotations: list[dict], name: str = "ann.json") -> Path:
    data = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 9, "file_name": "b.jpg", "width": 64, "height": 48},
        ],
        "annotations": annotations,
        "categories": [{"id": 5, "name": "car"}, {"id": 2, "name": "ship"}],
    }
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_coco_categories_in_list_order_flags_and_image_dirs(tmp_path):
    ann = _coco(
        tmp_path,
        [
            {"id": 1, "image_id": 7, "category_id": 2, "bbox": [1.5, 2, 10, 20]},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 4, 4], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [0, 0, 4, 4], "ignore": True},
        ],
    )
    _image(tmp_path / "images/a.jpg")
    _image(tmp_path / "images/b.jpg")
    for root in (tmp_path, ann):  # the folder or the json file itself
        ds = load_dataset("coco", root)
        assert ds.classes == ("car", "ship")
        a, b = ds.records
        assert (a.file_name, a.path) == ("a.jpg", tmp_path / "images/a.jpg")
        np.testing.assert_array_equal(a.boxes, [[1.5, 2, 11.5, 22], [0, 0, 4, 4], [0, 0, 4, 4]])
        assert a.labels.tolist() == [1, 0, 0] and a.difficult.tolist() == [False, True, True]
        assert b.num_objects == 0


def test_coco_missing_images_and_annotations_only(tmp_path):
    _coco(tmp_path, [{"id": 1, "image_id": 9, "category_id": 5, "bbox": [1, 2, 3, 4]}])
    with pytest.raises(GhostqError, match="all 2 images named by the annotations are missing .*--annotations-only"):
        load_dataset("coco", tmp_path)
    ds = load_dataset("coco", tmp_path, require_images=False)
    assert [(r.file_name, r.width, r.height, r.num_objects) for r in ds.records] == [
        ("a.jpg", 64, 48, 0),
        ("b.jpg", 64, 48, 1),
    ]
    _image(tmp_path / "elsewhere/a.jpg")
    ds = load_dataset("coco", tmp_path, skip_missing=True, image_dir=tmp_path / "elsewhere")
    assert [r.file_name for r in ds.records] == ["a.jpg"] and ds.missing == [
        str(tmp_path / "elsewhere/b.jpg")
    ]


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ({"image_id": 7, "category_id": 3, "bbox": [1, 2, 3, 4]}, "unknown category_id 3"),
        ({"image_id": 8, "category_id": 5, "bbox": [1, 2, 3, 4]}, "image_id 8 is not in 'images'"),
        ({"image_id": 7, "category_id": 5, "bbox": [1, 2, 3]}, "bbox must be a list of 4 numbers"),
        ({"image_id": 7, "category_id": 5, "bbox": [1, "2", 3, 4]}, r"bbox\[1\] must be a number"),
        ({"image_id": 7, "category_id": 5, "bbox": [1, 2, float("nan"), 4]}, r"bbox\[2\] is not finite"),
        ({"image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4], "iscrowd": "yes"}, "iscrowd must be 0 or 1"),
    ],
)
def test_coco_malformed_annotations_name_the_entry(tmp_path, ann, message):
    good = {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4]}
    path = _coco(tmp_path, [good, {"id": 42, **ann}])
    with pytest.raises(DataFormatError, match=message) as err:
        load_dataset("coco", tmp_path, require_images=False)
    assert str(err.value).startswith(f"{path}: annotations[1] (id 42): ")


def test_coco_bad_json_names_the_line(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text('{\n  "images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(DataFormatError, match="not valid JSON") as err:
        load_dataset("coco", tmp_path)
    assert (err.value.path, err.value.line) == (str(p), 3)
    _coco(tmp_path, [], name="other.json")
    with pytest.raises(DataFormatError, match="2 json files found"):
        load_dataset("coco", tmp_path)


# ---------------------------------------------------------------------------------------------- infrared
def test_dota_picks_up_infrared_images_of_the_synthetic_layout(tmp_path):
    _write(tmp_path / "labelTxt/a.txt", "1 1 2 1 2 2 1 2 plane 0\n")
    _write(tmp_path / "labelTxt/b.txt", "1 1 2 1 2 2 1 2 plane 0\n")
    _image(tmp_path / "images/a.png")
    _image(tmp_path / "images/b.png")
    _image(tmp_path / "images_ir/a.png")
    a, b = load_dataset("dota", tmp_path).records
    assert a.ir_path == tmp_path / "images_ir/a.png" and b.ir_path is None


def test_coco_written_by_ghostq_reads_back_the_same_records(tmp_path):
    from ghostq.detect.data.coco_json import write_coco_json

    _vedai(tmp_path, 512, images=True)
    ds = load_dataset("vedai", tmp_path)
    write_coco_json(ds, tmp_path / "coco/vedai.json")
    back = load_dataset("coco", tmp_path / "coco/vedai.json", image_dir=tmp_path)
    assert back.classes == ds.classes
    (r0,), (r1,) = ds.records, back.records
    assert (r1.file_name, r1.path, r1.ir_path, r1.width) == (r0.file_name, r0.path, r0.ir_path, r0.width)
    np.testing.assert_array_equal(r1.boxes, r0.boxes)
    assert r1.labels.tolist() == r0.labels.tolist() and r1.difficult.tolist() == r0.difficult.tolist()
