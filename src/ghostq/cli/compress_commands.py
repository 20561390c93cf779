"""`ghostq compress`: GHOST (or a PTQ / QAT baseline) from the run's FP checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ghostq.cli.app import app, console
from ghostq.core.writable import require_writable_file


def load_with_compress(config: Path, overrides: list[str]):  # noqa: ANN201
    """(Config, its compress section) from a YAML + dotted overrides."""
    from ghostq.stages.config import load_config

    cfg = load_config(config, overrides)
    return cfg, cfg.compress


@app.command("compress")
def compress_command(
    config: Path = typer.Argument(..., help="experiment YAML (e.g. configs/demo.yaml)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, e.g. compress.method=qat"),
    force: bool = typer.Option(False, "--force", help="rerun even when ghost/ is current"),
    json_out: Path = typer.Option(None, "--json", help="also write the metrics to this JSON file"),
) -> None:
    """Quantize the trained detector; writes runs/<name>/ghost/{best.pt,bits.json,metrics.json,bits.png}."""
    from ghostq.core.atomic import atomic_write_json
    from ghostq.stages.compress import compress

    cfg, ccfg = load_with_compress(config, overrides or [])
    if json_out is not None:
        require_writable_file(json_out, "--json file")
    result = compress(cfg, ccfg, force=force)
    m = result.metrics
    if result.skipped:
        console.print(f"compress: {result.out_dir} is current (same config and inputs); --force reruns")
    for name, table in m.get("table", {}).items():
        console.print(f"[bold]{name}[/bold]\n{table}", highlight=False, soft_wrap=True)
    fp = m.get("fp", {})
    shown = {k: m.get(k) for k in ("mAP50", "mAP50_95", "size_mb", "bops_g", "avg_weight_bits")}
    console.print(
        f"{m.get('method')}: val mAP50 {_f(shown['mAP50'])} (FP {_f(fp.get('mAP50'))}), "
        f"mAP50:95 {_f(shown['mAP50_95'])}; {_f(shown['size_mb'])} MB, {_f(shown['bops_g'], 2)} GBOPs, "
        f"avg {_f(shown['avg_weight_bits'], 2)} weight bits; artifacts in {result.out_dir}"
    )
    if json_out is not None:
        atomic_write_json(json_out, {k: v for k, v in m.items() if k != "table"})


def _f(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"
