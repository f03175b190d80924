"""Fewer frames per session while the server is behind, so every page's lag stays bounded.

Each session asks for a frame ``frame_rate`` times a second. A process with more sessions than
its core can serve at that rate falls behind: Bokeh's callbacks have no backpressure, so they
queue, and every page's lag grows with the queue. A probe measures how late the event loop
runs a timer; while it runs late, each session sends only every n-th frame, n growing with the
delay (up to :data:`MAX_STRIDE`). Nothing is lost by a skipped frame: the next one brings
everything since the session's cursor, so pages stay complete and only update less often.
"""

from __future__ import annotations

import time

PROBE_SECONDS = 0.05
MAX_STRIDE = 5
"""At worst a session updates at a fifth of the frame rate (once a second at the default)."""
RISE, FALL = 0.5, 0.1
"""Smoothing of the delay: quick to see the loop fall behind, slow to believe it caught up."""


class FramePacing:
    """The loop's smoothed delay and, from it, how many frames a session makes of each one."""

    def __init__(self, frame_rate: float) -> None:
        self.frame_seconds = 1.0 / frame_rate
        self.delay = 0.0
        self.stride = 1
        self._expected: float | None = None

    def probe(self) -> None:
        """Run every :data:`PROBE_SECONDS` by a timer on the loop: how late did it run?"""
        now = time.monotonic()
        late = 0.0 if self._expected is None else max(0.0, now - self._expected)
        self._expected = now + PROBE_SECONDS
        self.observe(late)

    def observe(self, late: float) -> None:
        weight = RISE if late > self.delay else FALL
        self.delay += weight * (late - self.delay)
        # Half a frame late is the first sign: the frames already queued are as late again.
        self.stride = min(MAX_STRIDE, 1 + int(self.delay / (self.frame_seconds / 2)))

    def skip(self, frame: int) -> bool:
        """Whether a session leaves out its ``frame``-th frame."""
        return self.stride > 1 and frame % self.stride != 0

    def updates_per_second(self) -> float:
        return 1.0 / (self.frame_seconds * self.stride)


_pacing: FramePacing | None = None


def current(frame_rate: float) -> FramePacing:
    """This process's pacing (one loop, one probe), made on first use."""
    global _pacing
    if _pacing is None or _pacing.frame_seconds != 1.0 / frame_rate:
        _pacing = FramePacing(frame_rate)
    return _pacing


def figures() -> tuple[float, int]:
    """The loop's smoothed delay in seconds and the frame stride, for /metrics."""
    return (_pacing.delay, _pacing.stride) if _pacing is not None else (0.0, 1)
