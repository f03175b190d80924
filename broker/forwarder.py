"""The broker's core: receive from publishers, validate, forward to subscribers.

Publishers connect to an XSUB socket and subscribers to an XPUB socket, as in ZeroMQ's proxy
pattern, but every message is decoded and validated on the way through so that a confused or
hostile publisher can never reach a viewer. The XSUB subscribes to everything itself: the
broker hears the whole run even when no viewer is connected yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import zmq

from protocol import MAX_MESSAGE_BYTES, ProtocolError, decode

log = logging.getLogger("broker")

SUBSCRIBER_HWM = 10_000
"""Messages queued per subscriber before ZeroMQ drops; about eight minutes of a default run."""


@dataclass
class Stats:
    received: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)


class DropLog:
    """Logs the first drop of each reason at once, then one summary per ``interval`` seconds."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval) < self.interval:
            self._suppressed[reason] += 1
            return
        extra = self._suppressed.pop(reason, 0)
        suffix = f" (+{extra} more since last report)" if extra else ""
        log.warning("dropped invalid message: %s%s", detail, suffix)
        self._last[reason] = now


class Forwarder:
    def __init__(
        self,
        in_endpoint: str,
        out_endpoint: str,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        context: zmq.Context | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.stats = Stats()
        self._drop_log = DropLog()
        context = context or zmq.Context.instance()
        self.frontend = context.socket(zmq.XSUB)
        self.frontend.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.frontend.setsockopt(zmq.LINGER, 0)
        self.backend = context.socket(zmq.XPUB)
        self.backend.setsockopt(zmq.SNDHWM, SUBSCRIBER_HWM)
        self.backend.setsockopt(zmq.LINGER, 0)
        self.frontend.bind(in_endpoint)
        self.backend.bind(out_endpoint)
        self.frontend.send(b"\x01")  # subscribe to every topic from every publisher
        self.endpoints = (
            self.frontend.getsockopt_string(zmq.LAST_ENDPOINT),
            self.backend.getsockopt_string(zmq.LAST_ENDPOINT),
        )

    def handle(self, frames: list[bytes]) -> None:
        """Validate one received multipart and forward it, or count why not."""
        self.stats.received += 1
        try:
            message = decode(frames, self.max_message_bytes)
        except ProtocolError as exc:
            self.stats.dropped[exc.reason] += 1
            self._drop_log(exc.reason, str(exc))
            return
        self.backend.send_multipart(frames, flags=zmq.NOBLOCK)
        self.stats.forwarded[message.kind] += 1

    def run(self, stop: threading.Event | None = None, poll_ms: int = 200) -> None:
        """Forward until ``stop`` is set (or forever); Ctrl-C propagates to the caller."""
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        while not (stop and stop.is_set()):
            for socket, _ in poller.poll(poll_ms):
                if socket is self.frontend:
                    self._drain_frontend()
                else:
                    self._drain_subscriptions()

    def _drain_frontend(self, budget: int = 1000) -> None:
        for _ in range(budget):
            try:
                self.handle(self.frontend.recv_multipart(flags=zmq.NOBLOCK))
            except zmq.Again:
                return

    def _drain_subscriptions(self) -> None:
        """Subscriptions are not forwarded upstream: the broker already takes everything."""
        while self.backend.poll(0, zmq.POLLIN):
            event = self.backend.recv()
            if event[:1] == b"\x01":
                log.info("subscriber joined (topic %r)", event[1:].decode(errors="replace"))

    def close(self) -> None:
        self.frontend.close()
        self.backend.close()
