"""The training bar: steps done, with the epoch, loss, accuracy and samples/s beside it.

On a terminal it is a tqdm bar (:class:`protocol.cli.progress.Progress`); elsewhere a log line
every ten seconds, with the ETA in it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from protocol.cli.durations import format_duration
from protocol.cli.progress import Progress

log = logging.getLogger("trainer")


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
        self.line = Progress(
            self.total_steps,
            unit="step",
            enabled=enabled,
            stream=stream,
            interval=interval,
            logger=log,
        )
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
        speed = f"{(samples - first_samples) / since:,.0f} samples/s"
        figures = f"loss {loss:.4f} acc {accuracy:6.1%} {speed}"
        if self.line.tty:  # the bar shows the step and the ETA itself
            self.line.show(step, f"epoch {epoch + 1}/{self.epochs} {figures}")
            return
        steps_per_second = (step - first_step) / since
        eta = (self.total_steps - step) / steps_per_second if steps_per_second else 0.0
        self.line.show(
            step,
            f"epoch {epoch + 1}/{self.epochs} step {step}/{self.total_steps} {figures} "
            f"ETA {format_duration(eta)}",
        )

    def close(self) -> None:
        self.line.close()
