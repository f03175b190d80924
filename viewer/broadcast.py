"""One frame for every session: each change computed and serialized once per viewer process.

At a given moment nearly every session of a room shows the same thing, the newest run, so the
process keeps one *shadow* dashboard (a :class:`~viewer.dashboard.Dashboard` on a document no
browser sees) and one frame tick for all sessions. Each frame the shadow catches up with the
run; its changes touch only models that every session builds with the same id
(:mod:`viewer.panels.ids`), so they are encoded once, as one PATCH-DOC message, and that
message is written to the websocket of every session that follows the broadcast.

A following session's own document is not changed by the frames: the browser moves on, the
server-side copy stays as it was. It is brought up to the shadow's state, silently, only when
a browser pulls it whole (:func:`viewer.server.batching.on_pull`), which is when Bokeh reads
it; from then on the session receives every frame after that state. So code that reads a
following session's document on the server sees the state of its last pull (or of its
building, when its page came from the shared one), not what the browser shows; the dashboard
never reads it.

Joining is shared too: every audience document of one look is built with the same ids
(:mod:`viewer.panels.ids`), so the page a browser pulls first is made (walked, its data
thinned and encoded) once for every session of that look that opens within the next
:data:`PAGE_SECONDS`, the Clone pattern's snapshot: each such session is then sent the frames
it missed since the page was made (kept for that purpose) and follows. (Each reply still
writes the page's JSON text once, ~10 ms.) A following page's header shows the process's
figures (viewers, lag), not the session's own. A late joiner's curves come thinned to what the
plots draw (:func:`viewer.panels.curves.history`).

A session that pins a run while a newer one starts leaves the broadcast: its document is
brought silently to what its browser shows (the shadow's state), and from then on its own
frame tick draws its run, as every session did before. Unpinned, it is brought loudly to the
shadow's state and follows again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bokeh.core.types import ID
from bokeh.document import Document
from bokeh.document.events import DocumentPatchedEvent
from bokeh.models import ColumnDataSource, FactorRange
from bokeh.models.annotations import LegendItem, Title
from bokeh.models.widgets import Div
from bokeh.server.callbacks import PeriodicCallback as SessionPeriodicCallback
from tornado.ioloop import PeriodicCallback

from viewer.dashboard import Controls, Dashboard
from viewer.drawing.room import room
from viewer.panels.curves import history
from viewer.panels.ids import PREFIX, is_shared
from viewer.panels.pictures import compacted
from viewer.runs.columns import Cursor
from viewer.runs.state import CURVES
from viewer.server import batching
from viewer.server.settings import ViewerSettings
from viewer.server.stats import stats
from viewer.sources import RunSource

log = logging.getLogger("viewer")

SHARED_ATTRIBUTES: dict[type, str] = {
    ColumnDataSource: "data",
    Div: "text",
    FactorRange: "factors",
    Title: "text",  # "no sample yet" until there is one
    LegendItem: "visible",  # an entry shows with its data
}
"""What a frame may change on each kind of shared model."""


def _attribute(model: Any) -> str:
    for kind, attribute in SHARED_ATTRIBUTES.items():
        if isinstance(model, kind):
            return attribute
    raise TypeError(f"a frame never changes a {type(model).__name__}")


def _copied(value: Any) -> Any:
    """A value for another document: the shadow streams into its curve lists in place."""
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


PAGE_SECONDS = 1.0
"""How long a page serialized for one session serves others: at most this stale before the
frames since arrive (a room opening at once costs one serialization a second, not one per
frame)."""
RECENT_FRAMES = 25
"""Frames kept for sessions that start from a shared page (far more than a page's seconds
hold at the frame rate)."""

JOINING: dict[str, Callable[[Any], Any]] = {
    PREFIX + name: functools.partial(history, name) for name in CURVES
}
"""How a curve's history is given to a session that joins (thinned, as arrays), by model id;
a picture's rows are given as one key (:func:`viewer.panels.pictures.compacted`)."""


