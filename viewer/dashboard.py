"""One browser session's dashboard: assembles the panels and runs the frame tick.

A session renders the whole run when it opens, then on each frame (``frame_rate`` a second)
asks the run for what it has not sent yet (:meth:`RunHistory.changes`): new curve rows, which
it streams with a bounded rollover, and changed parts, whose pieces (each panel's
``render``, drawn once per change for every session by :meth:`RunHistory.rendered`) it
assigns. The source folded each message once for every session, so a frame costs a slice and
an assignment, and a frame where nothing happened costs an integer compare. Whatever a frame
changes goes to the browser as one websocket message (:mod:`viewer.server.batching`); the header,
whose step changes with every metrics message, is refreshed at most once a second. The session
keeps no state in the hub: when it closes, Bokeh drops its callback and with it everything here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from bokeh.core.enums import SizingModeType
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.model.util import collect_models
from bokeh.models import Axis, LayoutDOM, Plot, Text
from bokeh.models.annotations import LabelSet, Legend, Title
from bokeh.models.widgets import Widget

from protocol import ModelWeights
from viewer.drawing.pad import Pad
from viewer.drawing.room import room
from viewer.panels import curves, digit, evaluation, header, weights
from viewer.panels.curves import Curves
from viewer.panels.digit import Digit
from viewer.panels.evaluation import EvaluationPanels
from viewer.panels.header import WAITING, Header
from viewer.panels.ids import same_ids, settle
from viewer.panels.looks import Look, session_look, text_scaler
from viewer.panels.weights import Weights
from viewer.runs.columns import Changes, Cursor
from viewer.runs.state import Render, RunHistory
from viewer.server.batching import one_message
from viewer.server.settings import ViewerSettings
from viewer.server.stats import stats
from viewer.sources import RunSource

log = logging.getLogger("viewer")

SESSION_REFRESH = 1.0
"""Seconds between header refreshes (unless the status changes): speed, ETA, viewers, lag."""
BROKER_LOST_AFTER = 3.0
"""Seconds without a word from the broker before pages say it is unreachable: it answers the
subscription's check every second, so three missed answers."""
SILENT_AFTER = 2.0
"""Seconds without a message from a live run before its pages say the trainer is silent (the
header is redrawn at that moment, so a killed trainer shows within 2.5 s)."""


RENDER: dict[str, Render] = {
    header.PART: header.render,
    digit.PART: digit.render,
    evaluation.PART: evaluation.render,
    weights.PART: weights.render,
    curves.PART: curves.render,
}
"""Each part of a run, and the panel's renderer that draws it."""


EMBEDDED = ("loss", "accuracy", "digit", "probabilities")
"""What ``/embed`` shows: a slide has room for the curves and the current sample."""

FILL: dict[str, SizingModeType] = {"header": "stretch_width"}
"""How each area's part fills the cell the page's CSS grid gives it (templates/index.html):
the header as wide as the page and as tall as its text, the plots the whole cell."""


class Controls(Protocol):
    """What the dashboard needs of the controls in its header: the presenter's
    (:mod:`viewer.panels.presenter`) or a replay's (:mod:`viewer.panels.playback`)."""

    layout: LayoutDOM

    def refresh(self, run: RunHistory | None) -> None: ...


class Page:
    """A dashboard's models, built before they join a document (so they can be built ahead).

    An audience page's models get the same ids in every session (one page serialized for all,
    :mod:`viewer.panels.ids`); a page with controls keeps unique ids: it is its own.
    """

    def __init__(
        self,
        look: Look,
        controls: Controls | None = None,
        static: bool = False,
        embed: bool = False,
    ) -> None:
        """``embed``: only the curves and the current sample, for a slide (``/embed``)."""
        self.look = look
        self.audience = controls is None and not embed
        with same_ids(self.audience) as alike:
            self.curves = Curves(look)
            presenter = controls.layout if controls is not None else None
            self.header = Header(look, [] if static else [self.curves.log_scale], presenter)
            self.header.pin.visible = not static
            self.digit = Digit(look)
            self.evaluation = EvaluationPanels(look)
            self.weights = Weights(look)
            self.pad = None if static or embed else Pad(look)
            header = self.header.layout
            areas: dict[str, LayoutDOM] = {
                "header": header,
                "loss": self.curves.loss_layout,
                "accuracy": self.curves.accuracy_layout,
                "digit": self.digit.image_figure,
                "probabilities": self.digit.bars,
                "weights": self.weights.figure,
                "confusion": self.evaluation.confusion_figure,
                "per_class": self.evaluation.per_class_figure,
                "mistakes": self.evaluation.gallery_figure,
            }
            if self.pad is not None:
                areas["draw"], areas["reading"] = self.pad.pad_layout, self.pad.reading_layout
            if embed:
                areas = {name: areas[name] for name in EMBEDDED}
            self.roots = [
                column(part, name=f"area_{name}", sizing_mode=FILL.get(name, "stretch_both"))
                for name, part in areas.items()
            ]
            for name, part in areas.items():  # the grid's cell decides the size, never less
                part.sizing_mode, part.min_width = FILL.get(name, "stretch_both"), None
            texts = (Title, Axis, Legend, Text, LabelSet)
            models = collect_models(*self.roots)
            self.text_scaler = text_scaler(
                [m for m in models if isinstance(m, texts)],
                [m for m in models if isinstance(m, Widget) and m.width is not None],
                [m for m in models if isinstance(m, Plot)],
            )
        self.alike = alike
        """Its ids are the same as every other audience page's already (else settle them)."""
        self.decoders = [
            self.digit.picture.decoder,
            self.weights.picture.decoder,
            self.evaluation.gallery.decoder,
        ]
        """What turns the pictures' wire rows into pixels in the browser, run when the page is
        ready as well as on every change (:mod:`viewer.panels.pictures`)."""


