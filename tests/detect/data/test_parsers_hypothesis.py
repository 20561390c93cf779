"""Property tests for every annotation parser.

Well-formed input parses to exactly the numbers written. Malformed input (wrong field counts, non-numbers,
NaN/inf, unknown classes, bad flags, random garbage) gives DataFormatError naming the file and the line (for
COCO json: the entry, `annotations[i]`), never another exception and never a silently wrong box.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ghostq.core.errors import DataFormatError
from ghostq.detect.data.classes import DIOR, DOTA_V15, VEDAI, VEDAI_CODES
from ghostq.detect.data.formats import Issues
from ghostq.detect.data.formats.coco import parse_coco_dict
from ghostq.detect.data.formats.dior import parse_dior_xml
from ghostq.detect.data.formats.dota import parse_dota_text
from ghostq.detect.data.formats.nwpu import parse_nwpu_text
from ghostq.detect.data.formats.vedai import parse_vedai_text

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATH = Path("/data/set/ann 01.txt")

# ---------------------------------------------------------------------------------------------- strategies
finite = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False, allow_infinity=False)


@st.composite
def number_token(draw: st.DrawFn) -> str:
    """A number as files write them: integer, fixed decimals, repr, exponent, signed."""
    v = draw(finite)
    style = draw(st.sampled_from(["int", "fixed", "repr", "exp"]))
    if style == "int":
        return str(int(v))
    if style == "fixed":
        return f"{v:.{draw(st.integers(0, 6))}f}"
    return repr(v) if style == "repr" else f"{v:e}"


NOT_FINITE = st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "+Inf", "Infinity", "1e999", "-2e400"])
NOT_NUMBER = st.one_of(
    st.sampled_from(
        ["x", "1,5", "1..2", "--1", "0x1F", "1_000", "١٢", "１２", "1e", ".", "+", "1.2.3", "", "e5"]
    ),
    st.from_regex(r"[A-Za-z_#@!?][A-Za-z0-9_.#@!?-]{0,8}", fullmatch=True),
).filter(lambda t: not t.lower().startswith(("imagesource:", "gsd:")))
NOT_NUMBER_TOKEN = NOT_NUMBER.filter(bool)  # for whitespace-separated formats: a field is never empty
SEP = st.sampled_from([" ", "  ", "\t", " \t "])
PAD = st.sampled_from(["", " ", "  "])
NEWLINE = st.sampled_from(["\n", "\r\n"])


def _case(draw: st.DrawFn, name: str) -> str:
    return draw(st.sampled_from([name, name.upper(), name.lower(), name.capitalize()]))


def _assert_error_at(err: DataFormatError, path: Path, line: int | None) -> None:
    assert err.path == str(path) and err.line == line
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(err).startswith(where + ": ") and "\n" not in str(err)


def _file(lines: list[str], newline: str, final: bool) -> str:
    return newline.join(lines) + (newline if final else "")


# ---------------------------------------------------------------------------------------------- DOTA
@st.composite
def dota_line(draw: st.DrawFn) -> tuple[str, list[str], str, bool | None]:
    coords = draw(st.lists(number_token(), min_size=8, max_size=8))
    name = draw(st.sampled_from(DOTA_V15))
    difficult = draw(st.one_of(st.none(), st.booleans()))
    fields = coords + [_case(draw, name)] + ([] if difficult is None else [str(int(difficult))])
    text = draw(PAD) + draw(SEP).join(fields) + draw(PAD)
    return text, coords, name, difficult


@SETTINGS
@given(st.lists(dota_line(), min_size=1, max_size=6), st.booleans(), NEWLINE, st.booleans(), st.data())
def test_dota_well_formed_parses_exactly(lines, header, newline, final, data):
    texts = [t for t, *_ in lines]
    blank_at = data.draw(st.integers(0, len(texts)))
    texts.insert(blank_at, data.draw(PAD))
    prefix = ["imagesource:GoogleEarth", "gsd:0.146343590398"] if header else []
    objs = parse_dota_text(_file(prefix + texts, newline, final), PATH)
    assert len(objs) == len(lines)
    for k, (obj, (_, coords, name, difficult)) in enumerate(zip(objs, lines, strict=True)):
        poly = tuple(float(c) for c in coords)
        assert obj.polygon == poly
        assert obj.box == (min(poly[0::2]), min(poly[1::2]), max(poly[0::2]), max(poly[1::2]))
        assert obj.label == DOTA_V15.index(name) and obj.difficult == bool(difficult)
        assert obj.line == len(prefix) + k + 1 + (1 if k >= blank_at else 0)


@st.composite
def dota_bad_line(draw: st.DrawFn) -> str:
    coords = draw(st.lists(number_token(), min_size=8, max_size=8))
    fields = coords + [draw(st.sampled_from(DOTA_V15)), draw(st.sampled_from(["0", "1"]))]
    kind = draw(st.sampled_from(["count", "nonnumber", "nonfinite", "class", "difficult"]))
    if kind == "count":
        n = draw(st.integers(1, 20).filter(lambda n: n not in (9, 10)))
        fields = draw(st.lists(number_token(), min_size=n, max_size=n))
    elif kind in ("nonnumber", "nonfinite"):
        fields[draw(st.integers(0, 7))] = draw(NOT_NUMBER_TOKEN if kind == "nonnumber" else NOT_FINITE)
    elif kind == "class":
        fields[8] = draw(
            st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True).filter(
                lambda s: s.lower() not in {c.lower() for c in DOTA_V15}
            )
        )
    else:
        fields[9] = draw(st.sampled_from(["2", "-1", "yes", "0.0", "true", "01x"]))
    return draw(SEP).join(fields)


@SETTINGS
@given(st.lists(dota_line(), min_size=0, max_size=4), dota_bad_line(), st.data(), NEWLINE)
def test_dota_malformed_line_names_file_and_line(good, bad, data, newline):
    texts = [t for t, *_ in good]
    at = data.draw(st.integers(0, len(texts)))
    texts.insert(at, bad)
    with pytest.raises(DataFormatError) as err:
        parse_dota_text(_file(["imagesource:GF", "gsd:1"] + texts, newline, True), PATH)
    _assert_error_at(err.value, PATH, at + 3)


def _dota_fields(text: str) -> list[str]:
    return [f for f in re.split(r"[ \t]+", text.strip(" \t\r")) if f]


@SETTINGS
@given(st.text(max_size=120).filter(lambda t: "\n" not in t))
def test_dota_garbage_never_gives_a_wrong_box(text):
    try:
        objs = parse_dota_text(text, PATH)
    except DataFormatError as err:
        _assert_error_at(err, PATH, 1)
        return
    fields = _dota_fields(text)
    if not objs:
        assert not fields or fields[0].lower().startswith(("imagesource:", "gsd:"))
        return
    (obj,) = objs
    assert obj.polygon == tuple(float(f) for f in fields[:8])
    assert DOTA_V15[obj.label].lower() == fields[8].lower()


# ---------------------------------------------------------------------------------------------- NWPU
@st.composite
def nwpu_line(draw: st.DrawFn) -> tuple[str, list[str], int]:
    nums = draw(st.lists(number_token(), min_size=4, max_size=4))
    code = draw(st.integers(1, 10))
    p = [draw(PAD) for _ in range(10)]
    text = (
        f"({p[0]}{nums[0]}{p[1]},{p[2]}{nums[1]}{p[3]}),({p[4]}{nums[2]}{p[5]},{p[6]}{nums[3]}{p[7]}),"
        f"{p[8]}{code}{p[9]}"
    )
    return text, nums, code


@SETTINGS
@given(st.lists(nwpu_line(), min_size=1, max_size=6), NEWLINE, st.booleans(), st.integers(0, 3))
def test_nwpu_well_formed_parses_exactly(lines, newline, final, trailing_blanks):
    text = _file([t for t, *_ in lines] + [""] * trailing_blanks, newline, final)
    objs = parse_nwpu_text(text, PATH)
    assert [o.box for o in objs] == [tuple(float(n) for n in nums) for _, nums, _ in lines]
    assert [o.label for o in objs] == [code - 1 for *_, code in lines]
    assert [o.line for o in objs] == list(range(1, len(lines) + 1))


@st.composite
def nwpu_bad_line(draw: st.DrawFn) -> str:
    nums = draw(st.lists(number_token(), min_size=4, max_size=4))
    code = str(draw(st.integers(1, 10)))
    kind = draw(st.sampled_from(["structure", "nonnumber", "nonfinite", "class", "classtype"]))
    if kind in ("nonnumber", "nonfinite"):
        bad = draw(NOT_NUMBER if kind == "nonnumber" else NOT_FINITE)
        nums[draw(st.integers(0, 3))] = bad.replace(",", ";").replace("(", "").replace(")", "") or "x"
    elif kind == "class":
        code = str(draw(st.integers(-50, 200).filter(lambda c: not 1 <= c <= 10)))
    elif kind == "classtype":
        code = draw(st.sampled_from(["1.0", "a", "1 2", "", "10x"]))
    line = f"({nums[0]},{nums[1]}),({nums[2]},{nums[3]}),{code}"
    if kind == "structure":
        one = f"({nums[0]},{nums[1]}),({nums[2]},{nums[3]}),{code}"
        line = draw(
            st.sampled_from(
                [
                    f"({nums[0]},{nums[1]}),({nums[2]},{nums[3]})",
                    f"({nums[0]},{nums[1]},{nums[2]}),({nums[3]},1),{code}",
                    f"({nums[0]}),({nums[2]},{nums[3]}),{code}",
                    f"{nums[0]},{nums[1]},{nums[2]},{nums[3]},{code}",
                    f"({nums[0]},{nums[1]}),({nums[2]},{nums[3]}),{code},{code}",
                    f"(({nums[0]},{nums[1]}),({nums[2]},{nums[3]}),{code}",
                    f"{one} {one}",
                ]
            )
        )
    return line


@SETTINGS
@given(st.lists(nwpu_line(), max_size=4), nwpu_bad_line(), st.data())
def test_nwpu_malformed_line_names_file_and_line(good, bad, data):
    texts = [t for t, *_ in good]
    at = data.draw(st.integers(0, len(texts)))
    texts.insert(at, bad)
    with pytest.raises(DataFormatError) as err:
        parse_nwpu_text("\n".join(texts), PATH)
    _assert_error_at(err.value, PATH, at + 1)


@SETTINGS
@given(st.text(alphabet=st.sampled_from("0123456789(),.- \tx\u00a0e+"), max_size=60) | st.text(max_size=60))
def test_nwpu_garbage_never_gives_a_wrong_box(text):
    assume("\n" not in text)
    try:
        objs = parse_nwpu_text(text, PATH)
    except DataFormatError as err:
        _assert_error_at(err, PATH, 1)
        return
    parts = [p.strip(" \t\r") for p in re.split(r"[(),]", text)]
    parts = [p for p in parts if p]
    if not objs:
        assert not parts
        return
    (obj,) = objs
    assert len(parts) == 5
    assert obj.box == tuple(float(p) for p in parts[:4]) and obj.label == int(parts[4]) - 1


# ---------------------------------------------------------------------------------------------- VEDAI
_CODES = sorted(VEDAI_CODES)


@st.composite
def vedai_line(draw: st.DrawFn) -> tuple[str, list[str], int]:
    head = draw(st.lists(number_token(), min_size=3, max_size=3))
    code = draw(st.sampled_from(_CODES))
    flags = [draw(st.sampled_from(["0", "1"])) for _ in range(2)]
    corners = draw(st.lists(number_token(), min_size=8, max_size=8))
    return draw(SEP).join(head + [str(code)] + flags + corners) + draw(PAD), corners, code


@SETTINGS
@given(st.lists(vedai_line(), min_size=1, max_size=6), NEWLINE, st.booleans())
def test_vedai_well_formed_parses_exactly(lines, newline, final):
    objs = parse_vedai_text(_file([t for t, *_ in lines], newline, final), PATH)
    for obj, (_, c, code) in zip(objs, lines, strict=True):
        xs, ys = [float(v) for v in c[:4]], [float(v) for v in c[4:]]
        assert obj.polygon == (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], xs[3], ys[3])  # xs come first
        assert obj.box == (min(xs), min(ys), max(xs), max(ys))
        assert VEDAI[obj.label] == VEDAI_CODES[code]


@st.composite
def vedai_bad_line(draw: st.DrawFn) -> str:
    fields = draw(st.lists(number_token(), min_size=14, max_size=14))
    fields[3], fields[4], fields[5] = str(draw(st.sampled_from(_CODES))), "1", "0"
    kind = draw(st.sampled_from(["count", "nonnumber", "nonfinite", "code", "flag"]))
    if kind == "count":
        n = draw(st.integers(1, 30).filter(lambda n: n != 14))
        fields = draw(st.lists(number_token(), min_size=n, max_size=n))
    elif kind in ("nonnumber", "nonfinite"):
        i = draw(st.sampled_from([0, 1, 2, *range(6, 14)]))
        fields[i] = draw(NOT_NUMBER_TOKEN if kind == "nonnumber" else NOT_FINITE)
    elif kind == "code":
        fields[3] = draw(
            st.one_of(
                st.integers(-5, 100).filter(lambda c: c not in VEDAI_CODES).map(str),
                st.sampled_from(["1.0", "car", "1e0"]),
            )
        )
    else:
        fields[draw(st.sampled_from([4, 5]))] = draw(st.sampled_from(["2", "-1", "0.5", "yes"]))
    return " ".join(fields)


@SETTINGS
@given(st.lists(vedai_line(), max_size=4), vedai_bad_line(), st.data())
def test_vedai_malformed_line_names_file_and_line(good, bad, data):
    texts = [t for t, *_ in good]
    at = data.draw(st.integers(0, len(texts)))
    texts.insert(at, bad)
    with pytest.raises(DataFormatError) as err:
        parse_vedai_text("\n".join(texts) + "\n", PATH)
    _assert_error_at(err.value, PATH, at + 1)


@SETTINGS
@given(st.text(max_size=150).filter(lambda t: "\n" not in t))
def test_vedai_garbage_never_gives_a_wrong_box(text):
    try:
        objs = parse_vedai_text(text, PATH)
    except DataFormatError as err:
        _assert_error_at(err, PATH, 1)
        return
    fields = _dota_fields(text)
    if objs:
        xs, ys = [float(v) for v in fields[6:10]], [float(v) for v in fields[10:14]]
        assert objs[0].polygon == (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], xs[3], ys[3])
    else:
        assert not fields


# ---------------------------------------------------------------------------------------------- DIOR XML
@st.composite
def dior_object(draw: st.DrawFn, oriented: bool) -> tuple[list[str], list[str], str, bool]:
    name = draw(st.sampled_from(DIOR))
    difficult = draw(st.one_of(st.none(), st.booleans()))
    n = 8 if oriented else 4
    values = draw(st.lists(number_token(), min_size=n, max_size=n))
    lines = ["\t<object>", f"\t\t<name>{_case(draw, name)}</name>", "\t\t<pose>Unspecified</pose>"]
    if difficult is not None:
        lines.append(f"\t\t<difficult>{int(difficult)}</difficult>")
    if oriented:
        tags = [
            f"{a}_{c}" for c in ("left_top", "right_top", "right_bottom", "left_bottom") for a in ("x", "y")
        ]
        lines += (
            ["\t\t<robndbox>"]
            + [f"\t\t\t<{t}>{v}</{t}>" for t, v in zip(tags, values, strict=True)]
            + ["\t\t</robndbox>", "\t\t<angle>-9.6</angle>"]
        )
    else:
        tags = ["xmin", "ymin", "xmax", "ymax"]
        lines += (
            ["\t\t<bndbox>"]
            + [f"\t\t\t<{t}>{v}</{t}>" for t, v in zip(tags, values, strict=True)]
            + ["\t\t</bndbox>"]
        )
    return lines + ["\t</object>"], values, name, bool(difficult)


def _dior_doc(objects: list[list[str]]) -> list[str]:
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<annotation>",
        "\t<folder>/机场数据.zip/机场数据</folder>",
        "\t<filename>00025.jpg</filename>",
        "\t<size><width>800</width><height>800</height></size>",
    ]
    return head + [ln for obj in objects for ln in obj] + ["</annotation>"]


@SETTINGS
@given(st.booleans(), st.data(), NEWLINE)
def test_dior_well_formed_parses_exactly(oriented, data, newline):
    objects = data.draw(st.lists(dior_object(oriented), min_size=1, max_size=5))
    ann = parse_dior_xml(_file(_dior_doc([o[0] for o in objects]), newline, True).encode(), PATH, oriented)
    assert ann.size == (800, 800) and ann.filename == "00025.jpg"
    for obj, (_, values, name, difficult) in zip(ann.objects, objects, strict=True):
        v = tuple(float(x) for x in values)
        if oriented:
            assert obj.polygon == v and obj.box == (min(v[0::2]), min(v[1::2]), max(v[0::2]), max(v[1::2]))
        else:
            assert obj.box == v and obj.polygon is None
        assert obj.label == DIOR.index(name) and obj.difficult == difficult


@SETTINGS
@given(st.booleans(), st.data())
def test_dior_malformed_field_names_its_line(oriented, data):
    objects = data.draw(st.lists(dior_object(oriented), min_size=1, max_size=3))
    k = data.draw(st.integers(0, len(objects) - 1))
    lines = objects[k][0]
    coord_rows = [i for i, ln in enumerate(lines) if ln.startswith("\t\t\t<")]
    kind = data.draw(st.sampled_from(["nonnumber", "nonfinite", "class", "missing", "difficult"]))
    if kind in ("nonnumber", "nonfinite"):
        row = data.draw(st.sampled_from(coord_rows))
        tag = re.match(r"\t\t\t<(\w+)>", lines[row]).group(1)
        bad = data.draw(NOT_NUMBER if kind == "nonnumber" else NOT_FINITE).replace("<", "").replace("&", "")
        lines[row] = f"\t\t\t<{tag}>{bad}</{tag}>"
    elif kind == "class":
        row = 1
        lines[row] = (
            "\t\t<name>"
            + data.draw(
                st.from_regex(r"[A-Za-z-]{1,12}", fullmatch=True).filter(
                    lambda s: s.lower() not in {c.lower() for c in DIOR}
                )
            )
            + "</name>"
        )
    elif kind == "missing":
        del lines[data.draw(st.sampled_from(coord_rows))]
        row = coord_rows[0] - 1  # the <bndbox>/<robndbox> line
    else:
        lines.insert(2, "\t\t<difficult>" + data.draw(st.sampled_from(["2", "x", "-1", ""])) + "</difficult>")
        row = 2
    doc = _dior_doc([o[0] for o in objects])
    expected_line = 5 + sum(len(o[0]) for o in objects[:k]) + row + 1
    with pytest.raises(DataFormatError) as err:
        parse_dior_xml("\n".join(doc).encode(), PATH, oriented)
    _assert_error_at(err.value, PATH, expected_line)


@SETTINGS
@given(
    st.binary(max_size=200) | st.text(max_size=200).map(lambda t: f"<annotation>{t}</annotation>".encode()),
    st.booleans(),
)
def test_dior_garbage_gives_format_errors_only(data, oriented):
    try:
        ann = parse_dior_xml(data, PATH, oriented)
    except DataFormatError as err:
        assert err.path == str(PATH) and str(err).startswith(str(PATH))
        return
    assert ann.objects == []  # garbage never invents an object


# ---------------------------------------------------------------------------------------------- COCO
CATS = [{"id": 3, "name": "car"}, {"id": 1, "name": "ship"}, {"id": 90, "name": "plane"}]
IMAGES = [
    {"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
    {"id": 11, "file_name": "b.jpg", "width": 50, "height": 50},
]
JSON_NUMBER = st.one_of(finite, st.integers(-(10**6), 10**6))


@st.composite
def coco_annotation(draw: st.DrawFn) -> dict:
    ann = {
        "id": draw(st.integers(1, 10**9)),
        "image_id": draw(st.sampled_from([10, 11])),
        "category_id": draw(st.sampled_from([3, 1, 90])),
        "bbox": draw(st.lists(JSON_NUMBER, min_size=4, max_size=4)),
    }
    for key in ("iscrowd", "ignore", "difficult"):
        if draw(st.booleans()):
            ann[key] = draw(st.sampled_from([0, 1, True, False]))
    return ann


@SETTINGS
@given(st.lists(coco_annotation(), max_size=8))
def test_coco_well_formed_parses_exactly(anns):
    data = json.loads(json.dumps({"images": IMAGES, "annotations": anns, "categories": CATS}))
    coco = parse_coco_dict(data, PATH)
    assert coco.classes == ("car", "ship", "plane")
    got = [o for img in coco.images for o in img.objects]
    want = sorted(anns, key=lambda a: a["image_id"])  # grouped per image, file order kept within an image
    assert len(got) == len(anns)
    for obj, ann in zip(got, want, strict=True):
        x, y, w, h = (float(v) for v in ann["bbox"])
        assert obj.box == (x, y, x + w, y + h)
        assert obj.label == [3, 1, 90].index(ann["category_id"])
        assert obj.difficult == any(bool(ann.get(k)) for k in ("iscrowd", "ignore", "difficult"))


BAD_VALUE = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)


@SETTINGS
@given(st.lists(coco_annotation(), max_size=4), coco_annotation(), st.data())
def test_coco_malformed_annotation_names_the_entry(good, bad, data):
    kind = data.draw(st.sampled_from(["bbox_len", "bbox_value", "category", "image", "flag", "not_dict"]))
    if kind == "bbox_len":
        n = data.draw(st.integers(0, 8).filter(lambda n: n != 4))
        bad["bbox"] = data.draw(st.lists(JSON_NUMBER, min_size=n, max_size=n))
    elif kind == "bbox_value":
        bad["bbox"][data.draw(st.integers(0, 3))] = data.draw(BAD_VALUE)
    elif kind == "category":
        bad["category_id"] = data.draw(st.integers().filter(lambda c: c not in (1, 3, 90)) | BAD_VALUE)
    elif kind == "image":
        bad["image_id"] = data.draw(st.integers().filter(lambda c: c not in (10, 11)) | BAD_VALUE)
    elif kind == "flag":
        bad["iscrowd"] = data.draw(st.sampled_from([2, -1, "1", "yes", 0.5, [1]]))
    else:
        bad = data.draw(st.sampled_from([[], "x", 3, None]))
    at = data.draw(st.integers(0, len(good)))
    anns = good[:at] + [bad] + good[at:]
    with pytest.raises(DataFormatError) as err:
        parse_coco_dict({"images": IMAGES, "annotations": anns, "categories": CATS}, PATH)
    _assert_error_at(err.value, PATH, None)
    assert err.value.message.startswith(f"annotations[{at}]")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
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
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@SETTINGS
@given(JSONISH)
def test_coco_garbage_gives_format_errors_only(data):
    try:
        coco = parse_coco_dict(data, PATH)
    except DataFormatError as err:
        assert err.path == str(PATH)
        return
    for img in coco.images:
        for obj in img.objects:
            assert all(isinstance(v, float) and v == v for v in obj.box)


def test_collecting_issues_reports_every_bad_line():
    """The same parser, asked to collect, reports each bad line and keeps the good ones."""
    text = "1 1 2 1 2 2 1 2 plane 0\nx\n1 1 2 1 2 2 1 2 boat 0\n3 3 4 3 4 4 3 4 ship 1\n1 2 3\n"
    issues = Issues(collect=True)
    objs = parse_dota_text(text, PATH, issues)
    assert [o.line for o in objs] == [1, 4]
    assert [(p.line, p.severity) for p in issues.problems] == [(2, "error"), (3, "error"), (5, "error")]
    assert "unknown class 'boat'" in issues.problems[1].message
