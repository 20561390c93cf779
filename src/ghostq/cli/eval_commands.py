"""`ghostq eval`: score detections against a ground truth (COCO or Pascal VOC metrics).

Three modes: a detections file (`--gt` + `--dets`); a checkpoint on the config's val split (`CONFIG --model PATH`);
a checkpoint alone on labelled data (`--model PATH --data ROOT --format FMT`, or `--model PATH --gt ann.json
--images DIR`), everything about the model read from its spec. A checkpoint's detections are produced in-process
and then take the same path as a detections file.
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
    data: Path | None = typer.Option(None, "--data", help="with --model and no CONFIG: dataset folder to score on"),
    fmt: str | None = typer.Option(None, "--format", help="format of --data (dota, dior, nwpu, vedai, coco, ...)"),
    images: Path | None = typer.Option(None, "--images", help="with --model --gt: the folder of the json's images"),
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
    if model is not None and config is None:
        if dets is not None or (gt is None) == (data is None):
            raise GhostqError("evaluate a checkpoint alone with `ghostq eval --model PATH --data ROOT --format FMT` "
                              "or `--model PATH --gt ann.json --images DIR` (no --dets)")
        result = _evaluate_checkpoint(model, metric, data, fmt, gt, images)
        title = f"{metric}: {model} on {data or gt}"
    elif config is not None or model is not None:
        if config is None or model is None or gt is not None or dets is not None or data is not None:
            raise GhostqError("evaluate a model with `ghostq eval CONFIG --model PATH` (no --gt / --dets / --data)")
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
    """Detections of the checkpoint on the config's val split (its eval thresholds), scored with `metric`."""
    import torch

    from ghostq.core.spec import DecodeSpec
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.evaluate import evaluate
    from ghostq.detect.inference import make_eval_loader, predict_loader
    from ghostq.stages.config import load_config

    cfg = load_config(config, overrides)
    net, spec = load_model(model)
    splits = prepare_data(cfg)
    if list(spec.classes) != list(splits.classes):
        raise GhostqError(f"{model}: trained on classes {list(spec.classes)}, the config's data has {splits.classes}")
    loader = make_eval_loader(splits.val, spec.img_size, spec.in_channels, workers=cfg.data.workers)
    e = cfg.eval
    with console.status(f"detecting on {len(splits.val)} val images"):
        dets = predict_loader(net, loader, spec, torch.device("cpu"),
                              DecodeSpec(e.score_threshold, e.iou_threshold, e.max_det))
    return evaluate(splits.val_coco(), dets, metric=metric)


def _evaluate_checkpoint(model: Path, metric: str, data: Path | None, fmt: str | None, gt: Path | None,
                         images: Path | None) -> dict[str, Any]:
    """The checkpoint alone (its spec) on every image of a labelled dataset."""
    from ghostq.detect.checkpoint_eval import evaluate_model, load_eval_dataset

    if data is not None and fmt is None:
        raise GhostqError("--data needs --format FMT (the dataset's format)")
    net, spec = load_model(model)
    ds = load_eval_dataset(spec, root=data, fmt=fmt, gt=gt, images=images)
    with console.status(f"detecting on {len(ds.records)} images"):
        return evaluate_model(net, spec, ds, metric)


def load_model(path: Path) -> tuple[Any, Any]:
    """The model of a checkpoint (full-precision, or compressed when it holds per-layer bits) and its spec."""
    from ghostq.detect.checkpoint import checkpoint_spec, load_checkpoint, load_detector

    payload = load_checkpoint(path)
    if "bits" in payload:
        from ghostq.compress.pipeline import load_quantized

        return load_quantized(path)[0], checkpoint_spec(payload)
    return load_detector(path)[0], checkpoint_spec(payload)


def _json_result(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: metric, mAP50, mAP50_95 and by_size (COCO only), per_class, num_images, num_dets."""
    keys = ["metric", "mAP50", "mAP50_95", "per_class", "by_size", "num_images", "num_dets"]
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
    if "by_size" in result:  # COCO: small objects are where INT8 detectors lose most
        sizes = ", ".join(f"{k} {_fmt(v['AP50'])} ({100 * v['gt_share']:.0f}% of objects)"
                          for k, v in result["by_size"].items())
        console.print(f"AP50 by object size: {sizes}", highlight=False)
    console.print(f"{result['num_images']} images, {result['num_dets']} detections", highlight=False)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
