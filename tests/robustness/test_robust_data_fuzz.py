"""Fuzz every reader of a user file: each yields a result or a one-line GhostqError, never another exception.

Readers: DOTA, NWPU, VEDAI text; DIOR XML; COCO json (file -> records); detections json (`ghostq eval`);
the noise tool's COCO input (read, noised, written back). Inputs mix random text / bytes with hostile values
(over-long integers, 1e39, NaN / Infinity, deep nesting). Examples per test: GHOSTQ_FUZZ_EXAMPLES (default 200,
about 10 s; 1,000 per reader take about 55 s on 2 shared cores).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ghostq.core.errors import GhostqError
from ghostq.detect.data.formats import load_dataset
from ghostq.detect.data.formats.dior import parse_dior_xml
from ghostq.detect.data.formats.dota import parse_dota_text
from ghostq.detect.data.formats.nwpu import parse_nwpu_text
from ghostq.detect.data.formats.vedai import parse_vedai_text
from ghostq.detect.data.noise import add_label_noise, load_coco
from ghostq.detect.evaluate import evaluate

EXAMPLES = int(os.environ.get("GHOSTQ_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = Path("/data/fuzz/ann.txt")
WORK = Path(tempfile.mkdtemp(prefix="ghostq-fuzz-"))  # hypothesis reruns a test body: no function-scoped tmp_path

HOSTILE = st.sampled_from(
    ["9" * 5000, "-" + "1" * 4400, "1e39", "-3.5e38", "1e400", "nan", "Infinity", "0x10", "١", "", " ", "1" * 19]
)
NUMBER = st.one_of(st.integers(-(10**6), 10**6).map(str), st.floats(-1e6, 1e6).map(repr), HOSTILE)


def _one_line(err: GhostqError) -> None:
    assert "\n" not in str(err) and len(str(err)) < 2000


@st.composite
def field_line(draw: st.DrawFn, names: list[str], n_fields: int) -> str:
    """A line of n_fields whitespace-separated tokens, mostly numbers, with class names and hostile values."""
    fields = [draw(st.one_of(NUMBER, st.sampled_from(names))) for _ in range(n_fields)]
    return draw(st.sampled_from([" ", "\t", "  "])).join(fields)


def _text(line: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(line, st.text(max_size=40)), max_size=5).map("\n".join)


@FUZZ
@given(_text(field_line(["plane", "ship", "0", "1", "2"], 10) | field_line(["plane", "1"], 9)))
def test_dota_reader(text):
    try:
        parse_dota_text(text, PATH)
    except GhostqError as err:
        _one_line(err)


@FUZZ
@given(_text(st.builds(lambda a, b, c, d, e: f"({a},{b}),({c},{d}),{e}", NUMBER, NUMBER, NUMBER, NUMBER, NUMBER)))
def test_nwpu_reader(text):
    try:
        parse_nwpu_text(text, PATH)
    except GhostqError as err:
        _one_line(err)


@FUZZ
@given(_text(field_line(["1", "31", "0", "1", "5"], 14)))
def test_vedai_reader(text):
    try:
        parse_vedai_text(text, PATH)
    except GhostqError as err:
        _one_line(err)


@st.composite
def dior_doc(draw: st.DrawFn) -> bytes:
    value = draw(NUMBER)
    tag = draw(st.sampled_from(["width", "height", "xmin", "ymax", "difficult", "x_left_top", "name"]))
    body = {t: "10" for t in ("width", "height", "xmin", "ymin", "xmax", "ymax", "difficult")}
    body[tag] = value.replace("<", "").replace("&", "")
    corners = "".join(
        f"<{a}_{c}>5</{a}_{c}>" for c in ("left_top", "right_top", "right_bottom", "left_bottom") for a in "xy"
    )
    if tag == "x_left_top":
        corners = corners.replace("<x_left_top>5", f"<x_left_top>{body[tag]}", 1)
    name = body[tag] if tag == "name" else "airplane"
    doc = (
        f"<annotation><filename>{draw(st.text(max_size=8)).replace('<', '').replace('&', '')}</filename>"
        f"<size><width>{body['width']}</width><height>{body['height']}</height></size>"
        f"<object><name>{name}</name><difficult>{body['difficult']}</difficult><bndbox><xmin>{body['xmin']}</xmin>"
        f"<ymin>{body['ymin']}</ymin><xmax>{body['xmax']}</xmax><ymax>{body['ymax']}</ymax></bndbox>"
        f"<robndbox>{corners}</robndbox></object>" + "<a>" * draw(st.integers(0, 3000)) + "</annotation>"
    )
    return doc.encode()


@FUZZ
@given(st.one_of(dior_doc(), st.binary(max_size=300)), st.booleans())
def test_dior_reader(data, oriented):
    try:
        parse_dior_xml(data, PATH, oriented)
    except GhostqError as err:
        _one_line(err)


# ---------------------------------------------------------------------------------------------- JSON readers
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(10**300, 10**400),
    st.floats(),
    st.text(max_size=5),
)
KEYS = [
    "images",
    "annotations",
    "categories",
    "id",
    "bbox",
    "name",
    "image_id",
    "category_id",
    "file_name",
    "width",
    "height",
    "score",
    "iscrowd",
    "segmentation",
    "ir_file_name",
]
JSONISH = st.recursive(
    LEAF,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=6),
    max_leaves=25,
)


@st.composite
def coco_like(draw: st.DrawFn) -> dict:
    """A mostly valid COCO dict with one part replaced by fuzz."""
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "plane"}, {"id": 2, "name": "ship"}],
    }
    section = draw(st.sampled_from(["images", "annotations", "categories"]))
    entry = dict(coco[section][0])
    entry[draw(st.sampled_from(sorted(entry)))] = draw(JSONISH)
    coco[section].append(entry)
    return coco


def _json_text(obj: object) -> str:
    return json.dumps(obj, allow_nan=True)


JSON_TEXT = st.one_of(
    coco_like().map(_json_text),
    JSONISH.map(_json_text),
    st.integers(0, 5000).map(lambda n: "[" * n + "]" * n),
    st.builds(lambda s: '{"images": [{"id": ' + s + "}]}", HOSTILE),
    st.text(max_size=60),
)


def _write(name: str, text: str) -> Path:
    path = WORK / name
    path.write_text(text)
    return path


@FUZZ
@given(JSON_TEXT)
def test_coco_reader(text):
    path = _write("coco.json", text)
    try:
        load_dataset("coco", path, require_images=False)
    except GhostqError as err:
        _one_line(err)


GT = {
    "images": [{"id": 1, "width": 64, "height": 48}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]}],
    "categories": [{"id": 1, "name": "plane"}],
}
DET = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": 0.5}


@st.composite
def dets_like(draw: st.DrawFn) -> list:
    det = dict(DET)
    det[draw(st.sampled_from(sorted(det)))] = draw(JSONISH)
    return [DET, det]


@FUZZ
@given(st.one_of(dets_like().map(_json_text), JSON_TEXT), st.sampled_from(["coco", "voc07"]))
def test_dets_reader(text, metric):
    path = _write("dets.json", text)
    try:
        result = evaluate(GT, path, metric=metric)
    except GhostqError as err:
        _one_line(err)
        return
    assert 0.0 <= result["mAP50"] <= 1.0


@FUZZ
@given(JSON_TEXT, st.sampled_from(["symmetric", "pairflip", "drop", "jitter", "asymmetric"]))
def test_noise_reader(text, kind):
    path = _write("noise.json", text)
    try:
        noisy, _ = add_label_noise(load_coco(path), kind, rate=0.7, seed=0)
    except GhostqError as err:
        _one_line(err)
        return
    json.dumps(noisy, allow_nan=False)  # what `ghostq data noise` writes back must be valid JSON


@pytest.fixture(scope="module", autouse=True)
def _clean_work():
    yield
    for p in WORK.iterdir():
        p.unlink()
    WORK.rmdir()
