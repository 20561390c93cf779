"""The one runner under every stage: the run folder's lock (which checks the folder is writable), the device,
DDP set-up and teardown, the dataset prepared once per command, and each stage's digest / skip / manifest record.

A `Session` lives for one command: `ghostq train` opens one for its stage, `ghostq run` one for every stage, so
the dataset is read once and the process group joined once. Under torchrun only rank 0 locks and writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostq.core.config import Config, config_hash
from ghostq.core.runs import RunDir, StageRecord

if TYPE_CHECKING:
    import torch

    from ghostq.detect.data.prepare import DataSplits
    from ghostq.detect.distributed import DistInfo

# The config sections each stage's artifacts are built from: what its digest covers, and what a finished stage
# refuses to see changed without --force.
STAGE_SECTIONS: dict[str, list[str]] = {
    "train": ["run", "data", "model", "train", "loss"],
    "compress": ["run", "data", "model", "train", "loss", "eval", "compress"],
    "export": ["run", "data", "model", "loss", "eval", "export"],
    "bench": ["bench"],
}


@dataclass
class Session:
    """What one command shares across its stages: config, run folder, device, DDP ranks and the data splits."""

    cfg: Config
    run: RunDir
    is_main: bool = True
    device: torch.device | None = None
    dist: DistInfo | None = None
    _splits: DataSplits | None = field(default=None, repr=False)

    def data(self) -> DataSplits:
        """The config's train / val splits, prepared once per session (rank 0 first, as it may generate them)."""
        if self._splits is None:
            from ghostq.detect.data import prepare

            self._barrier(not self.is_main)
            self._splits = prepare.prepare_data(self.cfg)
            if self.is_main:
                d = self.cfg.data
                prepare.write_split(self.run / "split.json", self._splits, self.cfg.run.seed, d.val_frac)
            self._barrier(self.is_main)
        return self._splits

    def _barrier(self, when: bool) -> None:
        if when and self.dist is not None and self.dist.enabled:
            import torch.distributed

            torch.distributed.barrier()

    def digest(self, stage: str, *extra: str, cfg: Config | None = None) -> str:
        """The stage's identity: the hash of its config sections (of `cfg`, a variant of the session's, when
        given), plus `extra` (e.g. the data fingerprint)."""
        return ":".join([config_hash(cfg or self.cfg, STAGE_SECTIONS[stage]), *extra])

    def is_current(self, stage: str, digest: str, inputs: list[Path] | None = None, force: bool = False) -> bool:
        """True when the stage finished with this digest, the same inputs and intact artifacts (never if forced)."""
        return not force and self.run.is_current(stage, digest, inputs)

    @contextmanager
    def record(self, stage: str, digest: str, inputs: list[Path] | None = None) -> Iterator[StageRecord]:
        """The stage's manifest entry: running, then done with its artifacts' hashes, or failed."""
        with self.run.stage(stage, digest, inputs) as rec:
            yield rec

    def require_same_config(self, stages: list[str]) -> None:
        """Stop before any work when the config differs from `config.yaml` where a finished stage was built."""
        if self.is_main:
            self.run.require_same_config(self.cfg.model_dump(mode="json"), {s: STAGE_SECTIONS[s] for s in stages})


@contextmanager
def session(cfg: Config, command: str, *, device: bool = True, given: Session | None = None) -> Iterator[Session]:
    """`given` when a caller (`ghostq run`) already holds one; else a new session for `command`: the run folder
    locked on rank 0 and, with `device`, the device picked, threads set and the DDP process group joined (and
    left on exit)."""
    if given is not None:
        yield given
        return
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes, so only it locks
    run = RunDir(cfg.run_dir)
    with ExitStack() as stack:
        if is_main:
            stack.enter_context(run.lock(command))
        sess = Session(cfg, run, is_main)
        if device:
            _join_devices(sess, stack)
        yield sess


def _join_devices(sess: Session, stack: ExitStack) -> None:
    """Pick the device, set the threads and join the process group torchrun describes; leave it on exit."""
    import torch

    from ghostq.detect.builders import pick_device
    from ghostq.detect.distributed import cleanup_distributed, init_distributed

    dev = pick_device(sess.cfg.train.device)
    if sess.cfg.train.threads:
        torch.set_num_threads(sess.cfg.train.threads)
    joined_before = torch.distributed.is_available() and torch.distributed.is_initialized()
    info = init_distributed(dev)
    if not joined_before:  # leave only a group this session joined
        stack.callback(cleanup_distributed, info)
    if info.enabled and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
    sess.device, sess.dist, sess.is_main = dev, info, info.is_main


def read_json(path: Path) -> dict[str, Any]:
    """A stage's JSON artifact (metrics of a skipped stage); empty when absent."""
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
