"""The Clone dance for any subscriber: the whole run, in order, each message exactly once.

Plain SUB sockets forget: whoever connects late misses the start, whoever falls behind loses
messages silently at a high-water mark. :class:`CloneClient` follows the ZeroMQ guide's Clone
pattern (chapter 5, ``clonecli5``) against the broker's two endpoints, as a state machine:

- :attr:`Phase.ASKING`: subscribed to the live stream (``--out``) first, buffering what
  arrives, it asks the snapshot service (``--snapshot``) which runs it holds;
- :attr:`Phase.SYNCING`: it fetches each run's history from sequence 0, oldest run first,
  applies it and drops buffered duplicates (``seq`` already delivered);
- :attr:`Phase.LIVE`: every run is delivered in order as it arrives;
- :attr:`Phase.REPAIRING`: live, with a gap in some run: when a run's ``seq`` jumps, the later
  messages are held back and the missing range is asked for, then delivered in order. Ranges
  the broker no longer has (superseded "latest-only" messages, evicted history) are skipped;
  ranges it has not seen yet (e.g. just after a broker restart, while the trainer
  re-publishes) are retried until ``gap_timeout`` and then given up and counted, so a dead
  broker cannot wedge a viewer.

Each run has a state of its own (:class:`RunPhase`). Single-threaded by design: the owner
calls :meth:`CloneClient.poll` from one thread. A consumer that stops polling is exactly a slow
subscriber: its queue overflows and the gaps get repaired.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, OrderedDict, deque
from enum import Enum

import zmq
from pydantic import BaseModel

from broker.clients.run_order import RETRY_SECONDS, RunOrder, RunPhase
from broker.curve.keys import ClientKeys, secure_client
from broker.loop.drain import drain
from protocol import MAX_MESSAGE_BYTES, Envelope, ProtocolError, decode
from protocol.endpoints import keep_alive, snapshot_endpoint_for
from protocol.snapshot import (
    MSG,
    ErrorReply,
    RunInfo,
    RunsReply,
    RunsRequest,
    SnapshotEnd,
    SnapshotRequest,
    encode_request,
    parse_reply,
)

log = logging.getLogger("broker.client")

RUN_STATES_KEPT = 64  # runs whose ordering state is kept: far more than a broker holds


class Phase(Enum):
    """Where the client is in the Clone dance."""

    ASKING = "asking"
    SYNCING = "syncing"
    LIVE = "live"
    REPAIRING = "repairing"


class CloneClient:
    """Subscribe to a broker and receive every run's messages in per-run ``seq`` order.

    ``out_endpoint`` is the broker's ``--out``; ``snapshot_endpoint`` its ``--snapshot``
    (default: the ``--out`` port + 1). ``max_runs`` runs are fetched at start, newest last.
    """

    def __init__(
        self,
        out_endpoint: str,
        snapshot_endpoint: str | None = None,
        *,
        max_runs: int = 4,
        receive_hwm: int = 100_000,
        receive_buffer: int | None = None,
        request_timeout: float = 2.0,
        gap_timeout: float = 3.0,
        check_interval: float = 1.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        context: zmq.Context | None = None,
        curve: ClientKeys | None = None,
    ) -> None:
        self.out_endpoint = out_endpoint
        self.snapshot_endpoint = snapshot_endpoint or snapshot_endpoint_for(out_endpoint)
        self.max_runs = max_runs
        self.request_timeout = request_timeout
        self.gap_timeout = gap_timeout
        self.check_interval = check_interval
        self.max_message_bytes = max_message_bytes
        self.counts: Counter[str] = Counter()
        self.broker_id: str | None = None
        self.phase = Phase.ASKING
        self.heard_at = time.monotonic()
        """When the broker was last heard from (a message or a reply; it answers the check
        every ``check_interval``), on the monotonic clock."""
        self._asking: int | None = None  # id of the "runs" request while asking
        self._asking_deadline = 0.0
        self._check: int | None = None  # id of the outstanding periodic "runs" request
        self._next_check = 0.0
        self._runs: OrderedDict[str, RunOrder] = OrderedDict()
        self._ready: deque[Envelope] = deque()
        self._ids = itertools.count(1)
        self._initial: deque[str] = deque()  # runs whose first snapshot is still to fetch
        context = context or zmq.Context.instance()
        self.sub = secure_client(keep_alive(context.socket(zmq.SUB)), curve)
        self.sub.setsockopt(zmq.RCVHWM, receive_hwm)
        if receive_buffer:
            self.sub.setsockopt(zmq.RCVBUF, receive_buffer)
        self.sub.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.dealer = secure_client(keep_alive(context.socket(zmq.DEALER)), curve)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.dealer.setsockopt(zmq.RCVHWM, 0)  # the broker paces replies; never drop one
        self.dealer.setsockopt(zmq.LINGER, 0)
        self._poller = zmq.Poller()
        self._poller.register(self.sub, zmq.POLLIN)
        self._poller.register(self.dealer, zmq.POLLIN)

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> Phase:
        """The phase, with :attr:`Phase.REPAIRING` while live with a gap in some run."""
        if self.phase is Phase.LIVE and any(
            run.phase is RunPhase.REPAIRING for run in self._runs.values()
        ):
            return Phase.REPAIRING
        return self.phase

    def start(self) -> None:
        """Subscribe first, then ask the broker what it holds (the dance's first step)."""
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.out_endpoint)
        self.dealer.connect(self.snapshot_endpoint)
        self.heard_at = time.monotonic()
        self._asking = self._request(RunsRequest(type="runs"))
        self._asking_deadline = time.monotonic() + self.request_timeout
        self._next_check = time.monotonic() + self.check_interval
        log.info("subscribed to %s; snapshots from %s", self.out_endpoint, self.snapshot_endpoint)

    def poll(self, timeout: float = 0.0) -> list[Envelope]:
        """Messages now deliverable, in per-run order; waits up to ``timeout`` s for some."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            events = dict(
                self._poller.poll(max(0, int(remaining * 1000)) if not self._ready else 0)
            )
            if self.sub in events:
                self._drain_live()
            if self.dealer in events:
                self._drain_replies()
            if events:
                self.heard_at = time.monotonic()
            self._service(time.monotonic())
            if self._ready or time.monotonic() >= deadline:
                out = list(self._ready)
                self._ready.clear()
                return out

    def close(self) -> None:
        self.sub.close()
        self.dealer.close()

    # -- receiving ----------------------------------------------------------------------------

    def _drain_live(self, budget: int = 5000) -> None:
        for frames in drain(self.sub, budget):
            message = self._decode(frames)
            if message is not None:
                self.counts["live"] += 1
                self._accept(message, "live")

    def _drain_replies(self, budget: int = 5000) -> None:
        for frames in drain(self.dealer, budget):
            if frames[0] == MSG:
                message = self._decode(frames[1:])
                if message is not None:
                    run = self._runs.get(message.run_id)
                    self._accept(message, "repair" if run and run.delivering else "snapshot")
                continue
            match reply := self._reply(frames):
                case SnapshotEnd():
                    self._note_broker(reply.broker)
                    self._on_end(reply)
                case RunsReply():
                    self._on_runs(reply)
                case ErrorReply():
                    self._on_error(reply)

    def _reply(self, frames: list[bytes]) -> object:
        try:
            return parse_reply(frames)
        except ProtocolError as exc:
            self.counts["bad_replies"] += 1
            log.warning("ignored a malformed reply from the broker: %s", exc)
            return None

    def _note_broker(self, broker: str) -> None:
        if broker != self.broker_id:
            if self.broker_id is not None:
                log.info("the broker restarted (%s -> %s)", self.broker_id, broker)
                self.counts["broker_restarts"] += 1
            self.broker_id = broker

    def _decode(self, frames: list[bytes]) -> Envelope | None:
        try:
            return decode(frames, self.max_message_bytes)
        except ProtocolError as exc:
            self.counts["rejected"] += 1
            log.warning("ignored invalid message: %s", exc)
            return None

    # -- ordering -----------------------------------------------------------------------------

    def _run(self, run_id: str) -> RunOrder:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = RunOrder(self.counts, self._ready)
            while len(self._runs) > RUN_STATES_KEPT:
                self._runs.popitem(last=False)
        return run

    def _accept(self, message: Envelope, source: str) -> None:
        self._run(message.run_id).accept(message, source)

    def _service(self, now: float) -> None:
        """Move the dance on: ask for missing ranges, retry, give up on old gaps."""
        if self.phase is Phase.ASKING:
            if now < self._asking_deadline:
                return
            log.warning("no answer from the snapshot service at %s; live only for now",
                        self.snapshot_endpoint)  # fmt: skip
            self._asking, self.phase = None, Phase.SYNCING
        if self.phase is Phase.SYNCING:
            if self._initial:
                self._next_initial(now)
                return
            self.phase = Phase.LIVE
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._check = self._request(RunsRequest(type="runs"))
        for run_id, run in self._runs.items():
            self._repair(run_id, run, now)

    def _repair(self, run_id: str, run: RunOrder, now: float) -> None:
        """One run's part of :meth:`_service`: the gap at its head, if it has one."""
        if run.request is not None:
            if now < run.request_deadline:
                return
            self.counts["request_timeouts"] += 1
            run.request = None
        if not run.pending:
            return
        first = min(run.pending)
        if run.expected is None and first == 0:
            return run.go_live(0)
        start = run.expected or 0
        if first <= start:
            return
        if run.delivering:
            run.phase = RunPhase.REPAIRING
        if run.gap_since is None:
            run.gap_since = now
        elif now - run.gap_since > self.gap_timeout:
            log.warning("run %s: gave up on seq %d..%d", run_id, start, first - 1)
            self.counts["unrepairable"] += first - start
            run.gap_since = None
            return run.go_live(first)
        if now >= run.retry_at:
            self._ask(run_id, run, start, first - 1, now)

    def _ask(
        self, run_id: str, run: RunOrder, from_seq: int, to_seq: int | None, now: float
    ) -> None:
        request = SnapshotRequest(type="snapshot", run=run_id, from_seq=from_seq, to_seq=to_seq)
        if to_seq is not None:
            self.counts["repair_requests"] += 1
        if run.phase is RunPhase.UNKNOWN:
            run.phase = RunPhase.SYNCING
        run.request = self._request(request)
        run.request_deadline = now + self.request_timeout

    def _next_initial(self, now: float) -> None:
        """Fetch the first snapshots one run at a time, oldest first, so runs appear in order."""
        run_id = self._initial[0]
        run = self._run(run_id)
        if run.request is None:
            self._ask(run_id, run, 0, None, now)
        elif now >= run.request_deadline:
            self.counts["request_timeouts"] += 1
            run.request = None
            self._initial.popleft()  # live (and repair) will do what it can

    def _on_runs(self, reply: RunsReply) -> None:
        if reply.id == self._check:
            return self._check_tails(reply.runs)
        if self.phase is not Phase.ASKING or reply.id != self._asking:
            return
        self._asking, self.phase = None, Phase.SYNCING
        held = [info.run_id for info in reply.runs][-self.max_runs :]
        log.info("broker holds %d run(s); fetching %d", len(reply.runs), len(held))
        self._initial.extend(held)
        self._service(time.monotonic())

    def _check_tails(self, runs: list[RunInfo]) -> None:
        """Repair the tail of a run: messages lost after the last one that arrived.

        A gap only shows when a later message arrives, so the client compares its position
        with the broker's every ``check_interval``; a run that was already further along at
        the previous check (so its messages have had time to arrive) is repaired.
        """
        now = time.monotonic()
        newest = {info.run_id for info in runs[-self.max_runs :]}
        for info in runs:
            run_id, last = info.run_id, info.last_seq
            run = self._runs.get(run_id)
            if run is None:
                if run_id in newest and last >= 0:  # a new run whose live messages all got lost
                    run = self._run(run_id)
                    run.broker_last = last
                continue
            behind = run.expected is not None and run.broker_last >= run.expected
            if behind and not run.pending and run.request is None:
                self.counts["tail_repairs"] += 1
                self._ask(run_id, run, run.expected or 0, run.broker_last, now)
            elif run.expected is None and not run.pending and run.request is None and last >= 0:
                self._ask(run_id, run, 0, last, now)
            run.broker_last = last

    def _on_end(self, reply: SnapshotEnd) -> None:
        run = self._run(reply.run)
        if run.request == reply.id:
            run.request = None
        if self._initial and self._initial[0] == reply.run:
            self._initial.popleft()
        run.apply_end(reply, time.monotonic() + RETRY_SECONDS)

    def _on_error(self, reply: ErrorReply) -> None:
        log.warning("snapshot service: %s", reply.message)
        for run in self._runs.values():
            if run.request is not None and run.request == reply.id:
                run.request = None
                run.retry_at = time.monotonic() + RETRY_SECONDS

    def _request(self, request: BaseModel) -> int:
        request_id = next(self._ids)
        body = encode_request(request.model_copy(update={"id": request_id}))
        try:
            self.dealer.send(body, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.counts["requests_unsent"] += 1
        return request_id
