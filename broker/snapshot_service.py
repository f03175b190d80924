"""The broker's request socket (ROUTER on ``--snapshot``): snapshots, stats, runs, control.

The requests and replies are :mod:`protocol.snapshot`'s models. A snapshot can be tens of
thousands of messages, so replies are queued and sent in batches with ``NOBLOCK``: a client
that stops reading fills its own pipe (``SNDHWM``, ROUTER_MANDATORY turns that into ``EAGAIN``
instead of a silent drop) and is resumed later or abandoned after :data:`STALL_SECONDS`; the
broker's forwarding loop never waits for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from pydantic import BaseModel

from broker.history import LISTENING_SECONDS, History
from broker.loop.ratelog import RateLimitedLog
from protocol import ControlCommand, ProtocolError, decode_control, encode_control, tokens
from protocol.runlog import Held
from protocol.snapshot import (
    ControlRequest,
    ErrorReply,
    OkReply,
    RunsReply,
    SnapshotEnd,
    SnapshotRequest,
    StatsReply,
    StatsRequest,
    message_frames,
    parse_request,
    reply_frames,
)

log = logging.getLogger("broker")

REPLY_HWM = 2_000
"""Messages queued per snapshot client before the broker holds the rest of its reply back."""
BATCH = 500
"""Messages sent to one client per turn of the loop, so many clients share the broker fairly."""
STALL_SECONDS = 10.0
"""A reply that makes no progress this long is abandoned (the client is gone or asleep)."""
MAX_PENDING = 64
"""Snapshot replies in progress at once; more requests are refused with an error."""
MAX_PENDING_PER_CLIENT = 4
"""Replies in progress for one client (one routing id): a client that asks and never reads
fills its own share, not everyone's (a viewer asks one snapshot, then a repair at a time)."""
MAX_GAPS_LISTED = 100


@dataclass
class Pending:
    """A snapshot reply being sent: the held messages chosen at request time, then ``end``."""

    envelope: list[bytes]
    items: list[Held]
    end: SnapshotEnd
    sent: int = 0
    last_progress: float = field(default_factory=time.monotonic)


