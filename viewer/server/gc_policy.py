"""Keep Python's full garbage collections from pausing every session at once.

A session's dashboard is ~370 Bokeh models and tens of thousands of Python objects tied in
reference cycles, alive as long as the session. A full collection walks all of them: with 200
sessions open one took 1.35 s, five ran in 30 s, and every session's frames waited behind
them (p99 lag 1.5 s). Objects that live as long as their session gain nothing from being walked
over and over, so once sessions have opened they are frozen (``gc.freeze``: everything tracked
so far leaves the collector's view, in constant time), and the collections that remain walk
only what is new.

Frozen objects are never collected, though, and a closed session's dashboard is garbage held
in cycles. So when enough sessions have closed since the last reclaim (a quarter as many as
are still open, and at least one) everything is unfrozen, collected once, and frozen again:
one pause as long as a full collection was, but only as laptops leave, not every few seconds.
"""

from __future__ import annotations

import gc


class FrozenSessions:
    """Freezes after sessions open; unfreezes, collects and refreezes after enough close."""

    def __init__(self) -> None:
        self.opened_since = 0
        self.closed_since = 0
        self.reclaimed = 0

    def opened(self) -> None:
        self.opened_since += 1

    def closed(self) -> None:
        self.closed_since += 1

    def check(self, sessions_open: int) -> str | None:
        """Run every few seconds on the server's loop; says what it did, if anything."""
        if self.closed_since and self.closed_since >= max(1, sessions_open // 4):
            closed = self.closed_since
            gc.unfreeze()
            freed = gc.collect()
            gc.freeze()
            self.opened_since = self.closed_since = 0
            self.reclaimed += freed
            return f"{closed} closed sessions reclaimed: {freed} objects freed"
        if self.opened_since:
            opened = self.opened_since
            gc.freeze()
            self.opened_since = 0
            return f"{opened} new sessions frozen out of garbage collection"
        return None
