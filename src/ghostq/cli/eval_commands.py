"""`ghostq eval`: score a detections file against a ground truth (COCO or Pascal VOC metrics).

Only the file mode (`--gt` + `--dets`) exists today. Evaluating a checkpoint (`CONFIG --model PATH`) comes
with `ghostq train`: it will produce the detections in-process, then take the same `evaluate` + `_report`
path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ghostq.atomic import atomic_write_json
from ghostq.cli.app import app, console
from ghostq.errors import GhostqError


@app.command("eval")
def eval_command(
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
    if gt is None or dets is None:
        raise GhostqError("ghostq eval needs both --gt GT.json and --dets DETS.json")
    result = evaluate(gt, dets, metric=metric)
    _report(result, title=f"{metric}: {dets.name} vs {gt.name}")
    if json_out is not None:
        atomic_write_json(json_out, _json_result(result))
        console.print(f"wrote {json_out}", highlight=False)


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
