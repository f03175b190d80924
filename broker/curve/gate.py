"""The broker's door keeper: admits CURVE clients whose public key is listed, counts the rest.

Without a ZAP handler, a CURVE server admits any client that knows the server's public key,
so encryption alone would let anyone in who has read the key folder once. pyzmq's
:class:`~zmq.auth.thread.ThreadAuthenticator` answers ZAP requests in a thread of its own; it
asks :class:`_Listed` whether a key is on the list of its socket's domain.

A refused handshake shows on the refusing socket's monitor as ``HANDSHAKE_FAILED_*``: an
unknown key (ZAP said no), a NULL or PLAIN client, or a client that encrypted to another
server key (the broker cannot read its HELLO). Every socket's monitor is drained with the
broker's other sockets; refusals are counted for ``status`` and logged at a bounded rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from broker.curve.keys import ALLOWED, ROLES, Role, ServerKeys
from broker.loop.ratelog import RateLimitedLog

log = logging.getLogger("broker.curve")

REFUSALS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "key not listed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "not CURVE, or encrypted to another broker's key",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
}
RELOAD_SECONDS = 1.0
"""A handshake rereads the lists when they are older than this: a key added to a folder is
admitted, and one removed refused, from the next connection on, without a restart (a
connection already made stays), and a flood of handshakes cannot keep the disk busy."""


class _Listed:
    """The ZAP callback: is this key on the list of this domain? (Runs on the auth thread.)"""

    def __init__(self, keys: ServerKeys) -> None:
        self.keys = keys
        self._lock = threading.Lock()
        self._lists: dict[str, set[bytes]] = {}
        self._read_at = 0.0
        self._reread()

    def _reread(self) -> None:
        for role in ROLES:
            keys = self.keys.allowed(role)
            if keys is not None:  # an unreadable folder keeps the list it had
                self._lists[ALLOWED[role]] = keys
        self._read_at = time.monotonic()

    def callback(self, domain: str, key: bytes) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at >= RELOAD_SECONDS:
                self._reread()
            return key in self._lists.get(domain, ())


class Gate:
    """The ZAP authenticator of one context and the monitors of the sockets it guards."""

    def __init__(self, context: zmq.Context, keys: ServerKeys) -> None:
        self.keys = keys
        self.refused: Counter[str] = Counter()
        self._log = RateLimitedLog(log, "refused a connection")
        self._monitors: dict[zmq.Socket, str] = {}
        self._auth = ThreadAuthenticator(context, log=logging.getLogger("broker.curve.zap"))
        self._auth.start()
        listed = _Listed(keys)
        for role in ROLES:
            self._auth.configure_curve_callback(ALLOWED[role], listed)

    @property
    def monitors(self) -> list[zmq.Socket]:
        """Sockets to poll for input; :meth:`drain` reads them."""
        return list(self._monitors)

    def secure(self, socket: zmq.Socket, role: Role, name: str) -> zmq.Socket:
        """Make ``socket`` a CURVE server admitting ``role``'s keys and watch its handshakes;
        ``name`` (``in``, ``out``, ``snapshot``) labels its refusals. Before ``bind``."""
        self.keys.secure(socket, role)
        events = 0
        for event in REFUSALS:
            events |= event
        self._monitors[socket.get_monitor_socket(events)] = name
        return socket

    def drain(self, monitor: zmq.Socket, budget: int = 100) -> None:
        name = self._monitors[monitor]
        for _ in range(budget):
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            reason = REFUSALS.get(event["event"])
            if reason is None:
                continue
            self.refused[name] += 1
            self._log(name, f"--{name} {event['endpoint'].decode(errors='replace')}: {reason}")

    def close(self) -> None:
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        self._auth.stop()
