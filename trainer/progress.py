"""A one-line progress bar on the terminal, or a log line now and then when not on one."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("trainer")


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TerminalLine:
    """One line redrawn in place on a terminal, or a log line now and then elsewhere.

    The training bar, a replay's progress and a recording's status all go through it:
    :meth:`due` says whether to redraw yet (``interval`` on a terminal, ``quiet_interval``
    otherwise, never when disabled), :meth:`show` draws, with a bar when the fraction done is
    known. With ``logger`` None nothing is printed off a terminal.
    """

    BAR = 24

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: TextIO = sys.stderr,
        interval: float = 0.2,
        quiet_interval: float = 10.0,
        logger: logging.Logger | None = log,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.enabled = enabled and (self.tty or logger is not None)
        self.interval = interval if self.tty else quiet_interval
        self.logger = logger
        self._last = 0.0
        self._shown = False

    def due(self) -> bool:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return False
        self._last = now
        return True

    def show(self, line: str, done: float | None = None) -> None:
        if not self.tty:
            if self.logger is not None:
                self.logger.info("%s", line)
            return
        if done is not None:
            filled = int(min(max(done, 0.0), 1.0) * self.BAR)
            line = f"[{'#' * filled}{'.' * (self.BAR - filled)}] {line}"
        self.stream.write(f"\r{line}\033[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the line drawn in place, so what is printed next starts on its own."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class ProgressBar:
    def __init__(
        self,
        total_steps: int,
        epochs: int,
        *,
        enabled: bool = True,
        stream: TextIO = sys.stderr,
        interval: float = 0.2,
    ) -> None:
        self.total_steps = max(total_steps, 1)
        self.epochs = epochs
        self.line = TerminalLine(enabled=enabled, stream=stream, interval=interval)
        self._first: tuple[float, int, int] | None = None

    def update(self, step: int, epoch: int, loss: float, accuracy: float, samples: int) -> None:
        if not self.line.due():
            return
        now = time.monotonic()
        if self._first is None:  # rates count from the first step this run took
            self._first = (now, step, samples)
            return
        first_time, first_step, first_samples = self._first
        since = max(now - first_time, 1e-9)
        steps_per_second = (step - first_step) / since
        eta = (self.total_steps - step) / steps_per_second if steps_per_second else 0.0
        self.line.show(
            f"epoch {epoch + 1}/{self.epochs} step {step}/{self.total_steps} "
            f"loss {loss:.4f} acc {accuracy:6.1%} {(samples - first_samples) / since:,.0f} "
            f"samples/s ETA {format_duration(eta)}",
            done=step / self.total_steps,
        )

    def close(self) -> None:
        self.line.close()
