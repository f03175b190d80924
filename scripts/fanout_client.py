"""Many Bokeh dashboard sessions in one process, cheap enough to leave the CPU to the server.

Bokeh 3's ``bokeh.client`` reads each message by awaiting its next state from inside the
previous one, so a long-lived session recurses once per update and silently stops near
Python's recursion limit (~320 updates). Its per-fragment coroutines and full document
rebuilds would also make the load generator, not the server, the bottleneck on a 2-core
machine. So each session here is an :class:`asyncio.Protocol` speaking the websocket and Bokeh
wire formats directly: frames are cut out of whatever bytes arrive, a Bokeh message is
assembled from its fragments (header, metadata, content, then buffer pairs) and parsed once
per distinct message: a viewer that encodes a frame once sends every session the same message
(same id), so sessions share one reading of it (:func:`read_patch`). No recursion, no
per-message task. Each session counts the bytes it received per model (by the model's name),
so the benchmark can say which source costs what.

Like a browser, a session offers permessage-deflate (RFC 7692) and inflates what comes
compressed; when the server compresses every message on its own (it answers
``server_no_context_takeover``), equal compressed messages are inflated once for all sessions.
A source is counted its binary buffers as they are (never compressed) and its share of the
message's compressed JSON in proportion to its JSON before compression.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import struct
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from bokeh.util.token import generate_jwt_token, generate_session_id

SOURCE = "loss"
"""The named source whose rows are counted and whose ``sent_at`` column gives the lag."""
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_HANDSHAKE_BYTES = 16 * 1024


class SessionError(RuntimeError):
    """A session could not be opened, or the server sent something this client cannot read."""


@dataclass
class Frame:
    """One update that brought rows to the ``loss`` source."""

    received_at: float
    rows: int
    lag: float | None
    """``received_at`` minus the newest ``sent_at`` among the rows; None without that column."""


@dataclass
class Change:
    """What one patch event did to one model."""

    kind: str
    rows: int = 0
    """Rows streamed (``ColumnsStreamed``) or held after a replacement (``data`` assigned)."""
    sent_at: float | None = None
    """The newest ``sent_at`` among the rows, when the model has that column."""
    step: float | None = None
    """The newest ``step`` among the rows, when the model has that column."""
    rollover: int | None = None


@dataclass
class Patch:
    """A PATCH-DOC message read once: bytes and changes per model id, in order."""

    sizes: Counter = field(default_factory=Counter)
    """JSON bytes per model id."""
    buffer_sizes: Counter = field(default_factory=Counter)
    """Binary buffer bytes per model id (never compressed on the wire)."""
    changes: list[tuple[str, Change]] = field(default_factory=list)


PATCHES_KEPT = 256
_patches: OrderedDict[tuple[str, str], Patch] = OrderedDict()


def read_patch(header: str, content: str, buffers: dict[str, bytes]) -> Patch:
    """The patch in this message, read once for every session that receives the same one.

    The header holds the message's id, but ids are only unique within one server process
    (several viewers behind nginx make the same ones), so header and content together name
    the message: a viewer that writes one message to every session is read once, a viewer
    that builds one per session once per session.
    """
    key = (header, content)
    patch = _patches.get(key)
    if patch is not None:
        return patch
    patch = Patch()
    for event in json.loads(content).get("events", []):
        model = event.get("model")
        if not isinstance(model, dict) or "id" not in model:
            continue
        model_id = model["id"]
        data = event.get("data", event.get("new"))
        patch.sizes[model_id] += len(json.dumps(event, separators=(",", ":")))
        patch.buffer_sizes[model_id] += _buffer_bytes(data, buffers)
        kind = event.get("kind", "")
        if kind == "ColumnsStreamed" or (kind == "ModelChanged" and event.get("attr") == "data"):
            decoded = _decode(data, buffers)
            rows = _row_count(decoded)
            sent_at, step = _newest(decoded, "sent_at", rows), _newest(decoded, "step", rows)
            change = Change(kind, rows, sent_at, step, event.get("rollover"))
            patch.changes.append((model_id, change))
    _patches[key] = patch
    while len(_patches) > PATCHES_KEPT:
        _patches.popitem(last=False)
    return patch


INFLATED_KEPT = 256
_inflated: OrderedDict[bytes, bytes] = OrderedDict()


def inflate_alone(data: bytes) -> bytes:
    """A message compressed on its own (no context from earlier ones), inflated once for every
    session that receives it."""
    whole = _inflated.get(data)
    if whole is None:
        whole = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data + DEFLATE_TAIL)
        _inflated[data] = whole
        while len(_inflated) > INFLATED_KEPT:
            _inflated.popitem(last=False)
    return whole


DEFLATE_TAIL = b"\x00\x00\xff\xff"


def _newest(data: Any, column: str, rows: int) -> float | None:
    values = data.get(column) if isinstance(data, dict) else None
    return float(np.max(values)) if values is not None and rows else None


def _buffer_bytes(value: Any, buffers: dict[str, bytes]) -> int:
    """Bytes of the binary buffers a serialised value refers to."""
    if isinstance(value, list):
        return sum(_buffer_bytes(v, buffers) for v in value)
    if not isinstance(value, dict):
        return 0
    if value.get("type") == "bytes" and isinstance(value.get("data"), dict):
        return len(buffers.get(value["data"].get("id"), b""))
    return sum(_buffer_bytes(v, buffers) for v in value.values())


@dataclass
class BokehMessage:
    header: dict
    content: str
    buffers: dict[str, bytes]

    @property
    def msgtype(self) -> str:
        return str(self.header.get("msgtype"))


def _mask(payload: bytes) -> bytes:
    """A client frame's payload is XOR-masked with a random 4-byte key (RFC 6455 5.3)."""
    key = os.urandom(4)
    data = np.frombuffer(payload, np.uint8)
    pad = np.frombuffer(key * (len(payload) // 4 + 1), np.uint8)[: len(payload)]
    return key + (data ^ pad).tobytes()


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _mask(payload)


class Session(asyncio.Protocol):
    """One browser-equivalent session: handshake, pull the document, then follow patches.

    ``url`` is the server's websocket URL, e.g. ``ws://127.0.0.1:5006/ws``.
    """

    def __init__(self, url: str, deflate: bool = True) -> None:
        self.url = url
        self.deflate = deflate
        """Offer permessage-deflate, as browsers do."""
        self.source_id: str | None = None
        self.names: dict[str, str] = {}
        """Model ids to names, for the bytes per source."""
        self.rows = 0
        self.last_step: float | None = None
        """The newest step the ``loss`` source holds: a session with the live sessions' newest
        step holds the whole run (a late joiner's history comes thinned, not row by row)."""
        self.messages = 0
        self.bytes = 0
        self.pull_bytes = 0
        """Bytes received until the document was pulled: what opening the page cost."""
        self.page_sizes: dict[str, int] = {}
        """Bytes of each named source's data in the pulled page."""
        self.bytes_by_name: Counter = Counter()
        self.patch_headers: deque[str] = deque(maxlen=256)
        """The latest patches' headers (each names its message by id)."""
        self.frames: list[Frame] = []
        self.has_sent_at = False
        self.opened_at = self.pulled_at = 0.0
        self.error: str | None = None
        self.rows_changed = asyncio.Event()
        self.closed = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = asyncio.get_running_loop().create_future()
        self._pulled = asyncio.get_running_loop().create_future()
        self._handshake_done = False
        self._fragments: list[bytes | str] = []
        self._partial = bytearray()
        self._partial_text = False
        self._partial_compressed = False
        self._compressed_by_server = False
        self._independent = False
        self._inflater: Any = None
        self._message_wire = 0

    # -- opening --------------------------------------------------------------------------

    async def open(self, timeout: float) -> None:
        """Connect, upgrade, pull the document; :class:`SessionError` past ``timeout``."""
        self.opened_at = time.time()
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: self, host, port)
                token = generate_jwt_token(generate_session_id())
                key = base64.b64encode(os.urandom(16)).decode()
                target = parts.path + ("?" + parts.query if parts.query else "")
                request = (
                    f"GET {target} HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Protocol: bokeh, {token}\r\n"
                    + (
                        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                        if self.deflate
                        else ""
                    )
                    + "\r\n"
                )
                assert self._transport is not None
                self._transport.write(request.encode())
                await self._upgraded
                await self._pulled
        except (TimeoutError, OSError) as exc:
            self.close()
            raise SessionError(f"could not open a session on {self.url}: {exc!r}") from None
        except SessionError:
            self.close()
            raise
        self.pulled_at = time.time()

    def _send_message(self, msgtype: str, content: Any = None) -> None:
        header = {"msgid": generate_session_id()[:16], "msgtype": msgtype}
        assert self._transport is not None
        for text in (json.dumps(header), "{}", json.dumps(content if content is not None else {})):
            self._transport.write(_frame(0x1, text.encode()))

    def send(self, msgtype: str, content: Any) -> None:
        """Send the server a Bokeh message of ours (a test's hostile PATCH-DOC, for one)."""
        self._send_message(msgtype, content)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.is_set() and self.error is None:
            self.error = f"connection lost: {exc!r}" if exc else None
        self._fail(SessionError(f"connection to {self.url} closed"))
        self._transport = None
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self._buffer += data
        try:
            if not self._handshake_done:
                self._read_handshake()
            if self._handshake_done:
                self._read_frames()
        except SessionError as exc:
            self.error = str(exc)
            self._fail(exc)
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.closed.set()

    def _fail(self, exc: Exception) -> None:
        for future in (self._upgraded, self._pulled):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # consumed here; open() re-raises through await

    # -- wire formats -------------------------------------------------------------------

    def _read_handshake(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HANDSHAKE_BYTES:
                raise SessionError("websocket handshake response too long")
            return
        status, *headers = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if " 101 " not in status + " ":
            raise SessionError(f"websocket upgrade refused: {status}")
        for line in headers:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                self._compressed_by_server = True
                self._independent = "server_no_context_takeover" in value
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._handshake_done = True
        self._upgraded.set_result(None)

    def _read_frames(self) -> None:
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= 2:
            b0, b1 = buffer[start], buffer[start + 1]
            if b1 & 0x80:
                raise SessionError("the server sent a masked frame")
            n, offset = b1 & 0x7F, start + 2
            if n == 126:
                if len(buffer) - offset < 2:
                    break
                (n,) = struct.unpack_from("!H", buffer, offset)
                offset += 2
            elif n == 127:
                if len(buffer) - offset < 8:
                    break
                (n,) = struct.unpack_from("!Q", buffer, offset)
                offset += 8
            if n > MAX_FRAME_BYTES:
                raise SessionError(f"websocket frame of {n} bytes is over the limit")
            if len(buffer) - offset < n:
                break
            payload = bytes(buffer[offset : offset + n])
            self._message_wire += offset + n - start
            start = offset + n
            self._on_frame(b0 & 0x80 != 0, b0 & 0x0F, payload, b0 & 0x40 != 0)
        del buffer[:start]

    def _on_frame(self, fin: bool, opcode: int, payload: bytes, compressed: bool) -> None:
        if opcode == 0x8:
            self.close()
        elif opcode == 0x9 and self._transport is not None:
            self._transport.write(_frame(0xA, payload))
        elif opcode in (0x0, 0x1, 0x2):
            if opcode:
                self._partial_text = opcode == 0x1
                self._partial_compressed = compressed
            self._partial += payload
            if fin:
                whole = bytes(self._partial)
                self._partial.clear()
                if self._partial_compressed:
                    whole = self._inflate(whole)
                self._on_fragment(whole.decode() if self._partial_text else whole)

    @property
    def compressed_alone(self) -> bool:
        """The server compresses this session's messages each on its own (so one frame can be
        compressed once for every session)."""
        return self._compressed_by_server and self._independent

    def _inflate(self, data: bytes) -> bytes:
        if not self._compressed_by_server:
            raise SessionError("a compressed message, but no compression was agreed")
        if self._independent:
            return inflate_alone(data)
        return self._inflater.decompress(data + DEFLATE_TAIL)

    def _on_fragment(self, fragment: bytes | str) -> None:
        """Bokeh messages are header, metadata, content, then (buffer header, bytes) pairs."""
        fragments = self._fragments
        fragments.append(fragment)
        if len(fragments) < 3:
            return
        header = fragments[0]
        if not isinstance(header, str):
            raise SessionError("a Bokeh message started with a binary fragment")
        if '"num_buffers"' in header:
            wanted = 3 + 2 * int(json.loads(header).get("num_buffers", 0))
            if len(fragments) < wanted:
                return
        self._fragments = []
        self.messages += 1
        wire, self._message_wire = self._message_wire, 0
        buffers = {}
        for i in range(3, len(fragments), 2):
            buffer_header = json.loads(fragments[i])
            buffers[buffer_header["id"]] = bytes(fragments[i + 1])  # type: ignore[arg-type]
        self._on_message(header, str(fragments[2]), buffers, wire)

    def _on_message(
        self, header_text: str, content: str, buffers: dict[str, bytes], wire: int
    ) -> None:
        if not self._pulled.done():
            header = json.loads(header_text)
            msgtype = header.get("msgtype")
            if msgtype == "ACK":
                self._send_message("PULL-DOC-REQ")
            elif msgtype == "PULL-DOC-REPLY":
                self._read_document(json.loads(content)["doc"], buffers)
                self.pull_bytes = self.bytes
                self._pulled.set_result(None)
            elif msgtype == "ERROR":
                raise SessionError(f"the server refused the session: {content[:200]}")
            # patches before the reply are already in the document it brings
            return
        if '"PATCH-DOC"' not in header_text:
            return
        self.patch_headers.append(header_text)
        patch = read_patch(header_text, content, buffers)
        names = self.names
        plain = sum(patch.sizes.values()) or 1
        share = min(1.0, max(0, wire - sum(patch.buffer_sizes.values())) / plain)
        for model_id, size in patch.sizes.items():  # JSON as compressed, buffers as they are
            name = names.get(model_id, model_id)
            self.bytes_by_name[name] += size * share + patch.buffer_sizes[model_id]
        now = time.time()
        for model_id, change in patch.changes:
            if model_id == self.source_id:
                self._apply_change(change, now)

    def _read_document(self, doc: dict, buffers: dict[str, bytes]) -> None:
        source = _find_source(doc, SOURCE)
        if source is None:
            raise SessionError(f"the dashboard has no source named {SOURCE!r}")
        self.source_id = source["id"]
        self.names = _model_names(doc)
        self.page_sizes = _data_sizes(doc, buffers)
        data = _decode(source["attributes"].get("data", {}), buffers)
        self.has_sent_at = "sent_at" in data
        self.rows = _row_count(data)
        self.last_step = _newest(data, "step", self.rows)
        self.rows_changed.set()

    def _apply_change(self, change: Change, now: float) -> None:
        if change.step is not None:
            last = self.last_step
            streamed = change.kind == "ColumnsStreamed" and last is not None
            self.last_step = (
                max(last, change.step) if streamed and last is not None else change.step
            )
        if change.kind == "ColumnsStreamed":
            added = change.rows
            total = self.rows + added
            self.rows = min(total, change.rollover) if change.rollover else total
            lag = now - change.sent_at if change.sent_at is not None and added else None
            self.frames.append(Frame(now, added, lag))
        else:
            self.rows = change.rows
        self.rows_changed.set()


def _find_source(node: Any, name: str) -> dict | None:
    """The serialised ``ColumnDataSource`` named ``name`` anywhere in a pulled document."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            attributes = item.get("attributes")
            if (
                item.get("type") == "object"
                and isinstance(attributes, dict)
                and attributes.get("name") == name
                and "data" in attributes
            ):
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _named_models(doc: dict) -> Iterator[tuple[str, dict]]:
    """Every named model's id and attributes in a pulled document."""
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            attributes = item.get("attributes")
            if isinstance(attributes, dict) and isinstance(attributes.get("name"), str):
                yield item.get("id", ""), attributes
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _data_sizes(doc: dict, buffers: dict[str, bytes]) -> dict[str, int]:
    """The bytes of each named source's data (JSON and buffers) in a pulled document."""
    return {
        attributes["name"]: len(json.dumps(attributes["data"], separators=(",", ":")))
        + _buffer_bytes(attributes["data"], buffers)
        for _, attributes in _named_models(doc)
        if "data" in attributes
    }


def _model_names(doc: dict) -> dict[str, str]:
    """Every named model's id and name in a pulled document."""
    return {model_id: attributes["name"] for model_id, attributes in _named_models(doc)}


def _decode(value: Any, buffers: dict[str, bytes]) -> Any:
    """Bokeh's serialised form back to Python: maps to dicts, ndarrays to NumPy, numbers."""
    if isinstance(value, list):
        return [_decode(v, buffers) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind == "map":
        return {_decode(k, buffers): _decode(v, buffers) for k, v in value.get("entries", [])}
    if kind == "ndarray":
        array = value["array"]
        if isinstance(array, dict) and array.get("type") == "bytes":
            data = array["data"]
            raw = buffers[data["id"]] if isinstance(data, dict) else _base64(data)
            return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"])
        return np.asarray(_decode(array, buffers))
    if kind == "number":
        return float(value["value"])
    return value


def _base64(text: str) -> bytes:
    raw = base64.b64decode(text)
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _row_count(data: Any) -> int:
    if not isinstance(data, dict) or not data:
        return 0
    column = data.get("step", next(iter(data.values())))
    return len(column)


async def open_sessions(
    url: str, count: int, *, parallel: int, timeout: float, deflate: bool = True
) -> list[Session]:
    """Open ``count`` sessions, ``parallel`` at a time (the server builds each document);
    ``deflate``: they offer compression, as browsers do.

    Sessions start following patches as soon as each is open, so the first ones are not left
    with a backlog while the rest connect.
    """
    gate = asyncio.Semaphore(parallel)

    async def one() -> Session:
        async with gate:
            session = Session(url, deflate)
            await session.open(timeout)
            return session

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    sessions = [r for r in results if isinstance(r, Session)]
    failed = [r for r in results if not isinstance(r, Session)]
    if failed:
        for session in sessions:
            session.close()
        raise SessionError(f"{len(failed)} of {count} sessions failed to open: {failed[0]}")
    return sessions