class SnapshotService:
    def __init__(
        self,
        socket: zmq.Socket,
        history: History,
        stats: Callable[[], dict[str, Any]],
        upstream: Callable[[bytes], None],
        broker_id: str,
        presenter_token: str | None = None,
    ) -> None:
        self.socket = socket
        self.presenter_token = presenter_token
        """What a control request must carry; None: this broker relays no command."""
        self.history = history
        self.stats = stats
        self.upstream = upstream
        self.broker_id = broker_id
        self.pending: deque[Pending] = deque()
        self._refusals = RateLimitedLog(log, "refused control requests")
        self.counts: dict[str, int] = {
            "snapshot": 0,
            "repair": 0,
            "stats": 0,
            "runs": 0,
            "control": 0,
            "control_refused": 0,
            "control_unheard": 0,
            "invalid": 0,
            "messages_sent": 0,
            "abandoned": 0,
            "undeliverable": 0,
        }

    def handle(self, frames: list[bytes]) -> None:
        """Answer one request (``[routing id, (empty,) json]``); never raises on bad input."""
        if not 2 <= len(frames) <= 3 or (len(frames) == 3 and frames[1] != b""):
            self.counts["invalid"] += 1  # no way to tell what to reply to: ignore
            return
        envelope, body = frames[:-1], frames[-1]
        try:
            request = parse_request(body)
        except ProtocolError as exc:
            return self._error(envelope, None, str(exc).partition(": ")[2])
        match request:
            case SnapshotRequest():
                self._snapshot(envelope, request)
            case StatsRequest():
                self.counts["stats"] += 1
                self._reply(envelope, StatsReply(type="stats", id=request.id, **self.stats()))
            case ControlRequest():
                self._control(envelope, request)
            case _:  # RunsRequest
                self.counts["runs"] += 1
                runs = [run.summary() for run in self.history]
                self._reply(envelope, RunsReply(type="runs", id=request.id, runs=runs))

    def _snapshot(self, envelope: list[bytes], request: SnapshotRequest) -> None:
        repair = request.from_seq > 0 or request.to_seq is not None
        self.counts["repair" if repair else "snapshot"] += 1
        mine = sum(1 for reply in self.pending if reply.envelope[0] == envelope[0])
        if mine >= MAX_PENDING_PER_CLIENT:
            return self._error(
                envelope, request.id, "too many of your snapshots in progress; read them first"
            )
        if len(self.pending) >= MAX_PENDING:
            return self._error(envelope, request.id, "broker busy with other snapshots; retry")
        run = self.history.find(request.run)
        end = SnapshotEnd(
            type="end",
            id=request.id,
            run=run.run_id if run else request.run,
            known=run is not None,
            from_seq=request.from_seq,
            to_seq=-1,
            last_seq=-1,
            sent=0,
            gone=0,
            unseen=[],
            broker=self.broker_id,
        )
        items: list[Held] = []
        if run is not None:
            last = run.last_seq
            to_seq = last if request.to_seq is None else min(request.to_seq, last)
            items = run.select(request.from_seq, to_seq) if to_seq >= request.from_seq else []
            end.last_seq, end.to_seq, end.sent = last, to_seq, len(items)
            if to_seq >= request.from_seq:
                gaps = run.seen.gaps(request.from_seq, to_seq, MAX_GAPS_LISTED)
                end.unseen = [(a, b) for a, b in gaps]
                end.gone = run.seen.count(request.from_seq, to_seq) - len(items)
        self.pending.append(Pending(envelope, items, end))
        self.pump()

    def _control(self, envelope: list[bytes], request: ControlRequest) -> None:
        token = self.presenter_token
        if token is None or not tokens.same(request.token, token):
            self.counts["control_refused"] += 1
            self._refusals("token", "without the presenter's token" if token else "no token set")
            reason = (
                "this broker takes no commands"
                if token is None
                else (
                    "a control request needs the presenter's token "
                    "(mnist-live control finds it as the broker does: see its --help)"
                )
            )
            return self._error(envelope, request.id, f"refused: {reason}")
        try:
            command: ControlCommand = decode_control(json.dumps(request.command).encode())
        except ProtocolError as exc:
            return self._error(envelope, request.id, f"bad control command: {exc}")
        if not self.history.listening(command.run_id):
            self.counts["control_unheard"] += 1
            which = "no trainer" if command.run_id == "*" else f"no trainer of run {command.run_id}"
            return self._error(
                envelope,
                request.id,
                f"{which} is listening (nothing has been heard from one in the last "
                f"{LISTENING_SECONDS:g} s); start one with 'mnist-live train'",
            )
        self.counts["control"] += 1
        self.upstream(encode_control(command))
        log.info("relayed control %r for run %s to the publishers", command.command, command.run_id)
        self._reply(envelope, OkReply(type="ok", id=request.id))

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def pump(self) -> None:
        """Send the next batch of every reply in progress, without ever waiting."""
        now = time.monotonic()
        for _ in range(len(self.pending)):
            reply = self.pending.popleft()
            try:
                done = self._send_batch(reply, now)
            except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away
                log.info("snapshot client gone (%s); reply dropped", exc.strerror)
                self.counts["abandoned"] += 1
                continue
            if done:
                continue
            if now - reply.last_progress > STALL_SECONDS:
                log.warning("snapshot client stalled for %.0f s; reply abandoned", STALL_SECONDS)
                self.counts["abandoned"] += 1
                continue
            self.pending.append(reply)

    def _send_batch(self, reply: Pending, now: float) -> bool:
        """True when the whole reply, end marker included, is out."""
        stop = min(reply.sent + BATCH, len(reply.items))
        try:
            while reply.sent < stop:
                held = reply.items[reply.sent]
                self.socket.send_multipart(
                    [*reply.envelope, *message_frames(held.frames)], flags=zmq.NOBLOCK, copy=False
                )
                reply.sent += 1
                reply.last_progress = now
                self.counts["messages_sent"] += 1
            if reply.sent < len(reply.items):
                return False
            self._send_json(reply.envelope, reply.end)
        except zmq.Again:
            return False
        return True

    def _send_json(self, envelope: list[bytes], body: BaseModel) -> None:
        self.socket.send_multipart([*envelope, *reply_frames(body)], flags=zmq.NOBLOCK)

    def _reply(self, envelope: list[bytes], body: BaseModel) -> None:
        """Send a one-frame answer; a client that cannot take it now is not waited for."""
        try:
            self._send_json(envelope, body)
        except zmq.ZMQError:
            self.counts["undeliverable"] += 1

    def _error(self, envelope: list[bytes], request_id: Any, message: str) -> None:
        self.counts["invalid"] += 1
        self._reply(envelope, ErrorReply(type="error", id=request_id, message=message))
