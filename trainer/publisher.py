"""Send a run's messages to the broker without ever making training wait.

The socket is an XPUB rather than a PUB so the trainer can see when a broker subscribes (at
start, or after the broker restarts) instead of sending into the void. ZeroMQ queues sends in
its I/O thread and drops at the high-water mark, so a missing or slow broker costs the training
loop only the encode.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import zmq

from protocol import Envelope, encode

log = logging.getLogger(__name__)

SEND_HWM = 10_000
"""Messages queued per broker connection before ZeroMQ drops; ~8 minutes at default cadences."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Publisher:
    """Stamps each message with this run's id and next sequence number, then sends it."""

    def __init__(self, endpoint: str, run_id: str | None = None, *, linger_ms: int = 1000) -> None:
        self.run_id = run_id or new_run_id()
        self.endpoint = endpoint
        self.seq = 0
        self.sent_by_kind: dict[str, int] = {}
        self._context: zmq.Context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        self._socket.connect(endpoint)
        self.subscribed = False

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a broker to subscribe; True if one did."""
        deadline = time.monotonic() + timeout
        while not self.subscribed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._socket.poll(int(remaining * 1000), zmq.POLLIN):
                self._drain_subscriptions()
        return self.subscribed

    def send(self, model: type[Envelope], **fields: Any) -> Envelope:
        """Build, validate and send one message; returns it for the caller's own records."""
        message = model(run_id=self.run_id, seq=self.seq, **fields)
        self.seq += 1
        self._drain_subscriptions()
        try:
            self._socket.send_multipart(encode(message), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.debug("send queue full; dropped %s %d", message.kind, message.seq)
        self.sent_by_kind[message.kind] = self.sent_by_kind.get(message.kind, 0) + 1
        return message

    def _drain_subscriptions(self) -> None:
        while self._socket.poll(0, zmq.POLLIN):
            frame = self._socket.recv()
            if frame[:1] == b"\x01" and not self.subscribed:
                log.info("broker subscribed at %s", self.endpoint)
            self.subscribed = self.subscribed or frame[:1] == b"\x01"

    def close(self) -> None:
        """Close the socket, giving queued messages up to the linger time to leave."""
        self._socket.close()
