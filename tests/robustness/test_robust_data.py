"""Planted bad inputs for the dataset readers, `ghostq data convert / check / split / noise / synth` and
`ghostq eval --gt --dets`: each gives the exact one-line error (naming file and line), the correct file, or
leaves the inputs unchanged."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.core.errors import DataFormatError, GhostqError
from ghostq.detect.data.check import MAX_PER_FILE, check_dataset, summarize
from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.formats.dota_writer import write_dota_labels
from ghostq.detect.evaluate import evaluate_coco

BIG_INT = "9" * 5000  # over Python's 4,300-digit int-string limit
SHOWN_BIG_INT = "'" + "9" * 17 + "..." + "9" * 18 + "'"  # how an error message abbreviates it
DOTA_OK = "10 10 20 10 20 20 10 20 plane 0"
VEDAI_LINE = "290.3 504.6 3.01 31 1 0 277 303 304 279 502 498 508 511"


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_line_error(result, expected: str) -> str:  # noqa: ANN001
    """The command failed with a GhostqError whose one-line text is `expected` (exactly)."""
    assert isinstance(result.exception, GhostqError), result.output
    message = str(result.exception)
    assert "\n" not in message
    assert message == expected
    return message


def _image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)


def _dota(root: Path, lines: list[str], image: bool = True) -> Path:
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt/a.txt").write_text("imagesource:GoogleEarth\ngsd:0.1\n" + "\n".join(lines) + "\n")
    if image:
        _image(root / "images/a.png", (64, 64))
    return root


def _dior_xml(width: str = "800", name: str = "airplane", filename: str = "X.jpg") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<annotation>\n'
        f"<filename>{filename}</filename>\n<size>\n<width>{width}</width>\n<height>800</height>\n</size>\n"
        f"<object>\n<name>{name}</name>\n<bndbox>\n<xmin>10</xmin>\n<ymin>10</ymin>\n<xmax>50</xmax>\n"
        "<ymax>40</ymax>\n</bndbox>\n</object>\n</annotation>\n"
    )


def _coco_gt(path: Path) -> dict:
    gt = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "plane"}],
    }
    path.write_text(json.dumps(gt))
    return gt


# ---------------------------------------------------------------------------------------------- item 9
def test_converted_json_scores_the_same_in_pycocotools_as_in_ghostq_eval(tmp_path):
    """Difficult objects are written iscrowd: 1, so plain pycocotools scores the file as `ghostq eval`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = tmp_path / "ds"
    polys = np.array(
        [
            [2, 2, 22, 2, 22, 18, 2, 18],  # plane
            [30, 30, 50, 30, 50, 46, 30, 46],  # plane, difficult
            [5, 40, 25, 40, 25, 60, 5, 60],  # ship
            [40, 2, 60, 2, 60, 14, 40, 14],  # ship, difficult
        ],
        float,
    )
    write_dota_labels(root / "labelTxt/a.txt", polys, ["plane", "plane", "ship", "ship"], [0, 1, 0, 1])
    _image(root / "images/a.png", (64, 64))
    out = tmp_path / "gt.json"
    assert _run("data", "convert", "-f", "dota", "--root", str(root), "--out", str(out)).exit_code == 0
    coco = json.loads(out.read_text())
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1, 0, 1]
    plane, ship = (next(c["id"] for c in coco["categories"] if c["name"] == n) for n in ("plane", "ship"))
    dets = [
        {"image_id": 1, "category_id": plane, "bbox": [2.5, 2, 19, 16], "score": 0.9},
        {"image_id": 1, "category_id": plane, "bbox": [31, 30, 19, 16], "score": 0.95},  # on the difficult one
        {"image_id": 1, "category_id": ship, "bbox": [40, 2, 20, 12], "score": 0.97},  # on the difficult one
        {"image_id": 1, "category_id": ship, "bbox": [6, 42, 20, 20], "score": 0.6},
        {"image_id": 1, "category_id": ship, "bbox": [0, 20, 10, 10], "score": 0.8},  # a false positive
    ]
    ours = evaluate_coco(out, dets)
    with redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        ev = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["mAP50_95"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert ours["mAP50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert 0 < ours["mAP50"] < 1  # the false positive counts; the detections on difficult objects do not


# ---------------------------------------------------------------------------------------------- item 10
def test_dior_annotations_only_takes_the_image_folder_from_the_split_lists(tmp_path):
    ann = tmp_path / "Annotations/Horizontal Bounding Boxes"
    ann.mkdir(parents=True)
    for stem in ("00001", "11727", "20000"):
        (ann / f"{stem}.xml").write_text(_dior_xml(filename=f"{stem}.jpg"))
    (tmp_path / "ImageSets/Main").mkdir(parents=True)
    (tmp_path / "ImageSets/Main/trainval.txt").write_text("00001\n")
    (tmp_path / "ImageSets/Main/test.txt").write_text("11727\r\n20000\n")
    out = tmp_path / "dior.json"
    result = _run("data", "convert", "-f", "dior", "--root", str(tmp_path), "--out", str(out), "--annotations-only")
    assert result.exit_code == 0, result.output
    names = [im["file_name"] for im in json.loads(out.read_text())["images"]]
    assert names == ["JPEGImages-trainval/00001.jpg", "JPEGImages-test/11727.jpg", "JPEGImages-test/20000.jpg"]


# ---------------------------------------------------------------------------------------------- item 18
def _fmt_case(tmp_path: Path, fmt: str) -> tuple[Path, Path, int | None, str]:
    """A dataset with one planted bad value: (root, file, line, message)."""
    root = tmp_path / fmt
    if fmt == "dota-float32":
        _dota(root, [DOTA_OK, "1e39 10 20 10 20 20 10 20 plane 0"])
        return (
            root,
            root / "labelTxt/a.txt",
            4,
            ("coordinate 1 is out of range (beyond +-3.403e+38, the float32 limit): '1e39'"),
        )
    if fmt == "dior":
        path = root / "Annotations/Horizontal Bounding Boxes/00001.xml"
        path.parent.mkdir(parents=True)
        path.write_text(_dior_xml(width=BIG_INT))
        return root, path, 5, f"<width> is too large: an integer of 5,000 digits ({SHOWN_BIG_INT})"
    if fmt == "vedai":
        path = root / "Annotations512/00000001.txt"
        path.parent.mkdir(parents=True)
        fields = VEDAI_LINE.split()
        fields[3] = BIG_INT
        path.write_text(VEDAI_LINE + "\n" + " ".join(fields) + "\n")
        _image(root / "Vehicules512/00000001_co.png", (512, 512))
        return root, path, 2, f"class code is too large: an integer of 5,000 digits ({SHOWN_BIG_INT})"
    if fmt == "nwpu":
        path = root / "ground truth/001.txt"
        path.parent.mkdir(parents=True)
        path.write_text(f"(1,2),(30,40),1\n(1,2),(30,40),{BIG_INT}\n")
        _image(root / "positive image set/001.jpg", (64, 64))
        return root, path, 2, f"class number is too large: an integer of 5,000 digits ({SHOWN_BIG_INT})"
    if fmt == "coco-int":
        path = root / "ann.json"
        root.mkdir()
        path.write_text('{"images": [{"id": 1,\n"width": ' + BIG_INT + '}], "annotations": [], "categories": []}')
        return root, path, 2, "a number with more than 4300 digits"
    if fmt == "coco-deep":
        path = root / "ann.json"
        root.mkdir()
        path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
        return root, path, None, "JSON nested too deeply to read (about 1,000 levels or more)"
    raise AssertionError(fmt)


@pytest.mark.parametrize("case", ["dota-float32", "dior", "vedai", "nwpu", "coco-int", "coco-deep"])
def test_hostile_values_are_one_line_errors_in_convert_and_check(tmp_path, case):
    root, path, line, message = _fmt_case(tmp_path, case)
    fmt = case.split("-")[0]
    where = f"{path}:{line}" if line is not None else str(path)
    out = tmp_path / "out.json"
    out.write_text("previous")
    result = _run("data", "convert", "-f", fmt, "--root", str(root), "--out", str(out))
    _one_line_error(result, f"{where}: {message}")
    assert out.read_text() == "previous"  # nothing already written is lost
    problems = check_dataset(fmt, root, decode_images=False)
    assert [(p.path, p.line, p.message) for p in problems if p.severity == "error"][0] == (str(path), line, message)


def test_float32_overflow_never_reaches_check_as_inf(tmp_path):
    root = _dota(tmp_path / "ds", ["1e38 10 3e38 10 3e38 20 1e38 20 plane 0", "10 10 20 10 20 20 10 -1e39 ship 0"])
    problems = check_dataset("dota", root, decode_images=False)
    assert all("inf" not in p.message for p in problems)
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (4, "coordinate 8 is out of range (beyond +-3.403e+38, the float32 limit)"),
        (3, "plane box (1e+38, 10, 3e+38, 20) lies entirely outside the 64x64 image (images/a.png)"),
    ]


def test_label_file_linked_to_dev_zero_or_a_fifo_is_skipped_with_a_message(tmp_path):
    root = _dota(tmp_path / "ds", [DOTA_OK])
    (root / "labelTxt/zero.txt").symlink_to("/dev/zero")
    os.mkfifo(root / "labelTxt/pipe.txt")
    problems = check_dataset("dota", root, decode_images=False)
    assert [(p.severity, p.path, p.message) for p in problems] == [
        ("error", str(root / "labelTxt/pipe.txt"), "is a named pipe (FIFO), not a regular file; skipped"),
        ("error", str(root / "labelTxt/zero.txt"), "is a character device, not a regular file; skipped"),
    ]
    with pytest.raises(DataFormatError) as err:
        load_dataset("dota", root)
    assert str(err.value) == f"{root / 'labelTxt/pipe.txt'}: is a named pipe (FIFO), not a regular file; skipped"


def test_an_annotation_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    import ghostq.detect.data.formats.common as formats

    root = _dota(tmp_path / "ds", [DOTA_OK] * 10)
    monkeypatch.setattr(formats, "MAX_ANNOTATION_BYTES", 100)
    size = (root / "labelTxt/a.txt").stat().st_size
    with pytest.raises(DataFormatError) as err:
        load_dataset("dota", root)
    assert str(err.value) == f"{root / 'labelTxt/a.txt'}: file is {size:,} bytes, more than the 100 a reader takes"


# ---------------------------------------------------------------------------------------------- eval --dets
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[{"image_id": ' + BIG_INT + ', "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]',
            "dets.json:1: a number with more than 4300 digits",
        ),
        ("[" * 100_000 + "]" * 100_000, "dets.json: JSON nested too deeply to read (about 1,000 levels or more)"),
        ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]', "dets.json: entry 0: score is NaN"),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [1e400, 2, 3, 4], "score": 0.5}]',
            "dets.json: entry 0: bbox [inf, 2.0, 3.0, 4.0] is not finite",
        ),
        (
            '[{"image_id": 1, "category_id": 1, "bbox": [1' + "0" * 400 + ', 2, 3, 4], "score": 0.5}]',
            "dets.json: entry 0: a number beyond the float range",
        ),
        (
            '[{"image_id": 1' + "0" * 30 + ', "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "dets.json: entry 0: id out of the 64-bit range",
        ),
        (
            '[{"image_id": 1, "category_id": [[[[[[1]]]]]], "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "dets.json: entry 0: 'category_id' must be an integer, got [[[[...]]]]",
        ),
    ],
)
def test_eval_hostile_dets_are_one_line_errors(tmp_path, text, message):
    _coco_gt(tmp_path / "gt.json")
    (tmp_path / "dets.json").write_text(text)
    result = _run("eval", "--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"))
    _one_line_error(result, f"{tmp_path}/{message}")


