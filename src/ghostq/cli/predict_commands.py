"""`ghostq predict`: any model file a registered runtime runs (.pt, .onnx, .plan / .engine), one predict path."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console


@app.command("predict")
def predict_command(
    inputs: list[Path] = typer.Argument(..., help="images or folders of images"),
    model: Path = typer.Option(
        ..., "--model", help="checkpoint (runs/<name>/fp/best.pt), ONNX model or TensorRT engine (.plan/.engine)"
    ),
    out: Path = typer.Option(..., "--out", help="output folder"),
    tile: int = typer.Option(None, "--tile", min=32, help="tile side for large images (e.g. 1024)"),
    overlap: int = typer.Option(200, "--overlap", min=0, help="tile overlap in pixels"),
    score: float = typer.Option(0.05, "--score", min=0.0, max=1.0, help="minimum score kept"),
    iou: float = typer.Option(0.6, "--iou", min=0.01, max=1.0, help="class-wise NMS IoU threshold"),
    max_det: int = typer.Option(
        300, "--max-det", min=1, help="detections kept per network input (per tile with --tile: a tiled image keeps "
        "up to this many per tile)"
    ),
    backend: str = typer.Option(
        None, "--backend", help="a registered runtime: ort-cpu | ort-cuda | ort-trt | trt | torch (default: by suffix)"
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads of the runtime"),
    img_size: int = typer.Option(None, "--img-size", min=8, help="input side, when the model file lacks it"),
    channels: int = typer.Option(None, "--channels", min=1, help="input channels, when the model file lacks it"),
    classes: str = typer.Option(None, "--classes", help="class names a,b,c, when the model file lacks them"),
    json_path: Path = typer.Option(None, "--json", help="also write a summary JSON here"),
) -> None:
    """Detect objects: a PNG with boxes per image, COCO-results json and DOTA Task2 result files."""
    from rich.progress import Progress

    from ghostq.cli.bench_commands import model_overrides
    from ghostq.core.atomic import atomic_write_json
    from ghostq.core.detections import DecodeSettings
    from ghostq.core.errors import GhostqError
    from ghostq.core.runtime import load_runtime
    from ghostq.deploy.predict import predict_paths

    if tile is not None and overlap >= tile:
        raise GhostqError(f"--overlap {overlap} must be smaller than --tile {tile}")
    paths = _checked_outputs(inputs, out, json_path)
    runtime = load_runtime(
        model,
        backend,
        threads=threads,
        decode=DecodeSettings(score_threshold=score, iou_threshold=iou, max_det=max_det,
                              pre_nms_topk=max(max_det, DecodeSettings().pre_nms_topk)),
        overrides=model_overrides(img_size, channels, classes),
    )
    with Progress(console=console) as progress:
        task = progress.add_task("predict", total=len(paths))
        with runtime:
            summary = predict_paths(runtime, paths, out, tile, overlap, progress=lambda: progress.advance(task))
    if json_path is not None:
        atomic_write_json(json_path, summary)
    console.print(f"{summary['images']} images, {summary['detections']} detections -> {out}")


def _checked_outputs(inputs: list[Path], out: Path, json_path: Path | None) -> list[Path]:
    """The input images, once the outputs are known to be writable and to replace no input (before any work)."""
    from ghostq.core.errors import GhostqError
    from ghostq.core.tiling import check_output_folder, image_names, list_images
    from ghostq.core.writable import require_writable_dir, require_writable_file

    paths = list_images(inputs)
    image_names(paths)  # result names that would clash fail here, before the model loads
    check_output_folder(paths, out)
    require_writable_dir(out, "output folder (--out)")
    if json_path is not None:
        if any(json_path.resolve() == p.resolve() for p in paths):
            raise GhostqError(f"{json_path}: --json names an input image; give another file name")
        require_writable_file(json_path, "summary JSON (--json)")
    return paths
