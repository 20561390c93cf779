"""`ghostq export`: ONNX files (FP32, FP16, INT8 Q/DQ), verify.json, trtexec.sh, TensorRT engines; and
`ghostq export --model PATH.pt --out DIR [--calib IMAGES_DIR]`: a checkpoint alone (its spec, no config); and
`ghostq export --check FILE.onnx`: the TensorRT Q/DQ lint (non-zero exit on any violation); and
`ghostq export --explain FILE.onnx [--json PATH]`: per op type, what ONNX Runtime's CPU graph runs as int8 or float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ghostq.cli.app import app, console
from ghostq.core.errors import GhostqError


@app.command("export")
def export_command(
    config: Path | None = typer.Argument(None, help="experiment YAML (e.g. configs/demo.yaml)"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides, e.g. export.fp16=false"),
    check: Path | None = typer.Option(
        None, "--check", help="only lint FILE.onnx against TensorRT's explicit-quantization rules"
    ),
    nms: str | None = typer.Option(
        None, "--nms", help="add NMS files: onnx (NonMaxSuppression) or trt (EfficientNMS_TRT)"
    ),
    force: bool = typer.Option(False, "--force", help="re-export even when export/ is current"),
    model: Path | None = typer.Option(None, "--model", help="export this checkpoint alone (no CONFIG) into --out"),
    out: Path | None = typer.Option(None, "--out", help="with --model: folder for the ONNX files"),
    calib: Path | None = typer.Option(
        None, "--calib", help="with --model: folder of calibration images for the INT8 files (min-max PTQ)"
    ),
    explain: Path | None = typer.Option(
        None, "--explain", help="print what ONNX Runtime's CPU graph of FILE.onnx runs as integer / float, per op"
    ),
    json_path: Path | None = typer.Option(None, "--json", help="with --explain: also write the table as JSON"),
) -> None:
    """Export the trained (and compressed) detector; writes runs/<name>/export/."""
    if explain is not None:
        if config is not None or check is not None or model is not None:
            raise GhostqError("use `ghostq export --explain FILE.onnx` alone")
        raise typer.Exit(_explain(explain, json_path))
    if json_path is not None:
        raise GhostqError("--json goes with --explain FILE.onnx")
    if check is not None:
        if config is not None:
            raise GhostqError("use either `ghostq export --check FILE.onnx` or `ghostq export CONFIG`")
        raise typer.Exit(_check(check))
    if model is not None:
        if config is not None or out is None:
            raise GhostqError("export a checkpoint alone with `ghostq export --model PATH.pt --out DIR` (no CONFIG)")
        raise typer.Exit(_export_checkpoint(model, out, calib, nms))
    if out is not None or calib is not None:
        raise GhostqError("--out and --calib go with --model PATH.pt (a CONFIG exports into its run folder)")
    if config is None:
        raise GhostqError("ghostq export needs CONFIG (or --check FILE.onnx)")
    if nms is not None and nms not in ("onnx", "trt"):
        raise GhostqError(f"unknown --nms {nms!r}: choose onnx or trt")
    from ghostq.stages.export import run_export

    cfg, ecfg = load_export_config(config, overrides or [])
    with console.status("exporting"):
        result = run_export(cfg, ecfg, nms=nms, force=force)
    if result.skipped:
        console.print(f"export: {result.out_dir} is current (same config and checkpoints); --force re-exports")
    for msg in result.messages:
        console.print(escape(msg), highlight=False, soft_wrap=True)
    _report(result.verify)
    console.print(f"wrote {result.out_dir}", highlight=False)


def _explain(path: Path, json_path: Path | None) -> int:
    """`ghostq export --explain`: the per-op integer / float table of the graph ONNX Runtime runs."""
    from ghostq.core.atomic import atomic_write_json
    from ghostq.core.writable import require_writable_file
    from ghostq.export.explain import explain, explain_markdown

    if json_path is not None:
        require_writable_file(json_path, "--json file")
    result = explain(path)
    print(explain_markdown(result), end="")
    if json_path is not None:
        atomic_write_json(json_path, result)
    return 0


def _export_checkpoint(model: Path, out: Path, calib: Path | None, nms: str | None) -> int:
    """`ghostq export --model`: the checkpoint's ONNX files with the export settings at their defaults."""
    from ghostq.core.export_config import ExportConfig
    from ghostq.core.writable import require_writable_dir
    from ghostq.export.checkpoint_export import export_checkpoint

    if nms is not None and nms not in ("onnx", "trt"):
        raise GhostqError(f"unknown --nms {nms!r}: choose onnx or trt")
    ecfg = ExportConfig()
    if nms is not None:
        ecfg = ecfg.model_copy(update={"nms": ecfg.nms.model_copy(update={"kind": nms})})
    require_writable_dir(out, "--out folder")
    with console.status("exporting"):
        result = export_checkpoint(model, out, ecfg, calib)
    for msg in result.messages:
        console.print(escape(msg), highlight=False, soft_wrap=True)
    for path in result.files.values():
        console.print(f"wrote {path}", highlight=False)
    return 0


def load_export_config(path: Path, overrides: list[str]) -> tuple[Any, Any]:
    """The Config and its export section."""
    from ghostq.stages.config import load_config

    cfg = load_config(path, overrides)
    return cfg, cfg.export


def _check(path: Path) -> int:
    from ghostq.export.qdq_lint import lint_file

    violations = lint_file(path)
    for v in violations:
        console.print(escape(str(v)), highlight=False, soft_wrap=True)
    if violations:
        rules = sorted({v.rule for v in violations})
        console.print(f"[red]{path}: {len(violations)} violation(s) of TensorRT's Q/DQ rules "
                      f"({', '.join(rules)})[/red]", highlight=False, soft_wrap=True)
        return 1
    console.print(f"{path}: passes TensorRT's Q/DQ rules", highlight=False)
    return 0


def _report(verify: dict[str, Any] | None) -> None:
    if not verify:
        return
    from rich.table import Table

    table = Table(title="export/verify.json")
    for col in ("file", "checker", "max |d| scores", "max |d| boxes/stride", "mAP50 onnx", "mAP50 torch", "lint"):
        table.add_column(col)
    for name, r in verify["files"].items():
        d = r.get("max_abs_diff") or {}
        lint = r.get("lint")
        table.add_row(
            name, r.get("checker", ""), _f(d.get("scores")), _f(d.get("boxes_per_stride")),
            _f(r.get("mAP50_onnx")), _f(r.get("mAP50_torch")),
            "" if lint is None else ("pass" if lint["passed"] else f"{len(lint['violations'])} violations"),
        )
    console.print(table)


def _f(v: Any) -> str:
    return "" if v is None else f"{v:.4g}"
