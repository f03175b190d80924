"""Logging for things that can happen thousands of times a second (drops, garbage input)."""

from __future__ import annotations

import logging
import time
from collections import Counter


class RateLimitedLog:
    """Logs the first event of each reason at once, then one summary per ``interval`` seconds.

    A flood of bad input must stay visible without turning the log into the bottleneck.
    """

    def __init__(self, logger: logging.Logger, what: str, interval: float = 5.0) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval) < self.interval:
            self._suppressed[reason] += 1
            return
        extra = self._suppressed.pop(reason, 0)
        suffix = f" (+{extra} more since last report)" if extra else ""
        self.logger.warning("%s: %s%s", self.what, detail[:300], suffix)
        self._last[reason] = now
