"""Every shipped config validates, and the dataset configs' class lists are their datasets' classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghostq.core.config import load_config
from ghostq.detect.data.classes import DATASET_CLASSES, DOTA_V1

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.run.name == path.stem


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dota", DOTA_V1),
        ("dior", DATASET_CLASSES["dior"]),
        ("nwpu", DATASET_CLASSES["nwpu"]),
        ("vedai", DATASET_CLASSES["vedai"]),
    ],
)
def test_dataset_config_classes(name: str, expected: tuple[str, ...]) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert tuple(cfg.data.classes) == expected
