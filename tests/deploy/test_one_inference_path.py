"""One inference path: `ghostq predict` on best.pt, the torch runtime and model_fp32.onnx through ONNX Runtime give
the same detections (boxes and scores to 1e-5), for a LogitClip p=inf sigmoid-head model and a softmax-head one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from ghostq.core.config import Config  # noqa: E402
from ghostq.core.detections import DecodeSettings  # noqa: E402
from ghostq.core.runtime import load_runtime  # noqa: E402
from ghostq.core.spec import ModelSpec, spec_from_config  # noqa: E402
from ghostq.core.tiling import list_images  # noqa: E402
from ghostq.deploy.predict import predict_paths  # noqa: E402

SCORE, IOU = 0.05, 0.6


def _model_files(tmp_path: Path, head: str, loss: str) -> tuple[Path, Path, ModelSpec]:
    """A tiny detector with LogitClip saved as best.pt (with its spec) and exported as model_fp32.onnx."""
    from ghostq.detect.checkpoint import save_checkpoint
    from ghostq.detect.models.from_spec import build_detector_from_spec
    from ghostq.export.onnx_export import export_onnx

    cfg = Config.model_validate(
        {"data": {"img_size": 64}, "model": {"head": head}, "loss": {"cls": loss, "logit_clip": {"bound": 2.0}}}
    )
    spec = spec_from_config(cfg, ["car", "ship"])
    torch.manual_seed(0)
    net = build_detector_from_spec(spec).eval()
    with torch.no_grad():  # a "trained" classifier: scores spread over (0, 1), mostly inside the clip bound
        for name, param in net.named_parameters():
            if name.startswith("head.cls_preds"):
                param.normal_(0.0, 0.6 if name.endswith("bias") else 0.3)
    payload = {"model": net.state_dict(), "config": cfg.model_dump(mode="json"), "classes": list(spec.classes),
               "spec": spec.to_dict()}  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "fp" / "best.pt", payload)
    onnx_path = tmp_path / "export" / "model_fp32.onnx"
    onnx_path.parent.mkdir(parents=True)
    export_onnx(net, onnx_path, spec=spec)
    return ckpt, onnx_path, spec


def _images(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in {"a.png": (80, 100), "b.png": (130, 90)}.items():
        image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        image[10:40, 20:50] = 250
        Image.fromarray(image).save(folder / name)
    return list_images([folder])


def _rows(out: Path) -> list[tuple[str, int, list[float], float]]:
    rows = json.loads((out / "detections.json").read_text())
    return [(r["file_name"], r["category_id"], r["bbox"], r["score"]) for r in rows]


def _same(a: list, b: list) -> None:
    """Equal detections; rows in a canonical order (equal scores may come in either order)."""
    assert len(a) == len(b) and len(a) > 0
    a, b = (sorted(rows, key=lambda r: (r[0], r[1], [round(v, 2) for v in r[2]])) for rows in (a, b))
    assert [(r[0], r[1]) for r in a] == [(r[0], r[1]) for r in b]
    np.testing.assert_allclose([r[2] for r in a], [r[2] for r in b], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([r[3] for r in a], [r[3] for r in b], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("head", "loss", "p"), [("sigmoid", "bce", float("inf")), ("softmax", "ce", 2.0)])
def test_predict_on_pt_torch_runtime_and_onnx_agree(tmp_path: Path, head: str, loss: str, p: float) -> None:
    from typer.testing import CliRunner

    from ghostq.cli.app import app

    torch.set_num_threads(1)
    ckpt, onnx_path, spec = _model_files(tmp_path, head, loss)
    assert spec.head == head and spec.logit_clip is not None and spec.logit_clip.p == p
    paths = _images(tmp_path / "images")
    cli_out = tmp_path / "pred_cli"
    result = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "images"), "--model", str(ckpt), "--out", str(cli_out),
         "--score", str(SCORE), "--iou", str(IOU), "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    decode = DecodeSettings(score_threshold=SCORE, iou_threshold=IOU)
    outs = {}
    for name, model in (("torch", ckpt), ("ort-cpu", onnx_path)):
        with load_runtime(model, threads=1, decode=decode) as rt:
            assert rt.backend == name and rt.info.spec == spec  # each rebuilds the same head from the spec
            outs[name] = predict_paths(rt, paths, tmp_path / f"pred_{name}")
    cli_rows = _rows(cli_out)
    _same(cli_rows, _rows(tmp_path / "pred_torch"))
    _same(cli_rows, _rows(tmp_path / "pred_ort-cpu"))
