"""permessage-deflate for the broadcast: a frame compressed once, written to every browser.

Every browser offers the websocket compression of RFC 7692, and Bokeh turns Tornado's on with
``websocket_compression_level``. Tornado then compresses each message per connection and, by
default, with a window carried over from that connection's earlier messages (context
takeover), so one connection's compressed bytes fit no other and the broadcast could not write
one frame to all. Here the server side gives context takeover up, and says so in its answer
(``server_no_context_takeover``): every message is compressed on its own, so one compressed
once (:func:`deflated`) is valid on every connection, whatever came before on it.

What it buys: the JSON parts of a frame (curve rows, probabilities, the confusion matrix, the
header) shrink about 2.7 times; binary buffers go as they are (a message says by its RSV1 bit
whether it is compressed), since the pictures in them are deflated already
(:mod:`viewer.panels.pictures`). What it costs: one compression a frame per process, and
Tornado's own per connection for a session's own messages (its first page, acknowledgements).

Tornado's internals touched: ``WebSocketProtocol13._create_compressors`` and a protocol's
``_compressor`` (pinned with Tornado, checked by ``tests/test_pins.py``).
"""

from __future__ import annotations

import functools
import zlib
from typing import Any

from tornado.websocket import WebSocketProtocol13

LEVEL = 6
"""zlib level for messages (Bokeh's ``websocket_compression_level``)."""
SMALLEST = 64
"""Payloads shorter than this go uncompressed: deflate's framing would outweigh the gain."""
_TAIL = b"\x00\x00\xff\xff"


def install() -> None:
    """Make this process's websocket servers compress every message on its own."""
    create = WebSocketProtocol13._create_compressors
    if getattr(create, "_mnist_live", False):
        return

    @functools.wraps(create)
    def create_without_context(
        self: WebSocketProtocol13,
        side: str,
        agreed_parameters: dict[str, Any],
        compression_options: dict[str, Any] | None = None,
    ) -> None:
        if side == "server":  # the dict is the answer Tornado sends back: the browser is told
            agreed_parameters.setdefault("server_no_context_takeover", None)
        create(self, side, agreed_parameters, compression_options)

    create_without_context._mnist_live = True  # type: ignore[attr-defined]
    WebSocketProtocol13._create_compressors = create_without_context  # type: ignore[method-assign]


def independent(socket: Any) -> bool:
    """Whether ``socket`` (a Tornado websocket protocol) takes messages compressed on their own:
    it compresses, and without context takeover."""
    compressor = getattr(socket, "_compressor", None)
    return (
        compressor is not None
        and getattr(compressor, "_compressor", True) is None
        and getattr(compressor, "_max_wbits", None) == zlib.MAX_WBITS  # the window compressed with
    )


def deflated(payload: bytes) -> bytes | None:
    """``payload`` as one compressed message's data (RFC 7692 §7.2.1), None when too short to
    gain."""
    if len(payload) < SMALLEST:
        return None
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[: -len(_TAIL)] if data.endswith(_TAIL) else data
    return data if len(data) < len(payload) else None