def test_eval_gt_with_a_huge_image_id_is_a_one_line_error(tmp_path):
    gt = _coco_gt(tmp_path / "gt.json")
    gt["images"][0]["id"] = 10**30
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text("[]")
    result = _run("eval", "--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"))
    _one_line_error(
        result, f"{tmp_path}/gt.json: images[0]: id 1000000000000000000000000000000 is out of the 64-bit range"
    )


def test_entry_point_prints_one_red_line_and_exits_2(tmp_path):
    root, path, line, message = _fmt_case(tmp_path, "coco-deep")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ghostq",
            "data",
            "convert",
            "-f",
            "coco",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert (proc.stderr + proc.stdout).strip() == f"error: {path}: {message}"


# ---------------------------------------------------------------------------------------------- item 21
def test_check_of_a_100000_line_label_file_is_near_linear_and_capped(tmp_path):
    """59,995 boxes in their own grid cells, 5 near duplicates (IoU > 0.98), 40,000 copies of the first box."""
    rng = np.random.default_rng(0)
    cells = rng.permutation(250 * 250)[:59_995]
    x = (cells % 250) * 32 + rng.uniform(0, 5, len(cells))
    y = (cells // 250) * 32 + rng.uniform(0, 5, len(cells))
    w, h = rng.uniform(10, 25, len(cells)), rng.uniform(10, 25, len(cells))
    lines = [
        f"{a:.2f} {b:.2f} {a + c:.2f} {b:.2f} {a + c:.2f} {b + d:.2f} {a:.2f} {b + d:.2f} plane 0"
        for a, b, c, d in zip(x, y, w, h, strict=True)
    ]
    near = [
        f"{x[k] + 0.2:.2f} {y[k]:.2f} {x[k] + w[k] + 0.2:.2f} {y[k]:.2f} {x[k] + w[k] + 0.2:.2f} "
        f"{y[k] + h[k]:.2f} {x[k] + 0.2:.2f} {y[k] + h[k]:.2f} plane 0"
        for k in range(1, 6)
    ]
    lines += near + [lines[0]] * 40_000
    assert len(lines) == 100_000
    root = tmp_path / "ds"
    (root / "labelTxt").mkdir(parents=True)
    (root / "labelTxt/a.txt").write_text("imagesource:x\ngsd:1\n" + "\n".join(lines) + "\n")
    (root / "images").mkdir()
    Image.new("1", (8000, 8000)).save(root / "images/a.png")
    problems = check_dataset("dota", root, decode_images=False)
    assert summarize(problems) == {"errors": 0, "warnings": 40_005}
    listed = [p for p in problems if p.count == 1]
    assert len(listed) == MAX_PER_FILE
    assert listed[0].line == 59_998 and listed[0].message.startswith("duplicate plane box: IoU 0.")
    assert listed[0].message.endswith("with the one on line 4")
    assert listed[5].line == 60_003 and listed[5].message == "duplicate plane box: identical to the one on line 3"
    (summary,) = [p for p in problems if p.count > 1]
    assert (summary.count, summary.line) == (40_005 - MAX_PER_FILE, None)
    assert summary.message == f"39,905 more warnings in this file not listed (the first {MAX_PER_FILE} are)"


# ---------------------------------------------------------------------------------------------- item 22
def test_vedai_infrared_of_another_size_is_reported_by_check_and_refused_by_load(tmp_path):
    (tmp_path / "Annotations512").mkdir()
    (tmp_path / "Annotations512/00000001.txt").write_text(VEDAI_LINE + "\n")
    _image(tmp_path / "Vehicules512/00000001_co.png", (512, 512))
    _image(tmp_path / "Vehicules512/00000001_ir.png", (256, 200))
    ir = tmp_path / "Vehicules512/00000001_ir.png"
    message = "infrared image is 256x200, its RGB image 00000001_co.png is 512x512; they must be the same size"
    problems = check_dataset("vedai", tmp_path)
    assert [(p.severity, p.path, p.message) for p in problems] == [("error", str(ir), message)]
    result = _run("data", "check", "-f", "vedai", "--root", str(tmp_path))
    assert result.exit_code == 1 and "1 errors, 0 warnings" in result.output
    with pytest.raises(DataFormatError) as err:
        load_dataset("vedai", tmp_path)
    assert str(err.value) == f"{ir}: {message}"


# ---------------------------------------------------------------------------------------------- item 23
@pytest.mark.parametrize("fmt", ["dota", "nwpu", "vedai"])
def test_annotations_only_is_refused_where_files_state_no_size(tmp_path, fmt):
    for cmd in ("convert", "check"):
        args = ["data", cmd, "-f", fmt, "--root", str(tmp_path), "--annotations-only"]
        result = _run(*args, *(["--out", str(tmp_path / "o.json")] if cmd == "convert" else []))
        _one_line_error(
            result,
            f"--annotations-only works for coco, dior, dior-r only (their annotations state each image's size); "
            f"{fmt} files do not, so its images are needed",
        )
    assert not (tmp_path / "o.json").exists()


def test_all_images_missing_suggests_what_works(tmp_path):
    root = _dota(tmp_path / "dota", [DOTA_OK], image=False)
    for extra in ([], ["--skip-missing"]):
        result = _run("data", "convert", "-f", "dota", "--root", str(root), "--out", str(tmp_path / "o.json"), *extra)
        message = _one_line_error(
            result,
            f"{root}: empty dataset: all 1 images named by the annotations are missing ({root}/images/a.png); "
            "check the dataset folder (expected labelTxt/*.txt and images/<stem>.png|.jpg|.tif|.bmp)",
        )
        assert "skip_missing" not in message and "--skip-missing" not in message
    dior = tmp_path / "dior"
    (dior / "Annotations/Horizontal Bounding Boxes").mkdir(parents=True)
    (dior / "Annotations/Horizontal Bounding Boxes/00001.xml").write_text(_dior_xml())
    result = _run("data", "convert", "-f", "dior", "--root", str(dior), "--out", str(tmp_path / "o.json"))
    assert str(result.exception).endswith(
        "; or pass --annotations-only to convert / check the annotations without the images"
    )
    ok = _run(
        "data", "convert", "-f", "dior", "--root", str(dior), "--out", str(tmp_path / "o.json"), "--annotations-only"
    )
    assert ok.exit_code == 0, ok.output


# ---------------------------------------------------------------------------------------------- item 17
def test_outputs_are_checked_writable_before_any_work(tmp_path, unwritable_dir):
    root = _dota(tmp_path / "ds", [DOTA_OK])
    coco = tmp_path / "in.json"
    _coco_gt(coco)
    before = coco.read_text()
    reason = "Not a directory"
    cases = [
        (
            ["data", "convert", "-f", "dota", "--root", str(root), "--out", str(unwritable_dir / "a.json")],
            f"{unwritable_dir}: folder of the COCO json (--out) is not writable ({reason}); choose another location",
        ),
        (
            [
                "data",
                "convert",
                "-f",
                "dota",
                "--root",
                str(root),
                "--out",
                str(tmp_path / "ok.json"),
                "--json",
                str(unwritable_dir / "s.json"),
            ],
            f"{unwritable_dir}: folder of the summary JSON (--json) is not writable ({reason}); "
            "choose another location",
        ),
        (
            ["data", "check", "-f", "dota", "--root", str(root), "--json", str(unwritable_dir / "p.json")],
            f"{unwritable_dir}: folder of the problem report (--json) is not writable ({reason}); "
            "choose another location",
        ),
        (
            [
                "data",
                "split",
                "--format",
                "dota",
                "--root",
                str(root),
                "--out",
                str(unwritable_dir),
                "--tile",
                "32",
                "--overlap",
                "8",
            ],
            f"{unwritable_dir}: output folder (--out) is not writable ({reason}); choose another location",
        ),
        (
            [
                "data",
                "noise",
                "--ann",
                str(coco),
                "--out",
                str(unwritable_dir / "n.json"),
                "--kind",
                "drop",
                "--rate",
                "0.5",
            ],
            f"{unwritable_dir}: folder of the output file (--out) is not writable ({reason}); choose another location",
        ),
        (
            ["data", "synth", "--out", str(unwritable_dir), "--images", "2", "--size", "64"],
            f"{unwritable_dir}: output folder (--out) is not writable ({reason}); choose another location",
        ),
    ]
    for args, expected in cases:
        _one_line_error(_run(*args), expected)
    assert not (tmp_path / "ok.json").exists()  # convert stopped before writing its main output
    assert coco.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "ds",
        "in.json",
        "not_a_folder",
    ]
