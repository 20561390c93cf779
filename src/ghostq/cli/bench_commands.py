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
        None, "--backend", help="ort-cpu | ort-cuda | ort-trt | ov-cpu | ov-cpu-f32 | ov-cpu-bf16 | trt | torch "
        "(default: by file suffix; `ghostq bench --backends` lists what runs here)",
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
    e2e: list[Path] | None = typer.Option(
        None, "--e2e", help="images (files or folders): time image file -> boxes per image, step by step"
    ),
    tile: int | None = typer.Option(None, "--tile", min=32, help="--e2e: tile side (default: whole image)"),
    overlap: int = typer.Option(200, "--overlap", min=0, help="--e2e: tile overlap"),
    rounds: int = typer.Option(3, "--rounds", min=1, help="--e2e: passes over the images"),
    pipeline: str = typer.Option("fast", "--pipeline", help="--e2e: fast | baseline | both (before / after)"),
    list_backends: bool = typer.Option(False, "--backends", help="list the backends and whether each runs here"),
) -> None:
    """Latency percentiles, throughput, peak memory and the machine (CPU instruction sets, each backend's
    precision); on a Jetson power mode and power too. ``--e2e IMAGES``: image file to boxes, step by step."""
    from ghostq.deploy.bench import BenchSettings, bench_model, markdown, plot_latency
    from ghostq.deploy.bench import compare as compare_models

    if list_backends:
        from ghostq.deploy import available_backends

        for name, why in available_backends().items():
            console.print(f"{name}: {why}", highlight=False, markup=False)
        return
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
    if e2e:
        if plot_path is not None:
            raise GhostqError("--plot draws model-only timings; with --e2e use --json / --md")
        result, text = e2e_bench(paths, e2e, backend, settings, overrides, tile, overlap, rounds, pipeline)
        _write(result, text, json_path, md_path)
        return
    if compare:
        result = compare_models(paths, backend, settings, overrides=overrides)
    else:
        result = bench_model(model, backend, settings, overrides=overrides)
    text = markdown(result)
    _write(result, text, json_path, md_path)
    if plot_path is not None:
        plot_latency(result, plot_path)
        console.print(f"wrote {plot_path}", highlight=False)


def _write(result: dict[str, object], text: str, json_path: Path | None, md_path: Path | None) -> None:
    """Print the table; write the JSON and markdown files asked for."""
    from ghostq.core.atomic import atomic_write_json, atomic_write_text

    console.print(text, highlight=False, markup=False, soft_wrap=True)
    if json_path is not None:
        atomic_write_json(json_path, result)
        console.print(f"wrote {json_path}", highlight=False)
    if md_path is not None:
        atomic_write_text(md_path, text)
        console.print(f"wrote {md_path}", highlight=False)


def e2e_bench(
    models: list[Path],
    images: list[Path],
    backend: str | None,
    settings: object,
    overrides: dict[str, object],
    tile: int | None,
    overlap: int,
    rounds: int,
    pipeline: str,
) -> tuple[dict[str, object], str]:
    """``--e2e``: every model (and pipeline, with ``both``) timed image file -> boxes, interleaved."""
    from ghostq.core.tiling import list_images
    from ghostq.deploy.bench import open_for_timing
    from ghostq.deploy.e2e import PIPELINES, E2ESettings, e2e_markdown, run_e2e

    kinds = PIPELINES if pipeline == "both" else (pipeline,)
    if any(k not in PIPELINES for k in kinds):
        raise GhostqError(f"--pipeline must be fast, baseline or both, got {pipeline!r}")
    for path in images:
        if not path.exists():
            raise GhostqError(f"{path}: --e2e image or folder not found")
    paths = list_images(images)
    e2e_settings = E2ESettings(rounds=rounds, warmup=min(3, len(paths)), tile=tile, overlap=overlap)
    runtimes = []
    try:
        for m in models:
            runtimes.append(open_for_timing(m, backend, settings, len(models) > 1, overrides=overrides))
        names = [m.name if [x.name for x in models].count(m.name) == 1 else str(m) for m in models]
        names = [n if names.count(n) == 1 else f"{n} #{k + 1}" for k, n in enumerate(names)]
        entries = [(f"{name} [{kind}]" if len(kinds) > 1 else name, rt, kind)
                   for name, rt in zip(names, runtimes, strict=True) for kind in kinds]  # fmt: skip
        result = run_e2e(entries, paths, e2e_settings)
    finally:
        for rt in runtimes:
            rt.close()
    return result, e2e_markdown(result)
