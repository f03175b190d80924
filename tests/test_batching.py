"""A frame's changes reach the browser as one message, and arrive whole and in order.

A real Bokeh server on its own thread runs an app that changes three properties a frame inside
``one_message``, and every fifth frame also adds a new model (which needs Bokeh's own encoding
of the browser's model set). One client counts the PATCH-DOC messages on the wire; Bokeh's own
client applies them and must end with the same document the server has.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div

from tests.conftest import bokeh_app_server
from tests.documents import receive
from viewer.server import deflate
from viewer.server.batching import RSV1, one_message, shared_message, wire_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from fanout_client import Session, open_sessions

FRAMES = 40
NEW_MODEL_EVERY = 5


def batched_app(doc: Document) -> None:
    loss = ColumnDataSource({"step": [0], "sent_at": [time.time()]}, name="loss")
    other = ColumnDataSource({"x": [0]}, name="other")
    text = Div(text="0", name="text")
    box = column(Div(text="first"), name="box")
    doc.add_root(column(text, box, name="root"))
    doc.add_root(loss)
    doc.add_root(other)
    frame = [0]

    def tick() -> None:
        if frame[0] >= FRAMES:
            return
        frame[0] += 1
        n = frame[0]
        with one_message(doc):
            loss.stream({"step": [n], "sent_at": [time.time()]}, rollover=1000)
            other.data = {"x": list(range(n + 1))}
            text.text = str(n)
            if n % NEW_MODEL_EVERY == 0:
                box.children = [*box.children, Div(text=f"new {n}")]

    doc.add_periodic_callback(tick, 40)


@pytest.fixture
def server_port() -> Iterator[int]:
    with bokeh_app_server(batched_app) as port:
        yield port


class Counting(Session):
    """Records the events of every PATCH-DOC message after the document was pulled."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.patches: list[list[dict]] = []

    def _on_message(
        self, header_text: str, content: str, buffers: dict[str, bytes], wire: int
    ) -> None:
        if self._pulled.done() and json.loads(header_text).get("msgtype") == "PATCH-DOC":
            self.patches.append(json.loads(content)["events"])
        super()._on_message(header_text, content, buffers, wire)


def test_each_frame_is_one_message_holding_all_its_changes(server_port: int) -> None:
    async def watch() -> Counting:
        url = f"ws://127.0.0.1:{server_port}/ws"
        [session] = await open_sessions(url, 1, parallel=1, timeout=10)
        assert isinstance(session, Session)
        counting = Counting(url)
        await counting.open(timeout=10)
        session.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(counting.patches) < FRAMES // 2:
            await asyncio.sleep(0.05)
        counting.close()
        return counting

    session = asyncio.run(watch())
    assert session.error is None
    assert len(session.patches) >= FRAMES // 2
    kinds = [[e["kind"] for e in events] for events in session.patches]
    with_model = [k for k in kinds if len(k) == 4]
    assert with_model, "no frame added a model"
    for frame_kinds in kinds:
        assert frame_kinds[:3] == ["ColumnsStreamed", "ColumnDataChanged", "ModelChanged"]
        assert len(frame_kinds) in (3, 4)
    new_children = [events[3] for events in session.patches if len(events) == 4]
    # The added Div goes whole (its definition), the ones the browser has as references.
    for event in new_children:
        children = event["new"]
        assert "attributes" in children[-1] and children[-1]["attributes"]["text"].startswith(
            "new "
        )
        assert all(set(child) == {"id"} for child in children[:-1])


def test_bokehs_own_client_ends_with_the_servers_document(server_port: int) -> None:
    session = pull_session(url=f"http://127.0.0.1:{server_port}/")
    try:
        deadline = time.monotonic() + 20
        doc = session.document
        while time.monotonic() < deadline and doc.get_model_by_name("text").text != str(FRAMES):  # type: ignore[union-attr]
            receive([session], 0.3)
        assert doc.get_model_by_name("text").text == str(FRAMES)  # type: ignore[union-attr]
        loss = doc.get_model_by_name("loss").data  # type: ignore[union-attr]
        other = doc.get_model_by_name("other").data  # type: ignore[union-attr]
        box = doc.get_model_by_name("box").children  # type: ignore[union-attr]
        assert list(loss["step"])[-1] == FRAMES
        assert list(loss["step"]) == sorted(loss["step"])
        assert list(other["x"]) == list(range(FRAMES + 1))
        texts = [child.text for child in box]
        assert texts == ["first", *(f"new {n}" for n in range(5, FRAMES + 1, NEW_MODEL_EVERY))]
    finally:
        session.close()


def test_outside_a_server_session_changes_go_as_usual() -> None:
    doc = Document()
    source = ColumnDataSource({"x": [1]})
    doc.add_root(source)
    seen: list[object] = []
    doc.on_change(seen.append)
    with one_message(doc):
        source.data = {"x": [2]}
        source.stream({"x": [3]})
    assert len(seen) == 2
    assert list(source.data["x"]) == [2, 3]


def frames(wire: bytes) -> list[tuple[bool, int, bytes]]:
    """A server's unmasked websocket frames: (compressed, opcode, payload) each."""
    found, at = [], 0
    while at < len(wire):
        b0, n = wire[at], wire[at + 1] & 0x7F
        at += 2
        if n == 126:
            (n,) = struct.unpack_from("!H", wire, at)
            at += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", wire, at)
            at += 8
        assert b0 & 0x80, "every message is one final frame"
        found.append((bool(b0 & RSV1), b0 & 0x0F, wire[at : at + n]))
        at += n
    return found


def test_a_frame_compressed_once_inflates_to_the_plain_frames() -> None:
    doc = Document()
    source = ColumnDataSource({"step": [0], "label": ["a"]}, name="loss")
    doc.add_root(source)
    events: list = []
    doc.on_change(events.append)
    source.stream({"step": list(range(1, 200)), "label": ["the same words"] * 199})
    source.data = {"step": np.arange(50, dtype=np.int32), "label": ["b"] * 50}  # a buffer
    message = shared_message(events)
    assert message is not None and message.buffers
    plain, packed = frames(wire_bytes(message)), frames(wire_bytes(message, compressed=True))
    assert [opcode for _, opcode, _ in plain] == [opcode for _, opcode, _ in packed]
    assert not any(compressed for compressed, _, _ in plain)
    assert packed[2][0], "the content JSON goes compressed"
    assert len(wire_bytes(message, compressed=True)) < len(wire_bytes(message)) / 2
    for (_, opcode, raw), (compressed, _, data) in zip(plain, packed, strict=True):
        if compressed:
            assert opcode == 0x1, "buffers go as they are"
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data + b"\x00\x00\xff\xff")
        assert data == raw
    assert wire_bytes(message, compressed=True) is wire_bytes(message, compressed=True)


def test_the_server_answers_compression_without_context_takeover() -> None:
    """Tornado, patched by ``deflate.install``, tells the browser that every message is
    compressed on its own, and compresses them so (what lets one frame fit every page)."""
    deflate.install()
    with bokeh_app_server(batched_app, websocket_compression_level=deflate.LEVEL) as port:

        async def watch() -> Session:
            [session] = await open_sessions(f"ws://127.0.0.1:{port}/ws", 1, parallel=1, timeout=10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and session.rows < 20:
                await asyncio.sleep(0.05)
            session.close()
            return session

        session = asyncio.run(watch())
    assert session.error is None and session.rows >= 20
    assert session.compressed_alone
