"""Counters one viewer process keeps about itself, for ``/metrics``, ``/healthz`` and the header.

Sessions and the hub write them; the operations endpoints read them. All writers except the
hub's ``received`` counter run on the server's event loop, so plain attributes suffice.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

LAG_WINDOW = 4096
"""Recent trainer-to-page lags (one a frame) kept for the percentiles."""


@dataclass
class ViewerStats:
    started_at: float = field(default_factory=time.time)
    sessions_open: int = 0
    sessions_total: int = 0
    updates_sent: int = 0
    pages_ready: int = 0
    """Audience pages built ahead and not yet taken (``view --prebuild``)."""
    frames_encoded: int = 0
    """Frames encoded once for every following session (:mod:`viewer.broadcast`)."""
    pages_made: int = 0
    pages_shared: int = 0
    """First pages serialized for a session, and handed on to another as they were."""
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    gc_longest: float = 0.0
    drawings: Counter[str] = field(default_factory=Counter)
    """The pads' drawings ``read``, and those dropped, by why: ``size``, ``malformed`` (after
    Bokeh applied them), ``rate`` (read late, once, instead) (:mod:`viewer.drawing.strokes`)."""
    _gc_started: float = 0.0

    def session_opened(self) -> None:
        self.sessions_open += 1
        self.sessions_total += 1

    def session_closed(self) -> None:
        self.sessions_open = max(0, self.sessions_open - 1)

    def update_sent(self, lag_seconds: float | None, sessions: int = 1) -> None:
        """One update pushed to ``sessions`` sessions at once; ``lag_seconds`` since the trainer
        sent it (one figure: the same bytes went to each)."""
        self.updates_sent += sessions
        if lag_seconds is not None and sessions:
            self.lags.append(max(0.0, lag_seconds))

    def watch_gc(self) -> None:
        """Time Python's garbage collections: a full one stops every session at once."""
        if self._gc_pause not in gc.callbacks:
            gc.callbacks.append(self._gc_pause)

    def _gc_pause(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        generation = info.get("generation", 2)
        self.gc_collections[generation] += 1
        self.gc_seconds[generation] += took
        self.gc_longest = max(self.gc_longest, took)

    def lag_percentiles(self) -> dict[str, float]:
        """p50/p90/p99 of recent lags in seconds (empty when nothing was sent yet)."""
        if not self.lags:
            return {}
        values = np.percentile(np.fromiter(self.lags, float), [50, 90, 99])
        return {"p50": float(values[0]), "p90": float(values[1]), "p99": float(values[2])}


stats = ViewerStats()
"""This process's counters."""