class Follower:
    """One session in the broadcast: which frame its browsers hold, or its own frame tick."""

    def __init__(
        self, broadcast: Broadcast, dashboard: Dashboard, controls: Controls | None
    ) -> None:
        self.broadcast = broadcast
        self.dashboard = dashboard
        self.controls = controls
        self.doc = dashboard.doc
        self.at: int | None = None
        """The frame its browsers hold (None: not pulled yet, or drawing its own frames)."""
        self.own_tick: SessionPeriodicCallback | None = None
        self.leaving = False
        self.pulls = 0
        look = dashboard.look
        self.page_key = (look.name, look.large, look.tools) if controls is None else None
        """Sessions with the same key have the same page (None: its own, with controls)."""

    @property
    def following(self) -> bool:
        return self.own_tick is None and not self.leaving

    def pulled(self, serialize: Callable[[], Any]) -> Any:
        """A browser pulls the document: give it the shadow's state (Bokeh's lock is held).

        The first pull of an audience session takes the page serialized for its look within
        the last second, if another session already had it made. Its own document's data is
        then left as built, but Bokeh is told its browser now holds every model (as its own
        serializer would have), so a later change of this session's refers to the sources
        rather than sending them again as built. Its pad is put back as built first: a page
        made from it serves others, and a client may have drawn before it pulled.
        """
        self.pulls += 1
        if not self.following:
            return serialize()
        if self.pulls == 1 and self.page_key is not None:
            pad = self.dashboard.page.pad
            if pad is not None:
                with batching.silently(self.doc):
                    pad.forget()
            page, self.at = self.broadcast.page(self.page_key, self.doc, serialize)
            self.doc.models.flush_synced()
            return page
        self.broadcast.copy_into(self.doc, loud=False)
        self.at = self.broadcast.frame
        return serialize()

    def refresh_controls(self) -> None:
        """Show the controls' state for the shown run (this session's own widgets)."""
        if self.controls is not None and self.own_tick is None:  # else its own tick does
            self.controls.refresh(self.broadcast.source.current)

    def leave(self) -> None:
        """Draw this session's own frames from now on (its pinned run left the broadcast)."""
        self.leaving, self.at = True, None
        self.doc.add_next_tick_callback(self._start_own_frames)

    def _start_own_frames(self) -> None:
        # The browser holds the frame before the shadow's latest (or this one): either way the
        # pinned run is drawn whole just below, and only what differs from this goes out.
        self.broadcast.copy_into(self.doc, loud=False)
        self.leaving = False
        if self.dashboard.pinned is None:  # unpinned meanwhile: follow again at once
            self._follow_again()
            return
        self.dashboard.run = None  # the next tick draws the pinned run afresh
        self.dashboard.tick()
        self.own_tick = self.doc.add_periodic_callback(
            self.dashboard.tick, self.dashboard.frame_period_ms
        )
        log.debug("a pinned session draws its own frames")

    def rejoin(self) -> None:
        self.doc.add_next_tick_callback(self._rejoin)

    def _rejoin(self) -> None:
        if self.own_tick is None or self.dashboard.pinned is not None:
            return
        self.doc.remove_periodic_callback(self.own_tick)
        self.own_tick = None
        self._follow_again()

    def _follow_again(self) -> None:
        """Bring the browser to the shadow's state (its document is what it shows) and follow."""
        with batching.one_message(self.doc):
            self.broadcast.copy_into(self.doc, loud=True)
        self.at = self.broadcast.frame
        self.dashboard.run, self.dashboard.cursor = None, Cursor()
        log.debug("a session follows the broadcast again")

    def pin_changed(self, active: bool) -> None:
        """The pin toggle (after the dashboard's own handler): a following session pins the
        run the broadcast shows; an unpinned session that draws its own frames follows again."""
        if self.following:
            shown = self.broadcast.shadow.run
            self.dashboard.pinned = shown.run_id if active and shown is not None else None
        elif not active and self.own_tick is not None:
            self.rejoin()


