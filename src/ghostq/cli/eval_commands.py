"""`ghostq eval`: score detections against a ground truth (COCO or Pascal VOC metrics).

Two modes: a detections file (`--gt` + `--dets`), or a checkpoint on the config's val split
(`CONFIG --model PATH`), whose detections are produced in-process and then take the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ghostq.cli.app import app, console
from ghostq.core.atomic import atomic_write_json
from ghostq.core.errors import GhostqError
from ghostq.core.writable import require_writable_file


@app.command("eval")
def eval_command(
    config: Path | None = typer.Argument(None, help="experiment YAML whose val split scores --model"),
    overrides: list[str] | None = typer.Argument(None, help="dotted config overrides, e.g. data.root=/data"),
    model: Path | None = typer.Option(
        None, "--model", help="checkpoint to evaluate (runs/<name>/fp/best.pt)"
    ),
    gt: Path | None = typer.Option(
        None, "--gt", help="Ground truth as COCO json (`ghostq data convert` writes it)."
    ),
    dets: Path | None = typer.Option(
        None, "--dets", help="Detections as a COCO results json: [{image_id, category_id, bbox, score}, ...]."
    ),
    metric: str = typer.Option("coco", "--metric", help="coco (mAP50, mAP50:95), voc07 or voc12 (VOC AP50)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Evaluate detections against a ground truth: per-class AP and the mean."""
    from ghostq.detect.evaluate import METRICS, evaluate

    metric = metric.lower()
    if metric not in METRICS:  # checked here, before any file is read
        raise GhostqError(f"unknown --metric {metric!r}: choose one of {', '.join(METRICS)}")
    if json_out is not None:
        require_writable_file(json_out, "--json file")
    if config is not None or model is not None:
        if config is None or model is None or gt is not None or dets is not None:
            raise GhostqError("evaluate a model with `ghostq eval CONFIG --model PATH` (no --gt / --dets)")
        result = _evaluate_model(config, overrides or [], model, metric)
        title = f"{metric}: {model} on the val split of {config.name}"
    elif gt is None or dets is None:
        raise GhostqError("ghostq eval needs --gt GT.json and --dets DETS.json, or CONFIG --model PATH")
    else:
        result = evaluate(gt, dets, metric=metric)
        title = f"{metric}: {dets.name} vs {gt.name}"
    _report(result, title=title)
    if json_out is not None:
        atomic_write_json(json_out, _json_result(result))
        console.print(f"wrote {json_out}", highlight=False)


def _evaluate_model(config: Path, overrides: list[str], model: Path, metric: str) -> dict[str, Any]:
    """Detections of the checkpoint on the config's val split, scored with `metric`."""
    import torch

    from ghostq.core.config import Config
    from ghostq.detect.checkpoint import load_detector
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.evaluate import evaluate
    from ghostq.detect.inference import make_eval_loader, predict_loader
    from ghostq.detect.losses.robust import logit_clip_from_config
    from ghostq.stages.config import load_config

    cfg = load_config(config, overrides)
    net, payload = load_detector(model)
    splits = prepare_data(cfg)
    if list(payload["classes"]) != list(splits.classes):
        raise GhostqError(
            f"{model}: trained on classes {payload['classes']}, the config's data has {splits.classes}"
        )
    loader = make_eval_loader(splits.val, cfg.data.img_size, cfg.data.in_channels, workers=cfg.data.workers)
    with console.status(f"detecting on {len(splits.val)} val images"):
        clip = logit_clip_from_config(Config.model_validate(payload["config"]), net.head_type)
        dets = predict_loader(net, loader, cfg.eval, torch.device("cpu"), clip)
    return evaluate(splits.val_coco(), dets, metric=metric)


def _json_result(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: metric, mAP50, mAP50_95 (COCO only), per_class, num_images, num_dets."""
    keys = ["metric", "mAP50", "mAP50_95", "per_class", "num_images", "num_dets"]
    return {k: result[k] for k in keys if k in result}


def _report(result: dict[str, Any], title: str) -> None:
    """Print a rich table: one row per class, then the mean (fractions in [0, 1], n/a where undefined)."""
    coco = result["metric"] == "coco"
    table = Table(title=title)
    table.add_column("class")
    table.add_column("AP50", justify="right")
    if coco:
        table.add_column("AP50:95", justify="right")
    else:
        table.add_column("GT", justify="right")
        table.add_column("dets", justify="right")
    for name, row in result["per_class"].items():
        extra = [_fmt(row["AP50_95"])] if coco else [str(row["num_gt"]), str(row["num_dets"])]
        table.add_row(name, _fmt(row["AP50"]), *extra)
    table.add_section()
    mean = [_fmt(result["mAP50_95"])] if coco else ["", str(result["num_dets"])]
    table.add_row("mean", _fmt(result["mAP50"]), *mean, style="bold")
    console.print(table)
    console.print(f"{result['num_images']} images, {result['num_dets']} detections", highlight=False)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
