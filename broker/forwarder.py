"""The broker's core: receive from publishers, validate, remember, forward to subscribers.

Publishers connect to an XSUB socket and subscribers to an XPUB socket, as in ZeroMQ's proxy
pattern, but every message is validated once on the way through, so a confused or hostile
publisher can never reach a viewer, and every valid one is added to the run's
:class:`~broker.history.History` before it is forwarded, and handed to the tap, if any (the
recording, :mod:`broker.tap`). A ROUTER socket answers snapshot, stats and control requests
(:mod:`broker.snapshot_service`): the Clone pattern of the ZeroMQ guide.
The XSUB subscribes to everything itself, so the broker hears the whole run even when no
viewer is connected yet. One thread does all of it; no step ever waits on a peer.
"""

from __future__ import annotations

import gc
import logging
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import zmq

from broker.curve.gate import Gate
from broker.curve.keys import ServerKeys
from broker.history import RUNS_KEPT, History
from broker.loop.drain import drain
from broker.loop.ratelog import RateLimitedLog
from broker.snapshot_service import REPLY_HWM, SnapshotService
from broker.tap import Tap
from protocol import MAX_MESSAGE_BYTES, ProtocolError, decode
from protocol.endpoints import keep_alive, snapshot_endpoint_for
from protocol.runlog import HISTORY_BYTES
from protocol.snapshot import MAX_REQUEST_BYTES

log = logging.getLogger("broker")

SUBSCRIBER_HWM = 10_000
"""Messages queued per subscriber before ZeroMQ drops for that subscriber alone: about eight
minutes of a default run, or a few seconds of a re-publish burst. A subscriber that falls
further behind sees a sequence gap and repairs it from the snapshot service."""
SUBSCRIBER_STALL_MS = 10_000
"""A subscriber whose TCP window stays shut this long (it takes nothing) is cut off by the
kernel (``TCP_USER_TIMEOUT``), even one whose ZeroMQ still answers heartbeats; a stopped one
is cut sooner, by the heartbeat timeout. Either way what was queued for it is freed (and,
with :mod:`broker.loop.memory`, handed back to the system): ZeroMQ's high-water mark counts
messages, not bytes, so a stalled subscriber pins what the broker forwards in those seconds
and no more. When it wakes it reconnects and repairs the gap from the snapshot service."""
FREEZE_EVERY = 20_000
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = _NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
PUBLISHER_HWM = 100_000
"""Messages queued from each publisher: room for a whole run re-published after a restart."""


@dataclass
class Stats:
    received: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    subscriptions: int = 0
    started: float = field(default_factory=time.time)

    @property
    def forwarded(self) -> Counter[str]:
        """Every accepted message is forwarded: an XPUB send never refuses (a subscriber's
        full queue drops for that subscriber alone, and it repairs the gap), so one count."""
        return self.accepted


