"""The run folder `runs/<name>/`: artifacts, `manifest.json`, stage status and skipping.

manifest.json maps each stage to its status, start/finish times, config hash, the sha256 of its inputs and
artifacts, and the package versions that produced it. A stage whose config hash and inputs are unchanged and
whose artifacts are intact is skipped unless forced. Every write is atomic (ghostq.core.atomic).

One writer at a time: every command that writes into a run folder holds an OS lock on `<run>/.lock` (released by
the OS when the process ends, even on a crash); a second writer fails at once naming the holder. The holder first
tidies what a killed predecessor left: temporaries of atomic writes, half-built stage folders, stages still
marked `running`. A stage that starts marks the finished stages built on its old output `stale`.
`config.yaml` is the resolved config the run's finished artifacts were built with; a command that would redo
finished stages under a different config stops first and names the changed keys (`--force` accepts).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ghostq.core.atomic import TEMP_GLOB, atomic_write_json, atomic_write_text
from ghostq.core.errors import GhostqError
from ghostq.core.writable import require_writable_dir

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the rest works
    fcntl = None  # type: ignore[assignment]

MANIFEST = "manifest.json"
LOCK = ".lock"
CONFIG = "config.yaml"
STAGE_ORDER = ("train", "compress", "export", "bench")  # each stage is built on the outputs of those before it
STAGE_FOLDERS = ("fp", "ghost", "export", "bench", "predict")
FINISHED = ("done", "partial")
_HELD: dict[str, list[Any]] = {}  # resolved run folder -> [lock fd, nesting depth] held by this process
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

    # -- config ---------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Save the resolved config (a `Config.model_dump(mode="json")`) as `config.yaml`, atomically."""
        import yaml

        return atomic_write_text(self.config_path, yaml.safe_dump(dict(config), sort_keys=False))

    def saved_config(self) -> dict[str, Any] | None:
        """The config the run's artifacts were built with (`config.yaml`), or None for a new run."""
        import yaml

        if not self.config_path.is_file():
            return None
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            where = f"{self.config_path}:{line + 1}" if line is not None else str(self.config_path)
            raise GhostqError(f"{where}: corrupt run config ({type(err).__name__})") from None
        if not isinstance(data, dict):
            raise GhostqError(f"{self.config_path}: corrupt run config (not a mapping)")
        return data

    def require_same_config(self, config: Mapping[str, Any], stage_sections: Mapping[str, Sequence[str]]) -> None:
        """Stop before any work when `config` differs from `config.yaml` in the sections a finished stage was
        built from (`stage_sections`: stage -> config sections): rerunning would replace its artifacts."""
        saved = self.saved_config()
        recorded = self.manifest()["stages"]
        finished = [s for s in stage_sections if recorded.get(s, {}).get("status") in FINISHED]
        if saved is None or not finished:
            return
        hit = [s for s in finished if config_changes(saved, config, stage_sections[s])]
        if hit:
            changes = config_changes(saved, config, sorted({sec for s in hit for sec in stage_sections[s]}))
            raise GhostqError(
                f"{self.config_path}: the config differs from the one finished stage(s) {', '.join(hit)} were "
                f"built with: {'; '.join(changes)}. Rerun with --force to redo them, or choose another run.name"
            )

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
        """Record a stage: `running` at entry, `done` with artifact hashes at exit, `failed` on an error.

        Holds the run folder's lock throughout; the finished stages after this one are marked `stale`."""
        with self.lock(f"stage {name}"):
            yield from self._stage(name, cfg_hash, inputs)

    def _stage(self, name: str, cfg_hash: str, inputs: list[Path] | None) -> Iterator[StageRecord]:
        started = _now()
        t0 = time.time()
        base = {
            "config_hash": cfg_hash,
            "started": started,
            "inputs": {str(p): sha256_file(p) for p in inputs or [] if Path(p).is_file()},
            "versions": package_versions(),
        }
        data = self.manifest()
        data["stages"][name] = {**base, "status": "running"}
        later = STAGE_ORDER[STAGE_ORDER.index(name) + 1:] if name in STAGE_ORDER else ()
        for after in later:
            entry = data["stages"].get(after)
            if entry and entry.get("status") in FINISHED:
                entry.update(status="stale", stale_because=f"{name} was rerun at {started}")
        atomic_write_json(self.manifest_path, data)
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

    # -- one writer at a time ---------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the run folder's lock while `command` writes into it; re-entrant within this process.

        A second process fails at once with a one-line GhostqError naming the folder and the holder's pid. The
        OS drops the lock when the holder exits or crashes; the first holder tidies what a killed one left."""
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        require_writable_dir(self.path, "run folder")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise GhostqError(
                f"{self.path}: run folder is locked by {holder}; wait for it to finish or choose another run.name"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        _HELD[key] = [fd, 1]
        try:
            info = {"pid": os.getpid(), "command": command, "argv": " ".join(sys.argv)[:300], "since": _now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self.recover()
            yield
        finally:
            del _HELD[key]
            os.close(fd)

    def recover(self) -> list[str]:
        """Tidy what a killed writer left (call with the lock held): temporaries of atomic writes, half-built
        stage folders, and stages still marked `running`. Returns what it did, one line each."""
        done: list[str] = []
        for folder in (self.path, *(self.path / f for f in STAGE_FOLDERS)):
            for tmp in sorted(folder.glob(TEMP_GLOB)) if folder.is_dir() else []:
                if tmp.is_file():
                    tmp.unlink()
                    done.append(f"removed {tmp}")
        for rel in STAGE_FOLDERS:
            partial, old, final = self.path / f".{rel}.partial", self.path / f".{rel}.old", self.path / rel
            if partial.is_dir():
                shutil.rmtree(partial)
                done.append(f"removed {partial}")
            if old.is_dir() and not final.exists():
                os.replace(old, final)  # killed between the two renames of staged_folder: keep the old set
                done.append(f"restored {final}")
            elif old.is_dir():
                shutil.rmtree(old)
                done.append(f"removed {old}")
        data = self.manifest() if self.manifest_path.is_file() else None
        if data is not None:
            running = [n for n, e in data["stages"].items() if e.get("status") == "running"]
            for n in running:
                data["stages"][n].update(status="interrupted", error="the process ended before the stage finished")
                done.append(f"stage {n}: running -> interrupted")
            if running:
                atomic_write_json(self.manifest_path, data)
        return done

    @contextmanager
    def staged_folder(self, rel: str) -> Iterator[Path]:
        """Yield an empty folder to build `<run>/<rel>` in; on success it replaces `<rel>` whole, on an error it
        is deleted and `<rel>` is untouched. Readers never see half of one output set beside half of another."""
        final, partial, old = self.path / rel, self.path / f".{rel}.partial", self.path / f".{rel}.old"
        for leftover in (partial, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
        partial.mkdir(parents=True)
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)


def _read_holder(fd: int) -> str:
    """'pid N (command)' from a lock file's record, or a plain note when it cannot be read."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} ({info.get('command', '?')}, since {info.get('since', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], sections: Sequence[str]) -> list[str]:
    """'dotted.key old -> new' for every leaf that differs between two config dumps, within `sections`.

    `run.root` and `run.name` name the folder itself and are never a change."""
    a = _flatten({k: old.get(k) for k in sections if k in old or k in new}, "")
    b = _flatten({k: new.get(k) for k in sections if k in old or k in new}, "")
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ("run.root", "run.name"):
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key} {_show(a.get(key, '<unset>'))} -> {_show(b.get(key, '<unset>'))}")
    return out


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)
