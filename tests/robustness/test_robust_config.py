"""Planted bad configs: each gives the exact one-line ConfigError (file, line or dotted key, what is allowed) before
any work starts; `ghostq` prints errors as one escaped line with exit code 2; a fuzzer never gets another exception."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from ghostq.cli import main
from ghostq.core.config import Config, validate_sections
from ghostq.core.config_yaml import parse_yaml
from ghostq.core.errors import ConfigError, printable_one_line
from ghostq.detect.losses import cls_loss_heads, list_box_losses
from ghostq.detect.models import list_backbones
from ghostq.stages.config import load_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
FUZZ_EXAMPLES = int(os.environ.get("GHOSTQ_FUZZ_EXAMPLES", "1000"))


def _error(tmp_path: Path, content: bytes, overrides: list[str] | None = None, name: str = "cfg.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(str(path))


# --- item 13: every float finite -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.lr=.inf"], ": train.lr: Input should be a finite number (got inf)"),
        (["loss.cls_weight=.nan"], ": loss.cls_weight: Input should be a finite number (got nan)"),
        (["train.augment.scale=[0.5, .inf]"], ": train.augment.scale.1: Input should be a finite number (got inf)"),
        (["compress.lr=-.inf"], ": compress.lr: Input should be a finite number (got -inf)"),
        (["compress.hq.threshold=.nan"], ": compress.hq.threshold: Input should be a finite number (got nan)"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, overrides: list[str], expected: str) -> None:
    assert _error(tmp_path, b"{}\n", overrides) == expected


def test_non_finite_refused_even_where_a_section_allows_it() -> None:
    class Lax(BaseModel):
        model_config = ConfigDict(extra="forbid")
        gain: float = 1.0
        taps: list[float] = [1.0]

    class Root(BaseModel):
        inner: Lax = Lax()

    with pytest.raises(ConfigError) as info:
        validate_sections(Root, {"inner": {"gain": float("inf"), "taps": [1.0, float("nan")]}}, "x.yaml")
    assert str(info.value) == (
        "x.yaml: inner.gain: Input should be a finite number; inner.taps.1: Input should be a finite number"
    )


def test_logit_clip_inf_norm_is_still_allowed(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("loss:\n  cls: bce\n  logit_clip: {p: .inf, bound: 2.0}\n")
    assert load_config(path).loss.logit_clip.p == "inf"  # .inf names the norm here, it is no number


# --- item 19: files that are not a YAML mapping ----------------------------------------------------------------

EMPTY = ": the config file is empty: write at least one section (e.g. `run: {name: demo}`)"
ALIAS_BOMB = b"".join(
    [b"a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n".encode() for i in range(1, 7)]
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"run:\n  name: caf\xe9\n", ":2: not UTF-8 text (byte 0xe9 at offset 16); save it as UTF-8"),
        (b"a: &x [*x]\n", ":1: invalid YAML: alias *x refers to its own anchor (a recursive structure)"),
        (
            b"run: &r\n  name: x\n  again: *r\n",
            ":3: invalid YAML: alias *r refers to its own anchor (a recursive structure)",
        ),
        (
            ALIAS_BOMB,
            ":1: invalid YAML: the document expands to 6053451 values nested 9 deep "
            "(limits: 100000 values, 64 levels); check the aliases",
        ),
        (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", ": invalid YAML: nested too deeply"),
        (b"", EMPTY),
        (b"# nothing but a comment\n", EMPTY),
        (b"- train\n- model\n", ": the config must be a mapping of sections, got list"),
        (b"just words\n", ": the config must be a mapping of sections, got str"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":3: a binary file (NUL bytes), not a YAML config"),
        (b"run:\n  name: a\x01b\n", ":2: invalid YAML: control character 0x1 is not allowed"),
        (
            b"run: {name: x}\n---\nrun: {name: y}\n",
            ":2: invalid YAML: expected a single document in the stream, but found another document",
        ),
        (b"run:\n  name: x\n  bad: : :\n", ":3: invalid YAML: mapping values are not allowed here"),
    ],
)
def test_unreadable_config_files(tmp_path: Path, content: bytes, expected: str) -> None:
    assert _error(tmp_path, content) == expected


def test_folder_and_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "cfg.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(folder)
    assert str(info.value) == f"{folder}: is a folder, not a config file"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_merge_keys_and_shared_aliases_still_load(tmp_path: Path) -> None:
    assert parse_yaml("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  x: 3\nc: [*a, *a]\n") == {
        "a": {"x": 1, "y": 2},
        "b": {"x": 3, "y": 2},
        "c": [{"x": 1, "y": 2}, {"x": 1, "y": 2}],
    }
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  augment:\n    scale: &s [0.8, 1.2]\n  epochs: 2\n")
    assert load_config(path).train.augment.scale == (0.8, 1.2)


# --- item 20: registry names, strict numbers, bench batches, duplicate keys and classes --------------------------


def test_registry_names_are_checked_at_load_and_listed(tmp_path: Path) -> None:
    assert _error(tmp_path, b"{}\n", ["model.backbone=csp_x"]) == (
        f": model.backbone: unknown backbone 'csp_x'; allowed: {', '.join(list_backbones())}"
    )
    assert _error(tmp_path, b"loss:\n  cls: focal\n  box: diou\n") == (
        f": loss.cls: unknown classification loss 'focal'; allowed: {', '.join(sorted(cls_loss_heads()))}; "
        f"loss.box: unknown box loss 'diou'; allowed: {', '.join(list_box_losses())}"
    )
    (tmp_path / "cfg.yaml").write_text("{}\n")
    for name in list_backbones():
        assert load_config(tmp_path / "cfg.yaml", [f"model.backbone={name}"]).model.backbone == name
    for name, heads in cls_loss_heads().items():
        cfg = load_config(tmp_path / "cfg.yaml", [f"loss.cls={name}", f"model.head={heads[0]}"])
        assert cfg.loss.cls == name


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["train.epochs=true"],
            ": train.epochs: a boolean is not allowed here (got True; YAML also reads yes/no/on/off as booleans)",
        ),
        (
            ["train.lr=false", "train.epochs=0"],
            ": train.lr: a boolean is not allowed here (got False; YAML also reads yes/no/on/off as booleans); "
            "train.epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            ["bench.batches=[1, yes]"],
            ": bench.batches: a boolean is not allowed here (got [1, True]; YAML also reads yes/no/on/off as booleans)",
        ),
        (
            ["compress.epochs=on"],
            ": compress.epochs: a boolean is not allowed here (got True; YAML also reads yes/no/on/off as booleans)",
        ),
        (
            ["bench.batches=[0,-1]"],
            ": bench.batches.0: Input should be greater than or equal to 1 (got 0); "
            "bench.batches.1: Input should be greater than or equal to 1 (got -1)",
        ),
        (
            ["data.classes=[car, plane, car]"],
            ": data.classes: duplicate class names (names must differ by more than case or spaces): 'car' and 'car'",
        ),
        (
            ["data.classes=[car, Car, ' plane', plane]"],
            ": data.classes: duplicate class names (names must differ by more than case or spaces): "
            "'car' and 'Car', ' plane' and 'plane'",
        ),
        (["data.classes=[car, ' ']"], ": data.classes: class names must not be empty, got ['car', ' ']"),
    ],
)
def test_strict_values(tmp_path: Path, overrides: list[str], expected: str) -> None:
    assert _error(tmp_path, b"{}\n", overrides) == expected


def test_booleans_still_fine_where_a_boolean_is_meant(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  ema: no\n  amp: off\n")
    cfg = load_config(path, ["export.fp16=false", "data.synthetic.ir=true"])
    assert (cfg.train.ema, cfg.train.amp, cfg.export.fp16, cfg.data.synthetic.ir) == (False, False, False, True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"train:\n  epochs: 3\nmodel:\n  act: relu\ntrain:\n  lr: 0.1\n",
            ":5: invalid YAML: duplicate key 'train' (first written on line 1)",
        ),
        (b"train:\n  epochs: 3\n  epochs: 4\n", ":3: invalid YAML: duplicate key 'epochs' (first written on line 2)"),
        (
            b"data:\n  synthetic: {images: 12, images: 24}\n",
            ":2: invalid YAML: duplicate key 'images' (first written on line 2)",
        ),
    ],
)
def test_duplicate_keys_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    assert _error(tmp_path, content) == expected


def test_duplicate_key_in_an_override_value(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("{}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.augment={flip: 0.1, flip: 0.2}"])
    assert str(info.value) == (
        "command line: override 'train.augment={flip: 0.1, flip: 0.2}': duplicate key 'flip' (first written on line 1)"
    )


# --- item 25 and the OSError net: what `ghostq` prints --------------------------------------------------------


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ghostq", *args])
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


TINY = [
    "data.synthetic.images=12",
    "data.img_size=96",
    "data.synthetic.size=96",
    "train.batch_size=4",
    "train.threads=1",
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model.backbone=csp_x"],
            f"model.backbone: unknown backbone 'csp_x'; allowed: {', '.join(list_backbones())}",
        ),
        (
            ["train.epochs=true"],
            "train.epochs: a boolean is not allowed here (got True; YAML also reads yes/no/on/off as booleans)",
        ),
        (["data.classes=[ship, Ship]"], "data.classes: duplicate class names (names must differ by more than case "
         "or spaces): 'ship' and 'Ship'"),
    ],
)
def test_train_refuses_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], overrides: list[str],
    expected: str,
) -> None:
    runs, data = tmp_path / "runs", tmp_path / "synth"
    code, err = _main(monkeypatch, capsys, "train", str(SMOKE), f"run.root={runs}", f"data.root={data}", *TINY,
                      *overrides)
    assert (code, err) == (2, f"error: {SMOKE}: {expected}\n")
    assert not runs.exists() and not data.exists()  # no synthetic set generated, no run folder


def test_control_characters_and_newlines_are_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "red\x1b[31mtwo\nlines\u202e.yaml"
    evil.write_text("- not a mapping\n")
    code, err = _main(monkeypatch, capsys, "train", str(evil))
    shown = str(tmp_path) + "/red\\x1b[31mtwo lines\\u202e.yaml"
    assert (code, err) == (2, f"error: {shown}: the config must be a mapping of sections, got list\n")
    assert printable_one_line("a\tb\r\n\x07c  \x7f") == "a b \\x07c \\x7f"


def test_an_escaping_os_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], unwritable_dir: Path
) -> None:
    target = unwritable_dir / "best.pt"

    def write_where_impossible(*_: Any) -> None:
        target.write_bytes(b"x")  # a real OSError: the parent "folder" is a regular file

    monkeypatch.setattr("ghostq.core.config.load_config", write_where_impossible)
    code, err = _main(monkeypatch, capsys, "train", str(SMOKE))
    assert (code, err) == (2, f"error: {target}: Not a directory\n")


# --- fuzz: a Config or a ConfigError, never another exception --------------------------------------------------


def _dotted_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        sub = field.annotation
        for cand in (sub, *getattr(sub, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                keys += _dotted_keys(cand, f"{prefix}{name}.")
    return keys


KEYS = _dotted_keys(Config)
TOKENS = [
    *KEYS[:40], *(k.rsplit(".", 1)[-1] for k in KEYS), ":", ": ", "\n", "\n  ", "\n    ", "- ", "[", "]", "{", "}",
    ",", "&a ", "*a", "&b ", "*b", "<<: ", "!!binary ", "!!python/object ", ".inf", "-.inf", ".nan", "true", "no",
    "null", "~", "0", "-1", "1e3", "2.5", "'", '"', "#", "---", "\x1b[31m", "\t", "\x00", "é", "csp_x", "[0, -1]",
]


def _config_or_config_error(load: Any) -> None:
    try:
        assert isinstance(load(), Config)
    except ConfigError as err:
        assert "\n" not in str(err)


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow]
)


@FUZZ
@given(content=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    _config_or_config_error(lambda: load_config(path))


@FUZZ
@given(parts=st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=40))
def test_fuzz_random_yaml_documents(tmp_path: Path, parts: list[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    _config_or_config_error(lambda: load_config(path))


@FUZZ
@given(
    overrides=st.lists(
        st.tuples(
            st.sampled_from(KEYS) | st.text(max_size=12),
            st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=8).map("".join),
        ).map(lambda kv: f"{kv[0]}={kv[1]}"),
        max_size=4,
    )
)
def test_fuzz_random_dotted_overrides(tmp_path: Path, overrides: list[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("run:\n  name: fuzz\n")
    _config_or_config_error(lambda: load_config(path, overrides))
