"""One ZeroMQ subscription per viewer process, feeding every browser session in it.

A background thread receives, validates and folds messages into :class:`RunHistory` objects;
sessions read from them on their own schedule. So a hundred open laptops cost one socket and
one decode per message, not a hundred.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import zmq

from protocol import MAX_MESSAGE_BYTES, ProtocolError, decode
from viewer.history import RunHistory

log = logging.getLogger("viewer")

RUNS_KEPT = 4
"""Runs held in memory; the oldest is forgotten when a new one starts."""


class Hub:
    def __init__(self, endpoint: str, *, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.lock = threading.Lock()
        self.runs: OrderedDict[str, RunHistory] = OrderedDict()
        self.received = 0
        self.rejected = 0
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, name="viewer-hub", daemon=True)

    @property
    def current(self) -> RunHistory | None:
        """The most recently started run: what the dashboard shows."""
        with self.lock:
            return next(reversed(self.runs.values()), None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _receive_loop(self) -> None:
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self.endpoint)
        log.info("viewer subscribed to %s", self.endpoint)
        try:
            while not self._stop.is_set():
                if socket.poll(200, zmq.POLLIN):
                    self._handle(socket.recv_multipart())
        finally:
            socket.close()

    def _handle(self, frames: list[bytes]) -> None:
        try:
            message = decode(frames)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("ignored invalid message: %s", exc)
            return
        with self.lock:
            self.received += 1
            run = self.runs.get(message.run_id)
            if run is None:
                run = self.runs[message.run_id] = RunHistory(message.run_id)
                log.info("new run %s", message.run_id)
                while len(self.runs) > RUNS_KEPT:
                    self.runs.popitem(last=False)
            run.apply(message)


_hub: Hub | None = None


def start(endpoint: str) -> Hub:
    """Start this process's hub (idempotent per endpoint: a second app load reuses it)."""
    global _hub
    if _hub is None:
        _hub = Hub(endpoint)
        _hub.start()
    return _hub


def current() -> Hub:
    if _hub is None:
        raise RuntimeError("the viewer hub is not running; serve the app with 'mnist-live view'")
    return _hub


def stop() -> None:
    global _hub
    if _hub is not None:
        _hub.stop()
        _hub = None