class Broadcast:
    """The process's frame tick: the shadow dashboard, and the sessions that follow it."""

    def __init__(
        self, source: RunSource, settings: ViewerSettings, *, live: bool, schedule: bool = True
    ) -> None:
        """``schedule``: run :meth:`tick` on the server's event loop at the frame rate (tests
        call it, or :meth:`next_frame`, themselves)."""
        self.source = source
        self.doc = Document()
        self.events: list[DocumentPatchedEvent] = []
        self.doc.on_change(self._collect)
        self.shadow = Dashboard(self.doc, source, settings, live=live, frames=False)
        self.shadow.counted = False  # the broadcast counts each session it writes to
        self.models = {m.id: m for m in self.doc.models if is_shared(m)}
        self.frame = 0
        self._values: tuple[int, dict[str, Any]] | None = None
        self._pages: dict[tuple[str, bool, bool], tuple[int, Any, float]] = {}
        self.recent: deque[tuple[int, Any]] = deque(maxlen=RECENT_FRAMES)
        """The latest frames' messages, for sessions whose page was made before them."""
        self.followers: dict[int, Follower] = {}
        self.tick()  # the first session starts from the run as it is, not from nothing
        self._tick = PeriodicCallback(self.tick, 1000 / settings.frame_rate)
        if schedule:
            self._tick.start()

    def _collect(self, event: Any) -> None:
        if isinstance(event, DocumentPatchedEvent):
            self.events.append(event)

    def stop(self) -> None:
        self._tick.stop()

    # -- sessions -----------------------------------------------------------------------------

    def follow(self, dashboard: Dashboard, controls: Controls | None = None) -> Follower:
        """Let ``dashboard``'s session follow the broadcast; its ``controls`` are refreshed
        after each frame, in a message of their own (each session's buttons are its own)."""
        follower = Follower(self, dashboard, controls)
        doc = dashboard.doc
        self.followers[id(doc)] = follower
        batching.on_pull(doc, follower.pulled)

        def forget(_context: Any) -> None:
            self.followers.pop(id(doc), None)

        doc.on_session_destroyed(forget)
        dashboard.header.pin.on_change("active", lambda _a, _o, on: follower.pin_changed(on))
        return follower

    def copy_into(self, doc: Document, *, loud: bool) -> None:
        """Give ``doc``'s shared models the shadow's values; ``loud`` tells the browsers what
        differs from what the document held."""
        started = time.perf_counter()
        values = self._shadow_values()
        with contextlib.nullcontext() if loud else batching.silently(doc):
            for model_id, value in values.items():
                model = doc.get_model_by_id(ID(model_id))
                if model is not None:
                    setattr(model, _attribute(model), _copied(value))
        log.debug("copied the shadow in %.1f ms", 1000 * (time.perf_counter() - started))

    def page(
        self, key: tuple[str, bool, bool], doc: Document, serialize: Callable[[], Any]
    ) -> tuple[Any, int]:
        """A page for documents built like ``doc``, and the frame it shows: one made at this
        frame, or at most :data:`PAGE_SECONDS` ago (the frames since are kept to send), else a
        new one made from ``doc``."""
        made = self._pages.get(key)
        oldest_kept = self.recent[0][0] if self.recent else self.frame + 1
        if made is not None:
            frame, page, at = made
            fresh = time.monotonic() - at <= PAGE_SECONDS
            # the frame after the page's must still be kept after the next frame is added
            if frame == self.frame or (fresh and frame >= oldest_kept):
                stats.pages_shared += 1
                return page, frame
        self.copy_into(doc, loud=False)
        page = serialize()
        self._pages[key] = (self.frame, page, time.monotonic())
        stats.pages_made += 1
        return page, self.frame

    def _shadow_values(self) -> dict[str, Any]:
        """What a session is given of each shared model at this frame (made once per frame:
        sessions that open together share it; arrays are never changed in place)."""
        if self._values is None or self._values[0] != self.frame:
            values: dict[str, Any] = {}
            for model_id, shadow in self.models.items():
                value = getattr(shadow, _attribute(shadow))
                joining = JOINING.get(model_id)
                if joining is not None:
                    value = joining(dict(value))
                elif isinstance(shadow, ColumnDataSource):
                    value = compacted(value)
                values[model_id] = value
            self._values = (self.frame, values)
        return self._values[1]

    # -- the frame ----------------------------------------------------------------------------

    def next_frame(self) -> Any:
        """Catch the shadow up; its changes as one PATCH-DOC message for every session (False:
        nothing changed; None: the changes carry a model, which no one message can).

        A frame that fails half-way still sends what it changed, so that every browser stays
        where the shadow is."""
        self.events.clear()
        try:
            self.shadow.tick()
        except Exception:
            log.exception("a frame failed; what it changed is sent, the rest comes next frame")
        if not self.events:
            return False
        message = batching.shared_message(list(self.events))
        self.events.clear()
        self.frame += 1
        stats.frames_encoded += 1
        return message

    def tick(self) -> None:
        """Catch the shadow up with its run and send what changed to every following session."""
        shown = self.source.current
        room.latest(shown.model if shown is not None else None)
        for follower in list(self.followers.values()):
            if follower.following and follower.dashboard.pinned is not None:
                pinned = follower.dashboard.shown_run()
                if pinned is not shown:
                    follower.leave()
        message = self.next_frame()
        for follower in self.followers.values():
            if follower.controls is not None:
                follower.doc.add_next_tick_callback(follower.refresh_controls)
        if message is False:
            return
        if message is None:  # a model among the changes: never in a dashboard frame
            log.error("a frame changed a model, not data: every session draws its own frames")
            self.recent.clear()
            self._pages.clear()
            for follower in self.followers.values():
                if follower.following:
                    follower.leave()
            return
        self.recent.append((self.frame, message))
        written = 0
        for follower in list(self.followers.values()):
            if not follower.following or follower.at is None:
                continue
            if follower.at < self.recent[0][0] - 1:  # cannot happen: page() keeps a margin
                log.error("a session fell behind the kept frames; it draws its own from now on")
                follower.leave()
                continue
            try:
                for frame, missed in self._since(follower.at):
                    sent = batching.send(follower.doc, missed)
                    written += sent if frame == self.frame else 0
            except Exception:  # one session's trouble must not hold up the rest
                log.exception("a frame could not be written to a session; it leaves the broadcast")
                follower.leave()
                continue
            follower.at = self.frame
        lag = self.shadow.lag_ms / 1000 if self.shadow.lag_ms is not None else None
        stats.update_sent(lag, sessions=written)

    def _since(self, frame: int) -> list[tuple[int, Any]]:
        """The kept frames after ``frame`` (a session that pulled a shared page is behind)."""
        if frame == self.frame - 1:
            return [self.recent[-1]]
        return [(f, message) for f, message in self.recent if f > frame]


_broadcast: Broadcast | None = None


def current(source: RunSource, settings: ViewerSettings, *, live: bool) -> Broadcast:
    """This process's broadcast, started with its first session (on the server's loop)."""
    global _broadcast
    if _broadcast is None or _broadcast.source is not source:
        if _broadcast is not None:
            _broadcast.stop()
        _broadcast = Broadcast(source, settings, live=live)
    return _broadcast


def stop() -> None:
    global _broadcast
    if _broadcast is not None:
        _broadcast.stop()
        _broadcast = None
