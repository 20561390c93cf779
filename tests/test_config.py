"""Config: defaults validate, overrides apply, and every kind of mistake names the file and dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghostq.core.config import Config, config_hash
from ghostq.core.config_yaml import apply_overrides
from ghostq.core.errors import ConfigError
from ghostq.stages.config import load_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, "run:\n  name: exp1\n"),
        ["train.epochs=3", "model.strides=[4,8,16]", "run.root=/some/dir"],
    )
    assert cfg.run.name == "exp1"
    assert cfg.train.epochs == 3
    assert cfg.model.strides == [4, 8, 16]
    assert cfg.run_dir == Path("/some/dir/exp1")


def test_empty_mapping_gives_defaults_but_an_empty_file_is_an_error(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "{}\n")) == Config()
    with pytest.raises(ConfigError, match=r"cfg.yaml: the config file is empty"):
        load_config(_write(tmp_path, "# only a comment\n"))


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("data:\n  bogus: 1\n", [], "data.bogus: unknown key"),
        ("train:\n  epochs: many\n", [], "train.epochs: Input should be a valid integer"),
        ("{}", ["train.lr=-1"], "train.lr: Input should be greater than 0"),
        ("data:\n  img_size: 330\n", [], "data.img_size: must be a multiple of 32"),
        ("model:\n  strides: [16, 8]\n", [], "model.strides: strides must be consecutive powers of two"),
        ("data:\n  format: dota\n", [], "data.root is required"),
        ("model:\n  head: softmax\n", [], "does not fit model.head='softmax'"),
        ("{}", ["model.act=gelu"], "model.act: Input should be 'relu' or 'silu'"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, overrides: list[str], expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_several_errors_in_one_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "data:\n  bogus: 1\ntrain:\n  epochs: 0\n"))
    assert "data.bogus" in str(info.value) and "train.epochs" in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: invalid YAML"):
        load_config(_write(tmp_path, "run:\n  name: x\n  bad: : :\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"run": {"name": "x"}}, ["run.name.deep=1"])


def test_hash_tracks_content() -> None:
    a, b = Config(), Config()
    assert config_hash(a) == config_hash(b)
    b.train.epochs = 7
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, ["model"]) == config_hash(b, ["model"])
