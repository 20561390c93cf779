"""Progress into a log (no terminal): plain flushed lines per epoch and every N steps, never a silent run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import ghostq.cli  # noqa: F401  (registers the commands)
from ghostq.cli.app import app
from ghostq.core.errors import GhostqError
from ghostq.core.progress import LoopProgress, count_progress, log_every, progress_style

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.synthetic.images=12",
    "data.img_size=96",
    "data.synthetic.size=96",
    "train.batch_size=4",
    "train.threads=1",
]
TIMES = r"\| [0-9.]+ img/s elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$"


def _epoch_line(name: str, epoch: int, epochs: int) -> re.Pattern[str]:
    return re.compile(
        rf"^{name} epoch {epoch}/{epochs} done step (\d+)/(\d+) loss [-0-9.e+]+ .*cls [-0-9.e+]+ .*{TIMES}"
    )


@pytest.fixture(autouse=True)
def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GHOSTQ_PROGRESS", raising=False)
    monkeypatch.delenv("GHOSTQ_PROGRESS_EVERY", raising=False)
    torch.set_num_threads(1)


def test_training_into_a_log_prints_a_line_per_epoch_and_per_step(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTQ_PROGRESS_EVERY", "1")
    result = CliRunner().invoke(
        app, ["train", str(REPO / "configs" / "smoke.yaml"), f"run.root={tmp_path}", *TINY, "train.epochs=2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for epoch in (1, 2):
        found = [m for line in lines if (m := _epoch_line("train", epoch, 2).match(line))]
        assert len(found) == 1, result.output
        done, steps = map(int, found[0].groups())
        assert done == steps >= 2
        # every=1: a line for each step before the last (the epoch line stands for the last)
        step_lines = [line for line in lines if re.match(rf"^train epoch {epoch}/2 step \d+/{steps} loss ", line)]
        assert [int(re.search(r"step (\d+)/", s).group(1)) for s in step_lines] == list(range(1, steps))
        assert all(re.search(TIMES, s) for s in step_lines)
    # the epoch lines come in order, each before its validation line
    order = [i for i, line in enumerate(lines) if line.startswith(("train epoch 1/2 done", "epoch 1: val mAP50",
                                                                    "train epoch 2/2 done", "epoch 2: val mAP50"))]
    assert [lines[i].split()[:3] for i in order] == [
        ["train", "epoch", "1/2"], ["epoch", "1:", "val"], ["train", "epoch", "2/2"], ["epoch", "2:", "val"]
    ]
    # first use of the synthetic set is shown too: a final count line
    assert any(re.match(r"^synth \S+ 12/12 \| ", line) for line in lines), result.output


def test_qat_loop_prints_epoch_lines(tmp_path: Path) -> None:
    from ghostq.compress.qat import train_quantized
    from ghostq.core.compress_config import CompressConfig
    from ghostq.core.config import load_config
    from ghostq.detect.builders import build_model_from_config
    from ghostq.detect.data.prepare import prepare_data
    from ghostq.detect.distributed import DistInfo

    cfg = load_config(REPO / "configs" / "smoke.yaml", [f"run.root={tmp_path}", *TINY])
    splits = prepare_data(cfg)
    model = build_model_from_config(cfg, len(splits.classes))
    ccfg = CompressConfig(epochs=2, ema=False)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        train_quantized(cfg, ccfg, model, None, splits, DistInfo(), torch.device("cpu"), distill=False)
    lines = buf.getvalue().splitlines()
    for epoch in (1, 2):
        assert sum(bool(_epoch_line("compress", epoch, 2).match(line)) for line in lines) == 1, buf.getvalue()
        assert any(line.startswith(f"compress epoch {epoch}: loss ") and "val mAP50" in line for line in lines)


def test_loop_progress_lines_every_n_steps_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    with LoopProgress("train", epochs=3, steps_per_epoch=5, start_epoch=1, every=2) as p:
        assert p.style == "lines"  # pytest's captured stdout is no terminal
        p.begin_epoch(1)
        for _ in range(5):
            p.step(4, {"loss": 1.5, "cls": 0.25})
        p.end_epoch({"loss": 1.25, "cls": 0.125})
        p.print("a message")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "train epoch 2/3 step 2/5 loss 1.5 cls 0.25",
        "train epoch 2/3 step 4/5 loss 1.5 cls 0.25",
        "train epoch 2/3 done step 5/5 loss 1.25 cls 0.125",
        "a message",
    ]
    # half of the run's steps (epochs 2 and 3 of 3) are done: the ETA equals the elapsed time (to a second)
    elapsed, eta = re.search(r"elapsed (\S+) eta (\S+)$", lines[2]).groups()
    assert abs(_seconds(elapsed) - _seconds(eta)) <= 1


def test_loop_progress_time_interval_forces_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    with LoopProgress("train", epochs=1, steps_per_epoch=10, every=1000, interval_s=0.0) as p:
        p.begin_epoch(0)
        p.step(1, {"loss": 1.0})
        p.step(1, {"loss": 1.0})
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_disabled_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with LoopProgress("train", epochs=1, steps_per_epoch=2, enabled=False) as p:
        p.begin_epoch(0)
        p.step(1, {"loss": 1.0})
        p.end_epoch({"loss": 1.0})
    assert capsys.readouterr().out == ""


def test_count_progress_lines_and_final_line(capsys: pytest.CaptureFixture[str]) -> None:
    with count_progress("synth", 7, every=3) as cb:
        for i in range(7):
            cb(i + 1, 7)
    assert [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines()] == [
        "synth 3/7", "synth 6/7", "synth 7/7"
    ]


def test_styles_forced_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTQ_PROGRESS", "off")
    assert progress_style() == "off"
    monkeypatch.setenv("GHOSTQ_PROGRESS", "LINES")
    assert progress_style() == "lines"
    monkeypatch.setenv("GHOSTQ_PROGRESS_EVERY", "7")
    assert log_every() == 7 and log_every(3) == 3


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("GHOSTQ_PROGRESS", "sparkles", "GHOSTQ_PROGRESS='sparkles': expected one of bar, lines, off"),
        ("GHOSTQ_PROGRESS_EVERY", "0", "GHOSTQ_PROGRESS_EVERY='0': expected a whole number of steps >= 1"),
        ("GHOSTQ_PROGRESS_EVERY", "ten", "GHOSTQ_PROGRESS_EVERY='ten': expected a whole number of steps >= 1"),
        ("GHOSTQ_PROGRESS_EVERY", "-5", "GHOSTQ_PROGRESS_EVERY='-5': expected a whole number of steps >= 1"),
    ],
)
def test_bad_progress_settings_are_one_line_errors(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                                   message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(GhostqError) as err:
        LoopProgress("train", epochs=1, steps_per_epoch=1)
    assert str(err.value) == message


def test_bad_every_argument_is_one_line_error() -> None:
    with pytest.raises(GhostqError, match=r"^progress: every must be >= 1 step, got 0$"):
        log_every(0)


def test_bad_progress_setting_through_cli_is_red_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from ghostq.cli import main

    monkeypatch.setenv("GHOSTQ_PROGRESS", "sparkles")
    monkeypatch.setattr("sys.argv", ["ghostq", "train", str(REPO / "configs" / "smoke.yaml"), f"run.root={tmp_path}",
                                     *TINY])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = capsys.readouterr().err  # the CLI's console writes to stderr
    assert err.splitlines() == ["error: GHOSTQ_PROGRESS='sparkles': expected one of bar, lines, off"]
    assert not (tmp_path / "smoke" / "fp" / "best.pt").exists()


def _seconds(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    return h * 3600 + m * 60 + s
