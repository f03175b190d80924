"""Progress on one line: a tqdm bar on a terminal, a log line now and then anywhere else.

The training bar, a download, a replay's position and a recording's status all use
:class:`Progress`. On a terminal it is a tqdm bar (rate and ETA by tqdm), redrawn at most
every ``interval`` seconds, with the caller's words after it. Off a terminal (a log file, CI,
a pipe) a redrawn line would be noise, so the same words go to ``logger`` as one line every
``quiet_interval`` seconds, or nowhere when ``logger`` is None.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm


class Progress:
    """One progress line; ``total`` in ``unit`` s (None: a count with no end). ``bar`` True
    draws the bar even off a terminal, False never (None: on a terminal only)."""

    def __init__(
        self,
        total: float | None = None,
        *,
        unit: str = "it",
        unit_scale: bool = False,
        description: str = "",
        enabled: bool = True,
        bar: bool | None = None,
        stream: TextIO | None = None,
        interval: float = 0.2,
        quiet_interval: float = 10.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if bar is None else bar
        self.logger = logger
        self.enabled = enabled and (self.tty or logger is not None)
        self.interval = interval if self.tty else quiet_interval
        self.clock = clock
        self._last: float | None = None
        self.total, self.unit, self.unit_scale = total, unit, unit_scale
        self.description = description or None
        self.bar: tqdm | None = None

    def due(self) -> bool:
        """Whether to draw now (the first call is due; then every ``interval``)."""
        now = self.clock()
        if not self.enabled or (self._last is not None and now - self._last < self.interval):
            return False
        self._last = now
        return True

    def show(self, done: float, words: str) -> None:
        """Draw ``done`` units so far, with ``words`` after the bar (or log ``words``)."""
        if not self.tty:
            if self.logger is not None:
                self.logger.info("%s", words)
            return
        if self.bar is None:  # drawn from its first update, not before (log lines come first)
            self.bar = tqdm(
                total=self.total,
                unit=self.unit,
                unit_scale=self.unit_scale,
                desc=self.description,
                file=self.stream,
                mininterval=0,
                miniters=1,
                dynamic_ncols=True,
                leave=True,
            )
        self.bar.set_postfix_str(words, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self, done: float | None = None) -> None:
        """End the line (at ``done``, if given), so what is printed next starts on its own."""
        if self.bar is not None:
            if done is not None:
                self.bar.update(done - self.bar.n)
            self.bar.close()
            self.bar = None
