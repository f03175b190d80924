"""Fewer frames per session while the server is behind, so every page's lag stays bounded.

Each session asks for a frame ``frame_rate`` times a second. A process with more sessions than
its core can serve at that rate falls behind: Bokeh's callbacks have no backpressure, so they
queue, and every page's lag grows with the queue. A probe measures how late the event loop
runs a timer; while it runs late, each session ticks n times less often, n stepping up until
the loop keeps time again (up to :data:`MAX_STRIDE`). Nothing is lost by a longer frame: the
next one brings everything since the session's cursor, so pages stay complete and only update
less often.
"""

from __future__ import annotations

import math
import time

PROBE_SECONDS = 0.05
MAX_STRIDE = 5
"""At worst a session updates at a fifth of the frame rate (once a second at the default)."""
BEHIND, CAUGHT_UP = 0.06, 0.02
"""Smoothed loop delay (s) above which frames thin out, and below which they come back."""
THIN_EVERY, THICKEN_EVERY = 0.5, 2.0
"""Seconds between steps of the stride: quick to thin, slow to believe the loop caught up."""
SMOOTHING = 0.3


class FramePacing:
    """The loop's smoothed delay and, from it, the stride: a session's frame lasts that many.

    The stride steps up while the loop is more than :data:`BEHIND` late and down once it is
    less than :data:`CAUGHT_UP` late, so a busy server settles where its sessions' frames
    just fit in its core, with the loop a few tens of ms behind rather than seconds.
    """

    def __init__(self, frame_rate: float) -> None:
        self.frame_seconds = 1.0 / frame_rate
        self.delay = 0.0
        self.stride = 1
        self._expected: float | None = None
        self._changed_at = -math.inf

    def probe(self) -> None:
        """Run every :data:`PROBE_SECONDS` by a timer on the loop: how late did it run?"""
        now = time.monotonic()
        late = 0.0 if self._expected is None else max(0.0, now - self._expected)
        self._expected = now + PROBE_SECONDS
        self.observe(late, now)

    def observe(self, late: float, now: float) -> None:
        self.delay += SMOOTHING * (late - self.delay)
        since = now - self._changed_at
        if self.delay > BEHIND and self.stride < MAX_STRIDE and since >= THIN_EVERY:
            self.stride += 1
            self._changed_at = now
        elif self.delay < CAUGHT_UP and self.stride > 1 and since >= THICKEN_EVERY:
            self.stride -= 1
            self._changed_at = now

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
