"""Read what a socket has queued right now, up to a budget, without ever waiting.

Every loop in the broker, its clients and the publisher serves several sockets from one
thread, so none may block on one of them, and none may starve the others: each turn takes at
most ``budget`` messages and returns to its poller.
"""

from __future__ import annotations

from collections.abc import Iterator

import zmq


def drain(socket: zmq.Socket, budget: int) -> Iterator[list[bytes]]:
    """Yield queued multipart messages until the socket is empty or ``budget`` is spent."""
    for _ in range(budget):
        try:
            yield socket.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return
