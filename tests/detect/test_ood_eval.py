"""predict_with_ood: the detections of the one inference path (predict_loader), each with its anchor's MSP and
energy; JSON round trip; COCO rows in record order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from ghostq.core.config import Config  # noqa: E402
from ghostq.core.records import ImageRecord  # noqa: E402
from ghostq.core.spec import DecodeSpec, spec_from_config  # noqa: E402
from ghostq.detect.inference import make_eval_loader, predict_loader  # noqa: E402
from ghostq.detect.models.from_spec import build_detector_from_spec  # noqa: E402
from ghostq.detect.ood_eval import ImageOodDetections, coco_dets, predict_with_ood  # noqa: E402


@pytest.mark.parametrize("head,loss", [("sigmoid", "bce"), ("softmax", "ce")])
def test_same_detections_as_predict_loader_with_ood(tmp_path: Path, head: str, loss: str) -> None:
    cfg = Config.model_validate({"data": {"img_size": 64}, "model": {"head": head},
                                 "loss": {"cls": loss, "logit_clip": {"bound": 2.0}}})
    spec = spec_from_config(cfg, ["car", "ship"])
    torch.manual_seed(0)
    net = build_detector_from_spec(spec).eval()
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith("head.cls_preds"):
                param.normal_(0.0, 0.6 if name.endswith("bias") else 0.3)
    rng = np.random.default_rng(0)
    records = []
    for k, (h, w) in enumerate([(80, 100), (70, 60)]):
        path = tmp_path / f"{k}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(path.name, path, w, h))
    decode = DecodeSpec(0.05, 0.6, 50, 1000)
    ours = predict_with_ood(net, spec, records, decode=decode)
    ref = predict_loader(net, make_eval_loader(records, 64, 3), spec, torch.device("cpu"), decode)
    rows = coco_dets(ours)
    assert len(rows) == len(ref) > 0
    for a, b in zip(sorted(rows, key=lambda r: -r["score"]), sorted(ref, key=lambda r: -r["score"]), strict=True):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert np.allclose(a["bbox"], b["bbox"], atol=1e-3)
    for d in ours:  # MSP in [0, 1]; energy <= 0 for a sigmoid head (minus a sum of softplus)
        assert d.msp.shape == d.scores.shape == d.energy.shape
        assert ((d.msp >= 0) & (d.msp <= 1)).all()
        if head == "sigmoid":
            assert (d.energy < 0).all()
    back = ImageOodDetections.from_json(ours[0].to_json())
    assert np.allclose(back.msp, ours[0].msp, atol=1e-6) and back.labels.tolist() == ours[0].labels.tolist()
