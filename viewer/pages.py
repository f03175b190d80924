"""Audience pages built ahead, so that a room opening the page at once does not wait for them.

Building a session's page is the largest part of opening one: Bokeh makes its ~330 models one
by one (~0.12 s of CPU here), then attaches them to the session's document. At the start of a
talk the whole room opens the page within a minute, and each of those builds queues behind the
others. So a viewer started with ``--prebuild N`` keeps N audience pages of its default look
built in advance: a new session takes one and only attaches it. Pages are built on the
server's event loop between frames, one every :data:`BUILD_EVERY` seconds (a frame may then
go out one build later), and not while sessions are opening, so refilling never competes with
the room it is for. Each page held costs ~2 MB.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from tornado.ioloop import PeriodicCallback

from viewer.dashboard import Page
from viewer.panels.looks import Look
from viewer.server.stats import stats

log = logging.getLogger("viewer")

BUILD_EVERY = 0.25
"""Seconds between two pages built ahead."""
QUIET = 2.0
"""Seconds since a session last opened before building resumes."""


class Pages:
    """Up to ``size`` pages of ``look`` built ahead, taken by sessions as they open."""

    def __init__(self, look: Look, size: int) -> None:
        self.look = look
        self.size = size
        self.ready: deque[Page] = deque()
        self.built = 0
        self._last_taken = 0.0
        self._filler = PeriodicCallback(self.build_one, 1000 * BUILD_EVERY)

    def start(self) -> None:
        """Build the first page now (before the server serves: the first session after a start
        or restart need not wait for one), the rest between frames."""
        if self.size > 0:
            self.build_one()
            self._filler.start()

    def stop(self) -> None:
        self._filler.stop()

    def take(self, look: Look) -> Page | None:
        """A page built ahead for a session of ``look``, if one is ready."""
        self._last_taken = time.monotonic()
        if look != self.look or not self.ready:
            return None
        page = self.ready.popleft()
        stats.pages_ready = len(self.ready)
        return page

    def build_one(self) -> None:
        """Build one more page if the pool is short and no session opened just now."""
        if len(self.ready) >= self.size or time.monotonic() - self._last_taken < QUIET:
            return
        self.ready.append(Page(self.look))
        self.built += 1
        stats.pages_ready = len(self.ready)
        if len(self.ready) == self.size:
            log.info("%d pages built ahead for sessions that open together", self.size)


_pages: Pages | None = None


def start(look: Look, size: int) -> Pages:
    """This process's pages built ahead (none when ``size`` is 0)."""
    global _pages
    if _pages is None:
        _pages = Pages(look, size)
        _pages.start()
    return _pages


def take(look: Look) -> Page | None:
    return _pages.take(look) if _pages is not None else None


def stop() -> None:
    global _pages
    if _pages is not None:
        _pages.stop()
        _pages = None
