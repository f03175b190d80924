"""One websocket message per frame, however many properties the frame changes.

Bokeh's server session sends every document change as a PATCH-DOC message of its own, and a
message has a fixed price whatever it carries: a serializer that first takes a reference to
every model in the session's document (~370 here), a message id, header and content JSON, and
a websocket write. A dashboard frame changes three to five properties (new curve rows, the
sample, the evaluation, the weights, the header), so that price, paid per property and per
session, was most of what a frame cost. Inside :func:`one_message` a session's changes are
collected and go out together as one PATCH-DOC message, which BokehJS applies event by event
in order, exactly as it would have applied the separate messages.

The message is also built more cheaply than Bokeh builds one. Bokeh's serializer starts from
the set of models the browser already has, so that a model met in a change goes as a reference
rather than whole; collecting that set is a pass over every model of the document, for every
message, and it was the largest single cost left. A dashboard frame carries data (numbers,
strings, images), never a model, so the message is first encoded without the set; should a
model turn up after all, that attempt is dropped and Bokeh builds the message its own way.

Bokeh has no public hook for this, so it reaches into ``ServerSession`` (its
``_document_patched`` handler, ``_pending_writes`` and ``_subscribed_connections``). Where
those are not as expected (another Bokeh version, or no server session, as under
``bokeh.client`` or in a plain ``Document``), the block changes nothing: Bokeh sends each change
on its own, as before, and the reason is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Callable, Iterator
from typing import Any

from bokeh.core.serialization import Serializer
from bokeh.document import Document
from bokeh.document.json import PatchJson
from bokeh.protocol.messages.patch_doc import patch_doc
from bokeh.settings import settings as bokeh_settings
from tornado.iostream import StreamClosedError

from viewer.server import deflate

log = logging.getLogger("viewer")

_warned = False


class _ModelFound(Exception):
    pass


class _DataOnly(Serializer):
    """A serializer for changes that carry no model: it needs no set of the browser's models."""

    def add_ref(self, obj: Any, ref: Any) -> None:
        raise _ModelFound


def patch_message(events: list[Any], protocol: Any) -> Any:
    """One PATCH-DOC message holding ``events``, encoded without the model set where it can be."""
    message = shared_message(events)
    return message if message is not None else protocol.create("PATCH-DOC", events)


class _Collector:
    """Stands in for a session's ``_document_patched``: holds changes while a frame runs, drops
    them while the document is changed :func:`silently`."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.send_each = session._document_patched  # Bokeh's own handler, one message a change
        self.events: list[Any] | None = None
        self.silent = False

    def __call__(self, event: Any) -> None:
        if self.silent:
            return
        if self.events is None:
            self.send_each(event)
        elif event.setter is not None:
            # A change the browser made (Bokeh must not echo it to its sender): keep the order
            # by sending what was collected first, then let Bokeh handle this one.
            self.flush()
            self.events = []
            self.send_each(event)
        else:
            self.events.append(event)

    def flush(self) -> None:
        events, self.events = self.events, None
        if not events:
            return
        pending = self.session._pending_writes
        if pending is None:  # not under the document lock: Bokeh's own path raises the error
            for event in events:
                self.send_each(event)
            return
        for connection in list(self.session._subscribed_connections):
            message = patch_message(events, connection.protocol)
            pending.append(connection._socket.send_message(message))


def server_session(doc: Document) -> Any | None:
    """The Bokeh ``ServerSession`` serving ``doc`` (None while it is built, or not served)."""
    context = doc.session_context
    return getattr(context, "_session", None) if context is not None else None


def _collector(doc: Document) -> _Collector | None:
    """The collector installed on ``doc``'s server session, installed on first use."""
    global _warned
    session = server_session(doc)
    if session is None:  # still being built, or not served by a Bokeh server
        return None
    collector = session.__dict__.get("_document_patched")
    if isinstance(collector, _Collector):
        return collector
    needed = ("_document_patched", "_pending_writes", "_subscribed_connections")
    if not all(hasattr(session, name) for name in needed):
        if not _warned:
            _warned = True
            log.warning(
                "this Bokeh's server session lacks %s; each change is sent on its own",
                ", ".join(needed),
            )
        return None
    collector = _Collector(session)
    session._document_patched = collector  # Bokeh's dispatch looks the handler up by name
    return collector


@contextlib.contextmanager
def one_message(doc: Document) -> Iterator[None]:
    """Send every change ``doc`` makes inside the block as one message, when the block ends.

    Must run under the session's document lock (a periodic or next-tick callback), as every
    change to a served document must.
    """
    collector = _collector(doc)
    if collector is None or collector.events is not None:  # nothing to do, or already inside
        yield
        return
    collector.events = []
    try:
        yield
    finally:
        collector.flush()


def settle_id_setting() -> None:
    """Fix Bokeh's ``simple_ids`` setting at the value it has now, for this process.

    Bokeh looks the setting up (configuration, then the environment) for every id it makes, and
    it makes one for every binary buffer of every message: a tenth of the server's CPU in a busy
    room. Once set explicitly, the lookup stops at the set value; the value is unchanged.
    """
    bokeh_settings.simple_ids.set_value(bokeh_settings.simple_ids())


