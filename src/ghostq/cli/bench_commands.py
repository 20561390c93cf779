"""`ghostq bench`: latency of a deployed model, or of several interleaved (`--compare`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console
from ghostq.core.errors import GhostqError


def parse_batches(text: str) -> tuple[int, ...]:
    """ "1,4,8" -> (1, 4, 8); a one-line error for anything else."""
    try:
        batches = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise GhostqError(f"--batch must be comma-separated integers such as 1,4,8, got {text!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise GhostqError(f"--batch sizes must be >= 1, got {text!r}")
    return batches


def model_overrides(img_size: int | None, channels: int | None, classes: str | None) -> dict[str, object]:
    """Overrides for a model whose file lacks the ghostq.* metadata."""
    ov: dict[str, object] = {}
    if img_size is not None:
        ov["img_size"] = img_size
    if channels is not None:
        ov["in_channels"] = channels
    if classes:
        ov["classes"] = [c.strip() for c in classes.split(",")]
    return ov


def check_outputs(models: list[Path], outputs: dict[str, Path | None]) -> None:
    """Every output file can be written and replaces no model: checked before timing, so no measurement is lost."""
    from ghostq.core.writable import require_writable_file

    given = {flag: path for flag, path in outputs.items() if path is not None}
    for flag, path in given.items():
        if any(path.resolve() == m.resolve() for m in models):
            raise GhostqError(f"{path}: {flag} names a model being timed; give another file name")
        require_writable_file(path, f"{flag} file")
    flags = {path.resolve(): flag for flag, path in given.items()}
    if len(flags) < len(given):
        raise GhostqError(f"{', '.join(given)} must be different files, got {', '.join(map(str, given.values()))}")


@app.command("bench")
def bench_command(
    models: list[Path] | None = typer.Argument(None, help="models to compare (with --compare)"),
    model: Path | None = typer.Option(None, "--model", help="model to time: .onnx, .plan/.engine or .pt"),
    compare: bool = typer.Option(False, "--compare", help="time the MODELS interleaved (A B A B) and give ratios"),
    backend: str | None = typer.Option(
        None, "--backend", help="ort-cpu | ort-cuda | ort-trt | trt | torch (default: by file suffix)"
    ),
    batch: str = typer.Option("1", "--batch", help="batch sizes, comma-separated (e.g. 1,4,8)"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: all usable cores)"),
    warmup: int = typer.Option(10, "--warmup", min=0, help="untimed runs per batch size"),
    iters: int = typer.Option(100, "--iters", min=1, help="timed runs per batch size"),
    img_size: int | None = typer.Option(None, "--img-size", min=8, help="input side, when the file lacks it"),
    channels: int | None = typer.Option(None, "--channels", min=1, help="input channels, when the file lacks it"),
    json_path: Path | None = typer.Option(None, "--json", help="write the full result (every timing) here"),
    md_path: Path | None = typer.Option(None, "--md", help="write the markdown table here"),
    plot_path: Path | None = typer.Option(None, "--plot", help="write a PNG of the latency distributions here"),
) -> None:
    """Latency percentiles, throughput, peak memory and the machine; on a Jetson power mode and power too."""
    from ghostq.core.atomic import atomic_write_json, atomic_write_text
    from ghostq.deploy.bench import BenchSettings, bench_model, markdown, plot_latency
    from ghostq.deploy.bench import compare as compare_models

    settings = BenchSettings(parse_batches(batch), warmup, iters, threads)
    overrides = model_overrides(img_size, channels, None)
    if compare:
        paths = [*([model] if model is not None else []), *(models or [])]
        if len(paths) < 2:
            raise GhostqError("ghostq bench --compare needs two or more models: --compare A.onnx B.onnx")
    else:
        if models:
            raise GhostqError("give one model with --model PATH, or several with --compare A B ...")
        if model is None:
            raise GhostqError("ghostq bench needs --model PATH (or --compare A B ...)")
        paths = [model]
    check_outputs(paths, {"--json": json_path, "--md": md_path, "--plot": plot_path})
    if compare:
        result = compare_models(paths, backend, settings, overrides=overrides)
    else:
        result = bench_model(model, backend, settings, overrides=overrides)
    text = markdown(result)
    console.print(text, highlight=False, markup=False, soft_wrap=True)
    if json_path is not None:
        atomic_write_json(json_path, result)
        console.print(f"wrote {json_path}", highlight=False)
    if md_path is not None:
        atomic_write_text(md_path, text)
        console.print(f"wrote {md_path}", highlight=False)
    if plot_path is not None:
        plot_latency(result, plot_path)
        console.print(f"wrote {plot_path}", highlight=False)
