"""Fixtures of tests/deploy: tiny ONNX models from onnx_models.py (written to tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx_models import make_blob_model, make_nms_model


@pytest.fixture
def blob_onnx(tmp_path: Path) -> Path:
    return make_blob_model(tmp_path / "blob.onnx", size=64)


@pytest.fixture
def nms_onnx(tmp_path: Path) -> Path:
    return make_nms_model(tmp_path / "nms.onnx", size=32)
