"""Progress lines: a tqdm bar on a terminal, a log line every so often anywhere else."""

from __future__ import annotations

import io
import logging

from protocol.cli.durations import format_duration
from protocol.cli.progress import Progress
from trainer.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_it_is_a_tqdm_bar_with_the_words_after_it() -> None:
    screen = Terminal()
    line = Progress(10, unit="step", stream=screen, interval=0.0)
    for done in range(1, 11):
        if line.due():
            line.show(done, f"loss {1 / done:.2f}")
    line.close()
    text = screen.getvalue()
    assert "100%" in text and "10/10" in text and "loss 0.10" in text
    assert text.endswith("\n"), "what comes next starts on its own line"


def test_off_a_terminal_it_logs_a_line_every_quiet_interval(caplog) -> None:
    clock, log = Clock(), logging.getLogger("test.progress")
    line = Progress(100, stream=io.StringIO(), quiet_interval=10.0, logger=log, clock=clock)
    caplog.set_level(logging.INFO, logger="test.progress")
    shown = []
    for second in range(35):
        clock.now = 100.0 + second
        if line.due():
            line.show(second, f"at {second}")
            shown.append(second)
    assert shown == [0, 10, 20, 30]
    assert [r.getMessage() for r in caplog.records] == ["at 0", "at 10", "at 20", "at 30"]
    assert line.bar is None


def test_without_a_logger_nothing_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    line = Progress(5, stream=stream)
    assert not line.due()
    line.close()
    assert stream.getvalue() == ""


def test_the_training_bar_says_step_and_eta_in_its_log_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger="trainer")
    bar = ProgressBar(1000, 5, stream=io.StringIO())
    bar.line.interval = 0.0  # every update is due
    bar.update(0, 0, 2.0, 0.1, 0)
    bar.update(100, 0, 1.5, 0.5, 3200)
    (record,) = [r for r in caplog.records if r.name == "trainer"]
    assert record.getMessage().startswith("epoch 1/5 step 100/1000 loss 1.5000 acc  50.0%")
    assert "samples/s ETA " in record.getMessage()


def test_one_duration_formatter() -> None:
    assert [format_duration(s) for s in (0, 5.9, 75, 3725)] == ["0:00", "0:05", "1:15", "1:02:05"]
    assert format_duration(65.25, decimals=1) == "1:05.2"
    assert format_duration(-3) == "0:00"
    assert [format_duration(s, words=True) for s in (5, 75, 3725)] == ["5s", "1m 15s", "1h 02m"]
