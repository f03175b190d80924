"""What feeds a viewer process's sessions: a :class:`RunSource`, one per process.

Three kinds: the live broker subscription (:class:`.live.Hub`), a recording played back on a
clock (:class:`.playback.ReplayHub`), and one finished run for a page saved once
(:class:`.fixed.FixedRun`, for ``mnist-live export --html``). The dashboard reads runs from
whichever it is given, the same way; :func:`install` keeps the process's one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from viewer.runs.state import RunHistory


class RunSource(Protocol):
    """The runs a session can show, and the source's own health for ``/healthz``."""

    lock: threading.Lock
    """Held while reading a run: the source's thread folds messages into them meanwhile."""

    @property
    def current(self) -> RunHistory | None:
        """The run a session shows unless it pinned another (the newest started)."""

    def run(self, run_id: str | None) -> RunHistory | None:
        """The run with this id, if it is still held."""

    def previous(self, run: RunHistory) -> RunHistory | None:
        """The run before ``run``, drawn faintly under it (None: nothing to compare with)."""

    def comparable(self) -> dict[str, RunHistory]:
        """Every run a comparison may overlay, by a name unique among them, oldest first
        (``/compare``, :mod:`viewer.compare`)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def broker_silence(self) -> float | None:
        """Seconds since the broker was last heard from (None: no broker behind this source).
        Called on every frame of every session: cheap, no lock."""

    def figures(self) -> dict[str, Any]:
        """``running``, ``received``, ``rejected``, ``last_message_age``: for ``/healthz``."""


_source: RunSource | None = None


def install(make: Callable[[], RunSource]) -> RunSource:
    """What this process's sessions show: made (and started) by ``make`` the first time, the
    same one after that (Bokeh may load the app more than once)."""
    global _source
    if _source is None:
        _source = make()
    return _source


def current() -> RunSource:
    if _source is None:
        raise RuntimeError("the viewer hub is not running; serve the app with 'mnist-live view'")
    return _source


def stop() -> None:
    global _source
    if _source is not None:
        _source.stop()
        _source = None
