"""The run folder `runs/<name>/`: artifacts, `manifest.json`, stage status and skipping.

manifest.json maps each stage to its status, start/finish times, config hash, the sha256 of its inputs and
artifacts, and the package versions that produced it. A stage whose config hash and inputs are unchanged and
whose artifacts are intact is skipped unless forced. Every write is atomic (ghostq.atomic).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ghostq.atomic import atomic_write_json, atomic_write_text
from ghostq.errors import GhostqError

MANIFEST = "manifest.json"
_VERSIONED = ("ghostq", "torch", "numpy", "onnx", "onnxruntime", "brevitas", "pycocotools", "tensorrt")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (read from metadata: nothing is imported)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class StageRecord:
    """What a running stage collects; `RunDir.stage` writes it into the manifest when the stage ends."""

    name: str
    status: str = "done"  # a stage that stopped early on purpose sets "partial": resumable, not current
    artifacts: list[Path] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_artifact(self, path: str | Path) -> Path:
        """Register a file the stage wrote (its sha256 goes into the manifest)."""
        p = Path(path)
        self.artifacts.append(p)
        return p


class RunDir:
    """One run folder and its manifest."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    # -- manifest -------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (an empty one when the run is new)."""
        if not self.manifest_path.is_file():
            return {"stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise GhostqError(f"{self.manifest_path}:{err.lineno}: corrupt manifest ({err.msg})") from None
        data.setdefault("stages", {})
        return data

    def _update_stage(self, name: str, entry: dict[str, Any]) -> None:
        data = self.manifest()
        data["stages"][name] = entry
        atomic_write_json(self.manifest_path, data)

    def write_config(self, text: str) -> Path:
        """Save the resolved config as `config.yaml`."""
        return atomic_write_text(self.path / "config.yaml", text)

    # -- stages ---------------------------------------------------------------------------------------------
    def is_current(self, name: str, cfg_hash: str, inputs: list[Path] | None = None) -> bool:
        """True when the stage finished with this config hash, the same inputs, and intact artifacts."""
        entry = self.manifest()["stages"].get(name)
        if not entry or entry.get("status") != "done" or entry.get("config_hash") != cfg_hash:
            return False
        recorded_inputs = entry.get("inputs", {})
        for p in inputs or []:
            if not Path(p).is_file() or recorded_inputs.get(str(p)) != sha256_file(p):
                return False
        for rel, digest in entry.get("artifacts", {}).items():
            p = self.path / rel
            if not p.is_file() or sha256_file(p) != digest:
                return False
        return True

    @contextmanager
    def stage(self, name: str, cfg_hash: str, inputs: list[Path] | None = None) -> Iterator[StageRecord]:
        """Record a stage: `running` at entry, `done` with artifact hashes at exit, `failed` on an error."""
        self.path.mkdir(parents=True, exist_ok=True)
        started = _now()
        t0 = time.time()
        base = {
            "config_hash": cfg_hash,
            "started": started,
            "inputs": {str(p): sha256_file(p) for p in inputs or [] if Path(p).is_file()},
            "versions": package_versions(),
        }
        self._update_stage(name, {**base, "status": "running"})
        record = StageRecord(name)
        try:
            yield record
        except BaseException as err:
            self._update_stage(
                name,
                {
                    **base,
                    "status": "failed",
                    "finished": _now(),
                    "seconds": round(time.time() - t0, 3),
                    "error": str(err)[:500],
                },
            )
            raise
        artifacts = {self._rel(p): sha256_file(p) for p in record.artifacts if Path(p).is_file()}
        self._update_stage(
            name,
            {
                **base,
                "status": record.status,
                "finished": _now(),
                "seconds": round(time.time() - t0, 3),
                "artifacts": artifacts,
                **record.extra,
            },
        )

    def _rel(self, p: Path) -> str:
        try:
            return str(Path(p).resolve().relative_to(self.path.resolve()))
        except ValueError:
            return str(p)
