"""One training loop: QAT runs through the detector's Trainer, evaluates with the model's LogitClip, and no other
module of ghostq trains (no second `.backward(`)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from ghostq.compress.pipeline import load_quantized
from ghostq.core.compress_config import CompressConfig
from ghostq.core.config import load_config
from ghostq.core.spec import ModelSpec
from ghostq.stages.compress import compress
from ghostq.stages.train import train

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "ghostq"
TINY = ["data.synthetic.images=12", "data.img_size=96", "data.synthetic.size=96", "train.batch_size=4",
        "train.threads=1", "train.epochs=2", "loss.logit_clip.p=inf", "loss.logit_clip.bound=2.0"]


@pytest.fixture(scope="module")
def clipped(tmp_path_factory: pytest.TempPathFactory):
    """A tiny detector trained with LogitClip (p=inf): the config of its run."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={root}", "run.name=clip", *TINY])
    train(cfg, show_progress=False)
    return cfg


def test_trainer_checkpoint_carries_the_model_spec(clipped) -> None:
    payload = torch.load(clipped.run_dir / "fp" / "best.pt", weights_only=True)
    spec = ModelSpec.from_dict(payload["spec"])
    assert spec.classes == tuple(payload["classes"]) and spec.img_size == 96
    assert spec.logit_clip is not None and math.isinf(spec.logit_clip.p) and spec.logit_clip.bound == 2.0


def test_qat_best_map_equals_eval_of_saved_checkpoint(clipped) -> None:
    """The mAP the shared loop reports for its best state is `ghostq eval`'s on ghost/best.pt, LogitClip applied."""
    from dataclasses import replace

    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.inference import evaluate_detector, make_eval_loader

    cc = CompressConfig(method="qat", epochs=1, hq={"mode": "uniform"}, ptq={"batches": 1})
    metrics = compress(clipped, cc, force=True, max_steps=2, show_progress=False).metrics
    assert metrics["history"][0]["epoch"] == 1 and metrics["best_epoch"] == 1
    model, _ = load_quantized(clipped.run_dir / "ghost" / "best.pt")
    spec = ModelSpec.from_dict(torch.load(clipped.run_dir / "fp" / "best.pt", weights_only=True)["spec"])
    splits = prepare_data(clipped)
    loader = make_eval_loader(splits.val, 96, 3, batch_size=4)  # the loop's validation batch
    cpu = torch.device("cpu")
    m = evaluate_detector(model, loader, splits.val_coco(), spec, cpu)
    assert m["mAP50"] == pytest.approx(metrics["mAP50"], abs=1e-6)
    assert m["mAP50_95"] == pytest.approx(metrics["mAP50_95"], abs=1e-6)
    unclipped = evaluate_detector(model, loader, splits.val_coco(), replace(spec, logit_clip=None), cpu)
    assert unclipped["mAP50_95"] != pytest.approx(metrics["mAP50_95"], abs=1e-6)  # the clip changed the ranking


def test_qat_trains_with_the_detectors_open_set_data_and_class_counts(clipped) -> None:
    from ghostq.compress.qat import qat_schedule, train_quantized
    from ghostq.detect.builders import build_model_from_config
    from ghostq.detect.data.open_set_paste import OpenSetPasteDataset
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.distributed import DistInfo
    from ghostq.detect.trainer import Trainer

    data = clipped.model_dump(mode="json")
    data["loss"]["open_set"] = {"method": "open_sampling", "per_image": 1}
    cfg = type(clipped).model_validate(data)
    splits = prepare_data(cfg)
    model = build_model_from_config(cfg, len(splits.classes))
    cc = CompressConfig(method="qat", epochs=1, ema=False)
    trainer = Trainer(cfg, splits, DistInfo(), torch.device("cpu"), model=model,
                      schedule=qat_schedule(cfg, cc, 1), save=False)
    assert isinstance(trainer.train_ds, OpenSetPasteDataset)
    prior = trainer.loss_fn.assignment_hook.labeler.prior
    assert not torch.allclose(prior, torch.full_like(prior, 1 / len(prior)))  # Open-sampling's counts arrived
    result = train_quantized(cfg, cc, model, None, splits, DistInfo(), torch.device("cpu"), distill=False,
                             max_steps=1, show_progress=False)
    assert result.history[0]["epoch"] == 1 and math.isfinite(result.history[0]["loss"])


def _backward_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "backward"]


def test_no_training_loop_outside_the_trainer() -> None:
    """Only ghostq/detect/trainer.py runs `.backward(` or builds an optimizer; compress has no loop of its own."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "detect/trainer.py":
            assert _backward_calls(path), "the Trainer is the loop"
            continue
        if lines := _backward_calls(path):
            found[rel] = lines
    assert found == {}
    optimizers = [p.relative_to(SRC).as_posix() for p in (SRC / "compress").rglob("*.py")
                  if "torch.optim." in p.read_text(encoding="utf-8")]
    assert optimizers == []
