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
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if self.tty else 10.0
        self.start = time.monotonic()
        self._last = 0.0
        self._first: tuple[float, int, int] | None = None

    def update(self, step: int, epoch: int, loss: float, accuracy: float, samples: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        done = step / self.total_steps
        if self._first is None:  # rates count from the first step this run took
            self._first = (now, step, samples)
            return
        first_time, first_step, first_samples = self._first
        since = max(now - first_time, 1e-9)
        steps_per_second = (step - first_step) / since
        eta = (self.total_steps - step) / steps_per_second if steps_per_second else 0.0
        line = (
            f"epoch {epoch + 1}/{self.epochs} step {step}/{self.total_steps} "
            f"loss {loss:.4f} acc {accuracy:6.1%} {(samples - first_samples) / since:,.0f} "
            f"samples/s ETA {format_duration(eta)}"
        )
        if self.tty:
            width = 24
            filled = int(done * width)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}\033[K")
            self.stream.flush()
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
