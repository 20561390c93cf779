"""Property test over the commands that read model files and images: whatever the file holds, `ghostq` exits 0 or
prints one `error:` line and exits 2, never a traceback.

Examples per property come from GHOSTQ_FUZZ_EXAMPLES (default 40, to keep CI short); the issue's 1,000 per
command is `GHOSTQ_FUZZ_EXAMPLES=1000 pytest tests/robustness/test_robust_fuzz_commands.py` (README: Reliability).
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ghostq.cli import main
from ghostq.core.config import load_config
from ghostq.detect.builders import build_model_from_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.threads=1"]
CLASSES = ["small-vehicle", "large-vehicle", "plane", "ship", "storage-tank"]
EXAMPLES = int(os.environ.get("GHOSTQ_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _onnx_models() -> Any:
    spec = importlib.util.spec_from_file_location("onnx_models", REPO / "tests" / "deploy" / "onnx_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str) -> tuple[int, str]:
    """`ghostq ARGS` in-process as the console script runs it: (exit code, stderr). Any other exception escapes."""
    old, sys.argv = sys.argv, ["ghostq", *args]
    err = io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as stop:
                code = int(stop.code or 0) if not isinstance(stop.code, str) else 1
    finally:
        sys.argv = old
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    """Success, or exit code 2 with exactly one `error:` line (progress lines may precede it), no traceback."""
    assert "Traceback" not in err, err[-2000:]
    if code == 0:
        return
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(errors) == 1, (code, err[-2000:])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def good_payload() -> dict[str, Any]:
    torch.manual_seed(0)
    cfg = load_config(SMOKE, TINY)
    model = build_model_from_config(cfg, len(CLASSES))
    return {"config": cfg.model_dump(mode="json"), "classes": list(CLASSES), "model": model.state_dict()}


@pytest.fixture(scope="module")
def good_onnx(root: Path) -> Path:
    return _onnx_models().make_blob_model(root / "good.onnx", size=64)


@pytest.fixture(scope="module")
def image(root: Path) -> Path:
    arr = np.full((40, 50, 3), 30, np.uint8)
    arr[5:25, 10:30] = 255
    Image.fromarray(arr).save(root / "img.png")
    return root / "img.png"


junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                 st.lists(st.integers(), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def _mutate_bytes(data: bytes, how: int, at: float, chunk: bytes) -> bytes:
    """Truncate, overwrite or insert at a relative position; or replace the file by junk."""
    k = int(at * len(data))
    return [data[:k], data[:k] + chunk + data[k + len(chunk):], data[:k] + chunk + data[k:], chunk][how]


byte_edits = st.tuples(st.integers(0, 3), st.floats(0, 1), st.binary(max_size=64))


@st.composite
def payloads(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """A checkpoint payload with one structural change: a key dropped, a value (or a tensor, or a config
    section / field) replaced by junk or a tensor of another shape."""
    p = dict(good)
    kind = draw(st.integers(0, 4))
    if kind == 0:
        p.pop(draw(st.sampled_from(sorted(p))))
    elif kind == 1:
        p[draw(st.sampled_from([*sorted(p), "bits", "spec", "epoch"]))] = draw(junk)
    elif kind == 2:
        state = dict(p["model"])
        name = draw(st.sampled_from(sorted(state)))
        state[name] = draw(st.one_of(junk, st.builds(lambda n: torch.zeros(n), st.integers(0, 3))))
        p["model"] = state
    elif kind == 3:
        config = {k: dict(v) if isinstance(v, dict) else v for k, v in p["config"].items()}
        section = draw(st.sampled_from(sorted(config)))
        if isinstance(config[section], dict) and config[section] and draw(st.booleans()):
            config[section][draw(st.sampled_from(sorted(config[section])))] = draw(junk)
        else:
            config[section] = draw(junk)
        p["config"] = config
    else:
        return draw(junk)
    return p


def _write_checkpoint(path: Path, payload: Any, edit: tuple[int, float, bytes] | None) -> None:
    torch.save(payload, path)
    if edit is not None:
        path.write_bytes(_mutate_bytes(path.read_bytes(), *edit))


@pytest.mark.parametrize("command", ["eval", "export", "compress"])
def test_checkpoint_files_never_give_a_traceback(command: str, root: Path, good_payload: dict[str, Any]) -> None:
    run_root = root / f"runs-{command}"
    ckpt = root / f"fuzz-{command}.pt"

    @FUZZ
    @given(payload=payloads(good_payload), edit=st.one_of(st.none(), byte_edits))
    def check(payload: Any, edit: tuple[int, float, bytes] | None) -> None:
        _write_checkpoint(ckpt, payload, edit)
        base = [str(SMOKE), f"run.root={run_root}", *TINY]
        args = {
            "eval": ["eval", *base, "--model", str(ckpt)],
            "export": ["export", *base, f"export.source={ckpt}", "export.int8=false", "export.fp16=false"],
            "compress": ["compress", *base, f"compress.source={ckpt}", "compress.epochs=1"],
        }[command]
        assert_clean(*run_cli(*args))

    torch.set_num_threads(1)
    check()


@st.composite
def onnx_bytes(draw: st.DrawFn, good: bytes) -> bytes:
    """The good model with a metadata value replaced, or its bytes edited."""
    if draw(st.booleans()):
        model = onnx.load_from_string(good)
        props = list(model.metadata_props)
        prop = props[draw(st.integers(0, len(props) - 1))]
        prop.value = draw(st.one_of(st.text(max_size=20), st.sampled_from(["0", "-1", "1e9", "[]", "{}", "nan"])))
        return model.SerializeToString()
    return _mutate_bytes(good, *draw(byte_edits))


@pytest.mark.parametrize("command", ["bench", "predict"])
def test_onnx_files_never_give_a_traceback(command: str, root: Path, good_onnx: Path, image: Path) -> None:
    model = root / f"fuzz-{command}.onnx"

    @FUZZ
    @given(data=onnx_bytes(good_onnx.read_bytes()))
    def check(data: bytes) -> None:
        model.write_bytes(data)
        args = {
            "bench": ["bench", "--model", str(model), "--warmup", "0", "--iters", "1", "--batch", "1",
                      "--threads", "1"],
            "predict": ["predict", str(image), "--model", str(model), "--out", str(root / "pred-out"),
                        "--threads", "1"],
        }[command]
        assert_clean(*run_cli(*args))

    check()


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A PNG / JPEG / TIFF of an odd mode or size, or such a file's bytes edited."""
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]))
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    png = ["PNG"] if mode not in ("I", "F", "CMYK") else []
    formats = ["TIFF", *png, *(["JPEG"] if mode in ("L", "RGB") else [])]
    fmt = draw(st.sampled_from(formats))
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format=fmt)
    data = buf.getvalue()
    return _mutate_bytes(data, *draw(byte_edits)) if draw(st.booleans()) else data


def test_image_files_never_give_a_traceback(root: Path, good_onnx: Path) -> None:
    folder = root / "images"
    folder.mkdir(exist_ok=True)
    path = folder / "x.png"

    @FUZZ
    @given(data=image_bytes())
    def check(data: bytes) -> None:
        path.write_bytes(data)
        assert_clean(*run_cli("predict", str(path), "--model", str(good_onnx), "--out", str(root / "img-out"),
                              "--threads", "1"))

    check()
