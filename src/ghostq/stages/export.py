"""The export stage: the run's checkpoints -> runs/<name>/export/ (ONNX files, verify.json, trtexec.sh, engines).

The stage is one unit: its files are built in a hidden folder beside ``export/`` that replaces it whole once
every file is written and verified, with the run folder locked throughout. A killed export leaves the previous
``export/`` as it was (and its manifest entry not ``done``, so the next run redoes it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ghostq.core.config import Config
from ghostq.core.errors import GhostqError
from ghostq.core.export_config import ExportConfig
from ghostq.export.pipeline import ExportResult
from ghostq.stages.runner import Session, session


def run_export(cfg: Config, ecfg: ExportConfig | None = None, *, nms: str | None = None, force: bool = False,
               within: Session | None = None) -> ExportResult:
    """Run the export stage of `cfg` (with `ecfg` as its export section when given); `nms` ("onnx" / "trt")
    overrides ``export.nms.kind``. Skipped when its config and inputs are unchanged."""
    ecfg = ecfg or cfg.export
    if nms is not None:
        ecfg = ecfg.model_copy(update={"nms": ecfg.nms.model_copy(update={"kind": nms})})
    if ecfg != cfg.export:
        cfg = cfg.model_copy(update={"export": ecfg})
    with session(cfg, "ghostq export", device=False, given=within) as s:
        return _run_export(s, cfg, force)
    raise AssertionError("unreachable")  # the session does not swallow exceptions


def _run_export(s: Session, cfg: Config, force: bool) -> ExportResult:
    from ghostq.export.pipeline import export_files

    ecfg, run = cfg.export, s.run
    out = run / "export"
    source = ecfg.source or run / "fp" / "best.pt"
    if not Path(source).is_file():
        raise GhostqError(f"{source}: checkpoint not found (train first: ghostq train CONFIG)")
    ghost = run / "ghost" / "best.pt"
    int8_source = ecfg.int8.source
    if int8_source == "ghost" and not ghost.is_file():
        raise GhostqError(f"{ghost}: compressed checkpoint not found (export.int8.source=ghost; run ghostq compress)")
    if int8_source == "auto":
        int8_source = "ghost" if ghost.is_file() else "ptq"
    compressed = run.manifest()["stages"].get("compress")
    if ecfg.int8.enabled and int8_source == "ghost" and compressed and compressed.get("status") != "done":
        why = compressed.get("stale_because") or compressed.get("error") or ""
        raise GhostqError(f"{ghost}: the compress stage that wrote it is {compressed.get('status')}"
                          f"{f' ({why})' if why else ''}; run ghostq compress first, or set export.int8.source=ptq")
    inputs = [Path(source)] + ([ghost] if ecfg.int8.enabled and int8_source == "ghost" else [])
    digest = s.digest("export", cfg=cfg)
    result = ExportResult(out)
    if s.is_current("export", digest, inputs, force=force):
        result.skipped = True
        verify_path = out / "verify.json"
        if verify_path.is_file():
            result.verify = json.loads(verify_path.read_text(encoding="utf-8"))
        return result
    with s.record("export", digest, inputs) as record:
        with run.staged_folder("export") as staging:
            old_cache = out / "timing.cache"
            if old_cache.is_file():  # engines build faster from the previous timing cache
                shutil.copy2(old_cache, staging / "timing.cache")
            result.out_dir = staging
            export_files(cfg, ecfg, Path(source), ghost, int8_source, result, s.data)
        result.out_dir = out
        result.files = {k: out / p.relative_to(staging) if p.is_relative_to(staging) else p
                        for k, p in result.files.items()}
        for p in result.files.values():
            record.add_artifact(p)
    return result
