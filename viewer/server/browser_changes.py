"""What a browser may change in its own session: widget and view state, and its drawing.

Bokeh lets each browser send PATCH-DOC messages that change its session's server-side copy
of the page. The page needs a few kinds: a widget's state (the pin and log-scale toggles, the
pace and position sliders), a plot's range and size as the user zooms or the window resizes,
a legend entry hidden, and two events (a button's click, the page's ``document_ready``).
Only the drawing pad sends data back (its ``drawing`` source, whole, when a stroke ends:
:func:`accept_data`, each change sized first); every other source is filled by the server,
and the pictures are decoded into sources the browser keeps to itself. So every other change
(streaming into,
patching or replacing a source's data, a new model in any property, roots added or removed,
any other event) is dropped and counted: such a client could otherwise grow the viewer by a
hundred megabytes. A change Bokeh cannot apply (a
reference to a model that is not there) is refused with one log line at a bounded rate,
where Bokeh logs a full traceback for each (510 kB for 100 of them).

A PUSH-DOC (a browser replacing the whole document) is refused outright.

Bokeh has no hook for this; :func:`install` wraps ``ServerSession.patch`` and replaces
``ServerSession.push``, the handlers Bokeh's protocol handler looks up when a server is made
(pinned with Bokeh, checked by ``tests/test_pins.py``), before any server is made.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.server.session import ServerSession

log = logging.getLogger("viewer.browser")

DATA_EVENTS = frozenset({"ColumnsStreamed", "ColumnsPatched", "ColumnDataChanged"})
VIEW_PROPERTIES = frozenset({
    "active", "value", "value_throttled",  # toggles, sliders, radio groups, toolbar tools
    "start", "end",  # a range as the user zooms, pans or resets
    "inner_width", "inner_height", "outer_width", "outer_height",  # a resized window
    "visible", "muted",  # a legend entry clicked
    "indices", "line_indices",  # a selection
})  # fmt: skip
"""What the page's widgets and views change from the browser: every ``ModelChanged`` of
another property (a source's ``data``, a plot's renderers, a Div's text) is refused."""
SENT_DATA = {"ModelChanged": "new", "ColumnDataChanged": "data"}
"""The events that replace a source's whole ``data`` (BokehJS sends the first, ``bokeh.client``
the second), and the key of the new value in each."""
DATA_CHANGES: dict[str, Callable[[Any], str | None]] = {}
"""The sources, by name, a browser may send data into (the drawing pad's strokes), each with
what checks a change before Bokeh applies it (:func:`accept_data`)."""
BROWSER_EVENTS = frozenset({"button_click", "document_ready"})
"""The Bokeh events the page handles (``on_click``; the pictures' decoder on load)."""
MAX_DEPTH = 16
LOG_EVERY = 5.0


class Refusals:
    """How many browser changes were refused, and when that was last said in the log."""

    def __init__(self) -> None:
        self.data = 0
        self.invalid = 0
        self.sent_data = 0
        """Data a browser may send (a drawing) that failed its source's check."""
        self._said = -LOG_EVERY
        self._unsaid = 0

    def note(self, now: float, what: str) -> None:
        if now - self._said >= LOG_EVERY:
            more = f" (+{self._unsaid} more since)" if self._unsaid else ""
            log.warning("refused a browser's change: %s%s", what[:200], more)
            self._said, self._unsaid = now, 0
        else:
            self._unsaid += 1


refusals = Refusals()


def _brings_models(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` (a change's new value, as serialized) defines a model: a browser
    refers to the page's models by id and never makes one. Too deep counts as yes."""
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        if value.get("type") == "object":
            return True
        return any(_brings_models(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_brings_models(v, depth + 1) for v in value)
    return False


def accept_data(name: str, check: Callable[[Any], str | None]) -> None:
    """Let browsers replace the ``data`` of their session's sources named ``name``, when
    ``check`` (given the serialized new value) finds no reason to refuse it."""
    DATA_CHANGES[name] = check


class SentData(str):
    """A refusal of data a browser may send, failing its check (counted apart)."""


def refused(content: Any, document: Document | None = None) -> str | None:
    """Why a PATCH-DOC's content is refused, or None if every event is a change of what the
    page's widgets and views show, one of the events the page handles, or data sent into a
    source that takes it (:func:`accept_data`; ``document`` is the session's)."""
    events = content.get("events") if isinstance(content, dict) else None
    if not isinstance(events, list):
        return "a patch without a list of events"
    for event in events:
        if not isinstance(event, dict):
            return "an event that is not an object"
        kind = event.get("kind")
        sent = SENT_DATA.get(str(kind)) if event.get("attr") == "data" else None
        check = _data_check(event, document) if sent is not None else None
        if check is not None and sent is not None:  # a source's whole data, where it may be sent
            if (reason := check(event.get(sent))) is not None:
                return SentData(reason)
            continue
        if kind in DATA_EVENTS:
            return f"{kind} (a browser sends no data here but its drawing)"
        if kind == "ModelChanged":
            attr = event.get("attr")
            if attr not in VIEW_PROPERTIES:
                return f"a change of {str(attr)[:40]!r} (a browser changes only what it shows)"
            if _brings_models(event.get("new")):
                return f"a change of {attr!r} that brings models of its own"
        elif kind == "MessageSent":
            data = event.get("msg_data")
            name = data.get("name") if isinstance(data, dict) else None
            if event.get("msg_type") != "bokeh_event" or name not in BROWSER_EVENTS:
                return f"an event {str(name)[:40]!r} this page does not handle"
        else:
            return f"an event of kind {str(kind)[:40]!r}"
    return None


def _data_check(
    event: dict[str, Any], document: Document | None
) -> Callable[[Any], str | None] | None:
    """The check for data sent into the event's model, if it is a source that takes data."""
    model = event.get("model")
    ref = model.get("id") if isinstance(model, dict) else None
    if document is None or not isinstance(ref, str) or not DATA_CHANGES:
        return None
    target = document.get_model_by_id(ref)  # type: ignore[arg-type]
    return DATA_CHANGES.get(target.name) if target is not None and target.name else None


def install() -> None:
    """Guard every session's PATCH-DOC handler in this process (idempotent)."""
    original = ServerSession.patch
    if getattr(original, "_mnist_live", False):
        return
    handle = original.__func__  # type: ignore[attr-defined]

    @functools.wraps(handle)
    async def guarded(cls: type[ServerSession], message: Any, connection: Any) -> Any:
        session = getattr(connection, "session", None)
        reason = refused(message.content, getattr(session, "document", None))
        if reason is not None:
            if isinstance(reason, SentData):
                refusals.sent_data += 1
            else:
                refusals.data += 1
            refusals.note(time.monotonic(), reason)
            return connection.error(message, "refused: " + reason)
        try:
            return await handle(cls, message, connection)
        except Exception as exc:  # what Bokeh cannot apply: one line, not a traceback each
            refusals.invalid += 1
            refusals.note(time.monotonic(), f"{type(exc).__name__}: {exc}")
            log.debug("the refused change's traceback (an app bug would show here)", exc_info=True)
            return connection.error(message, "refused: the change does not apply")

    async def no_push(cls: type[ServerSession], message: Any, connection: Any) -> Any:
        refusals.data += 1
        refusals.note(time.monotonic(), "PUSH-DOC (a browser never replaces this page)")
        return connection.error(message, "refused: this page takes no document from a browser")

    guarded._mnist_live = True  # type: ignore[attr-defined]
    ServerSession.patch = classmethod(guarded)  # type: ignore[method-assign, assignment]
    ServerSession.push = classmethod(no_push)  # type: ignore[method-assign, assignment]
