"""`ghostq predict`."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console


@app.command("predict")
def predict_command(
    inputs: list[Path] = typer.Argument(..., help="images or folders of images"),
    model: Path = typer.Option(..., "--model", help="checkpoint (runs/<name>/fp/best.pt)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    tile: int = typer.Option(None, "--tile", min=32, help="tile side for large images (e.g. 1024)"),
    overlap: int = typer.Option(200, "--overlap", min=0, help="tile overlap in pixels"),
    score: float = typer.Option(0.05, "--score", min=0.0, max=1.0, help="minimum score kept"),
    iou: float = typer.Option(0.6, "--iou", min=0.01, max=1.0, help="class-wise NMS IoU threshold"),
    json_path: Path = typer.Option(None, "--json", help="also write a summary JSON here"),
) -> None:
    """Detect objects: a PNG with boxes per image, COCO-results json and DOTA Task2 result files."""
    from rich.progress import Progress

    from ghostq.atomic import atomic_write_json
    from ghostq.config import Config, EvalConfig
    from ghostq.detect.checkpoint import load_detector
    from ghostq.detect.predict import list_images, predict_paths
    from ghostq.errors import GhostqError

    if tile is not None and overlap >= tile:
        raise GhostqError(f"--overlap {overlap} must be smaller than --tile {tile}")
    net, payload = load_detector(model)
    cfg = Config.model_validate(payload["config"])
    paths = list_images(inputs)
    eval_cfg = EvalConfig(score_threshold=score, iou_threshold=iou, max_det=cfg.eval.max_det)
    with Progress(console=console) as progress:
        task = progress.add_task("predict", total=len(paths))
        summary = predict_paths(net, paths, tuple(payload["classes"]), cfg.data.img_size, cfg.data.in_channels,
                                eval_cfg, out, tile=tile, overlap=overlap,
                                progress=lambda: progress.advance(task))
    if json_path is not None:
        atomic_write_json(json_path, summary)
    console.print(f"{summary['images']} images, {summary['detections']} detections -> {out}")