class Dashboard:
    def __init__(
        self,
        doc: Document,
        hub: RunSource,
        settings: ViewerSettings,
        controls: Controls | None = None,
        look: Look | None = None,
        *,
        live: bool = True,
        static: bool = False,
        frames: bool = True,
        page: Page | None = None,
    ) -> None:
        """``live``: messages arrive as sent, so their age is this session's lag (a played-back
        recording's are old). ``static``: a page saved once (``mnist-live export --html``), with
        no frame tick and nothing that needs a server. ``frames``: draw the run now and run this
        session's own frame tick; without, someone else drives :meth:`tick` (the process's
        :class:`viewer.broadcast.Broadcast`, which also fills a following session's document).
        ``page``: its models, built ahead (:mod:`viewer.pages`), else built here."""
        self.doc = doc
        self.live = live and not static
        self.static = static
        self.hub = hub
        self.controls = controls
        self.look = page.look if page is not None else look or session_look(doc, settings)
        self.run: RunHistory | None = None
        self.counted = True
        """Frames count as updates sent to a session (not the broadcast's shadow's)."""
        self.pinned: str | None = None
        """The run this session keeps showing while newer ones start (the pin toggle)."""
        self.cursor = Cursor()
        self.lag_ms: float | None = None
        self.header_due = 0.0
        self.header_status = ""
        self.pending_header: dict[str, str] | None = None
        self.shown_silent = False
        """The header says the trainer is silent (it is redrawn the moment that changes)."""
        self.room_version = -1
        """The room's digits' score this page shows (:mod:`viewer.drawing.room`)."""

        page = page or Page(self.look, controls, static)
        self.page = page
        self.curves, self.header, self.digit = page.curves, page.header, page.digit
        self.evaluation, self.weights = page.evaluation, page.weights
        doc.title = "MNIST Live"
        doc.theme = self.look.theme()
        doc.template_variables.update(self.look.template_variables())
        if page.audience:  # the document's config was made with it, before this page
            settle(doc.config) if page.alike else settle(*page.roots, doc.config)
        with doc.models.freeze():  # the models are gathered once, not once per root
            for root in page.roots:
                doc.add_root(root)
        doc.js_on_event("document_ready", *page.decoders, page.text_scaler)
        self.header.pin.on_change("active", self._pin_changed)
        if page.pad is not None:
            pad = page.pad
            pad.on_wall.visible = self.live  # a replay's page has no presenter's wall
            pad.attach(doc, self._latest_model)
            room.join(pad)
            if doc.session_context is not None:
                doc.on_session_destroyed(lambda _context: room.leave(pad))
        self.frame_period_ms = round(1000 / settings.frame_rate)
        if frames:
            self.tick(initial=True)
            if not static:
                doc.add_periodic_callback(self.tick, self.frame_period_ms)

    def _show_room(self) -> None:
        """The room's digits: their score's curve and words, when either changed."""
        pad = self.page.pad
        if pad is None or (self.room_version == room.version and pad.room_words.text):
            return
        self.room_version = room.version
        if room.scores["step"] or self.curves.room.data["step"]:
            self.curves.show_room(room.scores)
        words = room.words()
        if pad.room_words.text != words:
            pad.room_words.text = words

    def _latest_model(self) -> tuple[ModelWeights | str, list[str]]:
        """What the pad reads with: the latest model of the newest run and its class names,
        or why there is none."""
        run = self.hub.current  # the source's lock is taken there; a model is never changed
        if run is not None and run.model is not None:
            return run.model, run.class_names()
        if run is not None and run.played_back:
            return "No model yet at this point of the replay: play on a few seconds.", []
        return "No model yet: the trainer sends one every few seconds.", []

    # -- the frame --------------------------------------------------------------------------------

    def shown_run(self) -> RunHistory | None:
        """The pinned run while it is pinned (and still held), else the newest."""
        if self.pinned is not None:
            pinned = self.hub.run(self.pinned)
            if pinned is not None:
                return pinned
        return self.hub.current

    def _pin_changed(self, _attr: str, _old: bool, active: bool) -> None:
        shown = self.run or self.hub.current
        self.pinned = shown.run_id if active and shown is not None else None

    def tick(self, initial: bool = False) -> None:
        """Bring this session up to date, in one message; nearly free when nothing changed."""
        with one_message(self.doc):
            self._frame(initial)

    def _frame(self, initial: bool) -> None:
        run = self.shown_run()
        now = time.time()
        self._show_room()
        if self.controls is not None:
            self.controls.refresh(run)
        silence_changed = (self._alarm(now) is not None) != self.shown_silent
        header_due = now >= self.header_due or silence_changed
        unchanged = run is self.run and (run is None or run.version == self.cursor.version)
        if unchanged and not header_due:
            return
        fresh = run is not self.run
        changes = None
        if fresh:
            changes = self._switch(run)
        elif run is not None:
            with self.hub.lock:
                changes = run.changes(self.cursor)
                pieces = self._render(run, changes)
            if changes:
                self._apply(changes.rows, pieces)
                if self.live:
                    self.lag_ms = max(0.0, now - changes.sent_at) * 1000
        self._show_header(now, force=fresh or silence_changed)
        if changes and not initial and self.counted:
            live = self.live and not fresh
            stats.update_sent(max(0.0, now - changes.sent_at) if live else None)

    def _switch(self, run: RunHistory | None) -> Changes | None:
        """Show ``run`` whole, with the run before it as the faint overlay."""
        previous = self.hub.previous(run) if run is not None else None
        if run is not None and self.run is not None and run.run_id != self.run.run_id:
            log.info("session switches from run %s to %s", self.run.run_id, run.run_id)
        self.run = run
        self.cursor = Cursor()
        self.lag_ms = None
        changes = None
        pieces: dict[str, dict[str, Any]] = {}
        with self.hub.lock:
            overlay = previous.overlay() if previous is not None else None
            if run is not None:
                changes = run.changes(self.cursor)
                pieces = self._render(run, changes)
        self.curves.show(changes.rows if changes else {}, overlay)
        self.digit.reset(run)
        self.evaluation.reset()
        self.weights.reset(run)
        if run is None:
            self.header.show(run_html=WAITING)
        elif changes:
            self._apply({}, pieces)
        return changes

    @staticmethod
    def _render(run: RunHistory, changes: Changes) -> dict[str, dict[str, Any]]:
        """The pieces of the parts that changed (under the source's lock)."""
        return {part: run.rendered(part, RENDER[part]) for part in changes.parts}

    def _apply(
        self, rows: dict[str, dict[str, list[float]]], pieces: dict[str, dict[str, Any]]
    ) -> None:
        if rows:
            self.curves.apply(rows)
        if "header" in pieces:
            self.pending_header = pieces["header"]
        if "sample" in pieces:
            self.digit.apply(pieces["sample"])
        if "evaluation" in pieces:
            self.evaluation.apply(pieces["evaluation"])
        if "weights" in pieces:
            self.weights.apply(pieces["weights"])
        if curves.PART in pieces:
            self.curves.show_tunings(pieces[curves.PART])

    def _show_header(self, now: float, force: bool) -> None:
        """Refresh the header once a second, or at once when the run's status word changes.

        Every metrics message changes the step in it, and each change is a message to the
        browser; the curves show the step live, so the header need not repeat it every frame.
        """
        pending = self.pending_header
        status_changed = pending is not None and pending["status"] != self.header_status
        if not (force or status_changed or now >= self.header_due):
            return
        self.header_due = now + SESSION_REFRESH
        if pending is not None:
            self.header_status = pending["status"]
            self.pending_header = None
        self.header.show(
            run_html=pending["html"] if pending is not None else None,
            session_html=self._session_html(now),
        )

    def _session_html(self, now: float | None = None) -> str:
        if self.static:
            return ""
        now = time.time() if now is None else now
        pinned = self.header.pin.active
        alarm = self._alarm(now)
        self.shown_silent = alarm is not None
        return Header.session_part(stats.sessions_open, self.lag_ms, pinned, alarm)

    def _alarm(self, now: float) -> str | None:
        """What the page must say is wrong: the broker gone quiet, else the trainer."""
        lost = self.hub.broker_silence() if self.live else None
        if lost is not None and lost >= BROKER_LOST_AFTER:
            return f"broker unreachable for {lost:.0f} s"
        silent = self._silent(now)
        return None if silent is None else f"trainer silent for {silent:.0f} s"

    def _silent(self, now: float) -> float | None:
        """Seconds since the live run's trainer was last heard, once past :data:`SILENT_AFTER`
        (a training run sends ~20 messages a second, a waiting or paused one a heartbeat a
        second); None for a run that is over, replayed, or heard from lately."""
        run = self.run
        if run is None or not self.live or run.finished or run.replayed or run.played_back:
            return None
        quiet = now - run.last_received_at if run.last_received_at else 0.0
        return quiet if quiet >= SILENT_AFTER else None