@contextlib.contextmanager
def silently(doc: Document) -> Iterator[None]:
    """Change ``doc`` without telling its browsers: for what they hold already, or what they are
    about to pull whole. Under the session's document lock, like every change."""
    collector = _collector(doc)
    if collector is None:  # not served: nobody to tell anyway
        yield
        return
    was, collector.silent = collector.silent, True
    try:
        yield
    finally:
        collector.silent = was


def on_pull(doc: Document, serialize: Callable[[Callable[[], Any]], Any]) -> None:
    """Let ``serialize`` answer each time a browser pulls ``doc`` whole; it is given Bokeh's
    own serializer and returns what ``doc.to_json()`` would (which it may cache and reuse).

    Bokeh answers a PULL-DOC request under the document lock with ``doc.to_json()``, and
    BokehJS drops every patch that reaches it before that reply (the reply holds them): so what
    ``serialize`` returns is exactly what the browser starts from.
    """
    own = doc.to_json

    def to_json(*args: Any, **kwargs: Any) -> Any:
        return serialize(lambda: own(*args, **kwargs))

    doc.to_json = to_json  # type: ignore[method-assign]


def shared_message(events: list[Any]) -> Any | None:
    """One PATCH-DOC message for ``events``, valid in every document whose models have the
    events' ids; None if the events carry a model (those go as references to each document's
    own set)."""
    serializer = _DataOnly()
    try:
        content = serializer.encode(events)
    except _ModelFound:
        return None
    message = patch_doc(patch_doc.create_header(), {}, PatchJson(events=content))
    message.add_buffers(*serializer.buffers)
    return message


def send(doc: Document, message: Any) -> int:
    """Write ``message`` to every browser connected to ``doc``; how many there were.

    The message is framed once (:func:`wire_bytes`) and the same bytes go to each websocket in
    one write, under Bokeh's per-connection write lock so they never land inside another
    message. A connection that compresses gets the frames compressed once
    (:mod:`viewer.server.deflate`); one whose compression keeps a context of its own is written
    Bokeh's own way. A closing connection is skipped. A browser that has stopped reading (a
    laptop gone to sleep) is disconnected once :data:`MAX_UNREAD` bytes wait for it, rather
    than holding every frame in memory until TCP gives up; reloaded, its page is whole again.
    """
    session = server_session(doc)
    connections = getattr(session, "_subscribed_connections", ()) if session else ()
    for connection in connections:
        handler = connection._socket
        socket = getattr(handler, "ws_connection", None)
        if socket is None or socket.is_closing():
            continue
        if getattr(socket.stream, "_write_buffer_size", 0) > MAX_UNREAD:
            log.info("a browser stopped reading (%d bytes wait for it): closed", MAX_UNREAD)
            handler.close(1001, "not reading")
            continue
        compressed = deflate.independent(socket)
        if not compressed and getattr(socket, "_compressor", None) is not None:
            task = asyncio.ensure_future(handler.send_message(message))  # its own context
            _writing.add(task)
            task.add_done_callback(_writing.discard)
            continue
        _write_locked(handler, socket, wire_bytes(message, compressed))
    return len(connections)


MAX_UNREAD = 16 * 1024 * 1024
"""Bytes waiting for one browser before it is disconnected: minutes of frames."""


def wire_bytes(message: Any, compressed: bool = False) -> bytes:
    """``message`` as the websocket frames Bokeh would write for it (header, metadata, content,
    then each buffer's header and bytes), framed once for every connection; ``compressed``:
    its text frames deflated on their own, for connections that negotiated it.

    A server's frames are not masked (RFC 6455). Buffers go uncompressed: the pictures in them
    are deflated already, and a message's RSV1 bit says whether it is.
    """
    cached = message.__dict__.setdefault("_mnist_live_wire", {})
    framed = cached.get(compressed)
    if framed is None:
        parts = [message.header_json, message.metadata_json, message.content_json]
        parts += [json.dumps(buffer.ref) for buffer in message.buffers]
        texts = [_text_frame(part.encode(), compressed) for part in parts]
        frames = texts[:3]
        for ref, buffer in zip(texts[3:], message.buffers, strict=True):
            frames += [ref, _frame(0x2, buffer.to_bytes())]
        framed = b"".join(frames)
        cached[compressed] = framed
    return framed


def _text_frame(payload: bytes, compressed: bool) -> bytes:
    packed = deflate.deflated(payload) if compressed else None
    return _frame(0x1, payload) if packed is None else _frame(0x1, packed, RSV1)


RSV1 = 0x40
"""The first frame of a compressed message says so with this bit (RFC 7692)."""


def _frame(opcode: int, payload: bytes, flags: int = 0) -> bytes:
    n = len(payload)
    first = 0x80 | flags | opcode
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def _write_locked(handler: Any, socket: Any, data: bytes) -> None:
    """One write of ``data`` under the handler's write lock, at once when it is free."""
    lock = handler.write_lock
    acquired = lock.acquire()

    def write(_: Any = None) -> None:
        try:
            written = socket.stream.write(data)
            written.add_done_callback(_closed_is_fine)
        except StreamClosedError:
            pass  # the connection is going; Bokeh drops its session in its own time
        finally:
            lock.release()

    if acquired.done():
        write()
    else:  # another message is being written: this one follows it
        acquired.add_done_callback(write)


def _closed_is_fine(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a closed stream is not an error here


_writing: set[asyncio.Future[Any]] = set()
"""Bokeh's own writes under way (the event loop keeps only weak references to its tasks)."""
