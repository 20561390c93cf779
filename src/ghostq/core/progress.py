"""Progress of long loops: a rich bar on a terminal, plain flushed lines in a log. The one place that decides.

Output that goes to a file or a pipe (nohup, a batch job, CI) gets no bar (rich would draw it only at the end);
it gets one line per epoch, and one every ``every`` steps or ``interval_s`` seconds, whichever comes first::

    train epoch 2/5 step 40/120 loss 1.234 cls 0.4567 | 52.1 img/s elapsed 0:01:10 eta 0:05:12
    train epoch 2/5 done step 120/120 loss 1.198 cls 0.4412 | 52.3 img/s elapsed 0:02:41 eta 0:04:02

``GHOSTQ_PROGRESS`` forces a style (``bar``, ``lines`` or ``off``); ``GHOSTQ_PROGRESS_EVERY`` sets ``every``
(steps, default 50). Nothing here imports torch: data tools and deployment use it too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from ghostq.core.errors import GhostqError

STYLES = ("bar", "lines", "off")
DEFAULT_EVERY = 50
DEFAULT_INTERVAL_S = 30.0


def progress_style(enabled: bool = True) -> str:
    """``bar`` when stdout is a terminal, ``lines`` when it is a file or pipe, ``off`` when not enabled;
    ``GHOSTQ_PROGRESS`` overrides the first two."""
    if not enabled:
        return "off"
    forced = os.environ.get("GHOSTQ_PROGRESS", "").strip().lower()
    if forced:
        if forced not in STYLES:
            raise GhostqError(f"GHOSTQ_PROGRESS={forced!r}: expected one of {', '.join(STYLES)}")
        return forced
    isatty = getattr(sys.stdout, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def log_every(every: int | None = None) -> int:
    """Steps between two progress lines: ``every`` when given, else ``GHOSTQ_PROGRESS_EVERY``, else 50."""
    if every is not None:
        if every < 1:
            raise GhostqError(f"progress: every must be >= 1 step, got {every}")
        return every
    raw = os.environ.get("GHOSTQ_PROGRESS_EVERY", "").strip()
    if not raw:
        return DEFAULT_EVERY
    if not raw.isdigit() or int(raw) < 1:
        raise GhostqError(f"GHOSTQ_PROGRESS_EVERY={raw!r}: expected a whole number of steps >= 1")
    return int(raw)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` of a non-negative duration (as rich shows it)."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_terms(terms: Mapping[str, float]) -> str:
    """``loss 1.234 cls 0.4567``: each term to 4 significant digits, in the given order."""
    return " ".join(f"{k} {v:.4g}" for k, v in terms.items())


def _emit(line: str) -> None:
    # sys.stdout looked up at each call: a test runner or a redirect may have replaced it since import
    print(line, file=sys.stdout, flush=True)


class LoopProgress:
    """Progress of an epoch loop: ``begin_epoch``, ``step`` per batch, ``end_epoch``; ``print`` for messages.

    Args:
        name: what runs (``train``, ``compress``): the first word of every line.
        epochs: epochs of the whole run (shown as ``epoch e/epochs``).
        steps_per_epoch: batches per epoch.
        start_epoch, stop_epoch: the epochs this process runs, ``range(start_epoch, stop_epoch)`` (0-based;
            ``start_epoch > 0`` on resume; ``stop_epoch`` None: to ``epochs``): ETA counts the steps left in them.
        enabled: False shows nothing (other ranks, ``show_progress=False``); ``print`` still prints.
        every: steps between lines in a log (default ``log_every()``); interval_s: at most this long without one.
        unit: what ``step(items)`` counts, for the rate (``img/s``).
    """

    def __init__(
        self,
        name: str,
        epochs: int,
        steps_per_epoch: int,
        *,
        start_epoch: int = 0,
        stop_epoch: int | None = None,
        enabled: bool = True,
        every: int | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        unit: str = "img",
    ) -> None:
        self.name, self.epochs, self.steps = name, epochs, max(0, steps_per_epoch)
        self.style = progress_style(enabled)
        self.every, self.interval_s, self.unit = log_every(every), interval_s, unit
        self.total = max(0, (epochs if stop_epoch is None else stop_epoch) - start_epoch) * self.steps
        self.done_steps, self.items = 0, 0
        self.epoch, self.step_in_epoch = start_epoch, 0
        self.t0 = self.last_line = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> LoopProgress:
        if self.style == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._bar.start()
        self.t0 = self.last_line = time.monotonic()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def begin_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (0-based)."""
        self.epoch, self.step_in_epoch = epoch, 0
        if self._bar is not None:
            self._task = self._bar.add_task(f"{self.name} epoch {epoch + 1}/{self.epochs}", total=self.steps, info="")

    def step(self, items: int, terms: Mapping[str, float]) -> None:
        """One batch of ``items`` done; ``terms``: the running means to show (loss terms)."""
        self.done_steps += 1
        self.step_in_epoch += 1
        self.items += items
        if self.style == "bar" and self._task is not None:
            self._bar.update(self._task, advance=1, info=format_terms(terms))
        elif self.style == "lines" and self.step_in_epoch < self.steps:  # the epoch's last step: end_epoch's line
            now = time.monotonic()
            if self.step_in_epoch % self.every == 0 or now - self.last_line >= self.interval_s:
                self._line("", terms)

    def end_epoch(self, terms: Mapping[str, float]) -> None:
        """The epoch is over: one line in a log, with the epoch's mean ``terms``."""
        if self.style == "lines":
            self._line(" done", terms)

    def print(self, text: str) -> None:
        """A message between progress lines (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        elif self.style != "off":
            _emit(text)

    def _line(self, tag: str, terms: Mapping[str, float]) -> None:
        now = time.monotonic()
        self.last_line = now
        elapsed = now - self.t0
        rate = self.items / elapsed if elapsed > 0 else 0.0
        eta = elapsed / self.done_steps * max(0, self.total - self.done_steps) if self.done_steps else 0.0
        shown = format_terms(terms)
        _emit(
            f"{self.name} epoch {self.epoch + 1}/{self.epochs}{tag} step {self.step_in_epoch}/{self.steps}"
            f"{' ' + shown if shown else ''} | {rate:.1f} {self.unit}/s "
            f"elapsed {format_duration(elapsed)} eta {format_duration(eta)}"
        )


@contextmanager
def count_progress(
    label: str,
    total: int,
    *,
    enabled: bool = True,
    every: int | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    transient: bool = True,
) -> Iterator[Callable[[int, int], None]]:
    """A ``callback(done, total)`` for loops over items (data synth, tiling): a bar on a terminal; in a log a
    line every ``every`` items or ``interval_s`` seconds and one at the end: ``synth 50/200 | 12.5/s ...``."""
    style = progress_style(enabled)
    if style == "bar":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=transient) as bar:
            task = bar.add_task(label, total=total)
            yield lambda done, n: bar.update(task, completed=done, total=n)
        return
    if style == "off":
        yield lambda done, n: None
        return
    step = log_every(every)
    t0 = last = time.monotonic()
    state = {"done": 0, "n": total, "last": last, "shown": -1}

    def show(done: int, n: int) -> None:
        elapsed = time.monotonic() - t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (n - done) / rate if rate > 0 else 0.0
        _emit(f"{label} {done}/{n} | {rate:.1f}/s elapsed {format_duration(elapsed)} eta {format_duration(eta)}")
        state["last"], state["shown"] = time.monotonic(), done

    def callback(done: int, n: int) -> None:
        state["done"], state["n"] = done, n
        if done >= n or done % step == 0 or time.monotonic() - state["last"] >= interval_s:
            show(done, n)

    yield callback
    if state["shown"] != state["done"] and state["done"] > 0:
        show(state["done"], state["n"])