class Forwarder:
    def __init__(
        self,
        in_endpoint: str,
        out_endpoint: str,
        snapshot_endpoint: str | None = None,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        history_bytes: int = HISTORY_BYTES,
        runs_kept: int = RUNS_KEPT,
        subscriber_hwm: int = SUBSCRIBER_HWM,
        context: zmq.Context | None = None,
        tap: Tap | None = None,
        presenter_token: str | None = None,
        curve: ServerKeys | None = None,
    ) -> None:
        """``presenter_token``: what a control request must carry to be relayed (None: the
        broker relays none; :mod:`protocol.tokens`). ``curve``: encrypt every connection and
        admit listed keys only (:mod:`broker.curve`)."""
        self.max_message_bytes = max_message_bytes
        self.tap = tap
        self.stats = Stats()
        self.history = History(history_bytes, runs_kept)
        self.broker_id = secrets.token_hex(4)
        self._drop_log = RateLimitedLog(log, "dropped invalid message")
        context = context or zmq.Context.instance()
        self.gate: Gate | None = None
        self.frontend = keep_alive(context.socket(zmq.XSUB))
        self.frontend.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.frontend.setsockopt(zmq.RCVHWM, PUBLISHER_HWM)
        self.frontend.setsockopt(zmq.LINGER, 0)
        self.backend = keep_alive(context.socket(zmq.XPUB))
        self.backend.setsockopt(zmq.SNDHWM, subscriber_hwm)
        self.backend.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe: count subscribers
        self.backend.setsockopt(zmq.LINGER, 0)
        self.backend.setsockopt(zmq.TCP_MAXRT, SUBSCRIBER_STALL_MS)
        self.router = keep_alive(context.socket(zmq.ROUTER))
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # full client pipe: EAGAIN, not a drop
        self.router.setsockopt(zmq.SNDHWM, REPLY_HWM)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES + 1024)
        self.router.setsockopt(zmq.LINGER, 0)
        try:
            if curve is not None:  # the gate (a ZAP handler) is up before anything is bound
                self.gate = Gate(context, curve)
                self.gate.secure(self.frontend, "publisher", "in")
                self.gate.secure(self.backend, "subscriber", "out")
                self.gate.secure(self.router, "subscriber", "snapshot")
            self.frontend.bind(in_endpoint)
            self.backend.bind(out_endpoint)
            self.router.bind(snapshot_endpoint or snapshot_endpoint_for(out_endpoint))
        except zmq.ZMQError:
            self._close_sockets()  # the tap stays the caller's until the forwarder exists
            raise
        self.frontend.send(b"\x01")  # subscribe to every topic from every publisher
        self.endpoints = tuple(
            s.getsockopt_string(zmq.LAST_ENDPOINT) for s in (self.frontend, self.backend)
        )
        self.snapshot_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.service = SnapshotService(
            self.router,
            self.history,
            self.stats_json,
            self.frontend.send,
            self.broker_id,
            presenter_token,
        )

    def handle(self, frames: list[bytes]) -> None:
        """Validate one received multipart, remember and forward it, or count why not."""
        self.stats.received += 1
        if self.stats.received % FREEZE_EVERY == 0:
            # The history is millions of long-lived objects without cycles: keep the cyclic
            # garbage collector from walking them all (tens of ms) every few seconds.
            gc.freeze()
        try:
            message = decode(frames, self.max_message_bytes)
        except ProtocolError as exc:
            return self._drop(exc.reason, str(exc))
        except Exception as exc:  # e.g. RecursionError on absurdly nested JSON: still a drop
            return self._drop("invalid", f"{type(exc).__name__}: {exc}")
        kind = message.kind
        refused = self.history.add(message.run_id, message.seq, kind, frames)
        if refused is not None:
            return self._drop(refused, f"{kind} seq {message.seq} of run {message.run_id}")
        send, last = self.backend.send, len(frames) - 1
        for i, frame in enumerate(frames):  # send_multipart minus its per-call overhead
            send(frame, _MORE if i < last else _LAST)
        self.stats.accepted[kind] += 1
        if self.tap is not None:  # the recording: hands over what is at hand, never waits
            self.tap.submit(message, frames)

    def _drop(self, reason: str, detail: str) -> None:
        self.stats.dropped[reason] += 1
        self._drop_log(reason, detail)

    def run(self, stop: threading.Event | None = None, poll_ms: int = 200) -> None:
        """Forward until ``stop`` is set (or forever); Ctrl-C propagates to the caller."""
        poller = zmq.Poller()
        for socket in (self.frontend, self.backend, self.router):
            poller.register(socket, zmq.POLLIN)
        monitors = self.gate.monitors if self.gate is not None else []
        for monitor in monitors:
            poller.register(monitor, zmq.POLLIN)
        tap, tap_due = self.tap, poll_ms
        while not (stop and stop.is_set()):
            timeout = 1 if self.service.busy else min(poll_ms, tap_due)
            ready = dict(poller.poll(timeout))
            if self.frontend in ready:
                self._drain_frontend()
            if tap is not None:
                tap_due = max(1, int(tap.tick() * 1000))
            if self.backend in ready:
                self._drain_subscriptions()
            if self.router in ready:
                self._drain_requests()
            if self.service.busy:
                self.service.pump()
            for monitor in monitors:
                if monitor in ready:
                    self.gate.drain(monitor)  # type: ignore[union-attr]

    def _drain_frontend(self, budget: int = 2000) -> None:
        socket = self.frontend
        recv, more = socket.recv, socket.getsockopt
        for _ in range(budget):  # recv_multipart, minus its per-call overhead
            try:
                frames = [recv(_NOBLOCK)]
            except zmq.Again:
                return
            while more(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            self.handle(frames)

    def _drain_subscriptions(self) -> None:
        """Count subscribers; subscriptions go no further (the broker takes everything)."""
        for frames in drain(self.backend, 1000):
            event = frames[0]
            if event[:1] == b"\x01":
                self.stats.subscriptions += 1
                log.info("subscriber joined (topic %r)", event[1:].decode(errors="replace"))
            elif event[:1] == b"\x00":
                self.stats.subscriptions = max(0, self.stats.subscriptions - 1)
                log.info("subscriber left (topic %r)", event[1:].decode(errors="replace"))

    def _drain_requests(self, budget: int = 100) -> None:
        for frames in drain(self.router, budget):
            self.service.handle(frames)

    def stats_json(self) -> dict[str, Any]:
        """The figures ``mnist-live status`` prints."""
        s = self.stats
        return {
            "broker": self.broker_id,
            "uptime": round(time.time() - s.started, 3),
            "started": s.started,
            "endpoints": {
                "in": self.endpoints[0],
                "out": self.endpoints[1],
                "snapshot": self.snapshot_endpoint,
            },
            "received": s.received,
            "in_by_kind": dict(s.accepted),
            "out_by_kind": dict(s.accepted),
            "dropped": dict(s.dropped),
            "subscribers": s.subscriptions,
            "runs": [run.summary().model_dump() for run in self.history],
            "runs_retired": self.history.retired,
            "bytes_held": self.history.held_bytes,
            "requests": dict(self.service.counts),
            "replies_in_progress": len(self.service.pending),
            "recording": self.tap.stats() if self.tap is not None else None,
            "curve": None
            if self.gate is None
            else {"refused": dict(self.gate.refused), "total_refused": self.gate.refused.total()},
        }

    def close(self) -> None:
        """Close the sockets, then the tap (which may take a while to finish its work)."""
        self._close_sockets()
        if self.tap is not None:
            self.tap.close()

    def _close_sockets(self) -> None:
        for socket in (self.frontend, self.backend, self.router):
            socket.close()
        if self.gate is not None:
            self.gate.close()
