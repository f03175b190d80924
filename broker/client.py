"""The Clone dance for any subscriber: the whole run, in order, each message exactly once.

Plain SUB sockets forget: whoever connects late misses the start, whoever falls behind loses
messages silently at a high-water mark. :class:`CloneClient` follows the ZeroMQ guide's Clone
pattern (chapter 5) against the broker's two endpoints:

1. subscribe to the live stream (``--out``) first, and buffer what arrives;
2. ask the snapshot service (``--snapshot``) which runs it holds, then fetch each run's
   history from sequence 0, oldest run first;
3. apply the snapshot, drop buffered duplicates (``seq`` already delivered), go live;
4. whenever a run's ``seq`` jumps, hold the later messages back and ask the snapshot service
   for the missing range; deliver in order once repaired. Ranges the broker no longer has
   (superseded "latest-only" messages, evicted history) are skipped; ranges it has not seen
   yet (e.g. just after a broker restart, while the trainer re-publishes) are retried until
   ``gap_timeout`` and then given up and counted, so a dead broker cannot wedge a viewer.

Single-threaded by design: the owner calls :meth:`CloneClient.poll` from one thread; nothing
runs behind its back. A consumer that
stops polling is exactly a slow subscriber: its queue overflows and the gaps get repaired.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from broker.drain import drain
from protocol import MAX_MESSAGE_BYTES, Envelope, ProtocolError, decode
from protocol.endpoints import snapshot_endpoint_for

log = logging.getLogger("broker.client")

RUN_STATES_KEPT = 64
"""Runs whose ordering state is kept; far more than a broker holds."""
RETRY_SECONDS = 0.2
"""Pause before asking again for a range the broker has not seen (yet)."""


@dataclass
class _Run:
    """Ordering state for one run."""

    expected: int | None = None  # next seq to deliver; None until the start is known
    pending: dict[int, tuple[Envelope, str]] = field(default_factory=dict)
    request: int | None = None  # id of the outstanding snapshot request
    request_deadline: float = 0.0
    gap_since: float | None = None
    retry_at: float = 0.0
    live: bool = False  # the first snapshot (or first in-order message) has been applied
    broker_last: int = -1  # the broker's last seq for this run at the previous check


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
    ) -> None:
        self.out_endpoint = out_endpoint
        self.snapshot_endpoint = snapshot_endpoint or snapshot_endpoint_for(out_endpoint)
        self.max_runs = max_runs
        self.request_timeout = request_timeout
        self.gap_timeout = gap_timeout
        self.check_interval = check_interval
        self._check: int | None = None  # id of the outstanding periodic "runs" request
        self._next_check = 0.0
        self.max_message_bytes = max_message_bytes
        self.counts: Counter[str] = Counter()
        self.broker_id: str | None = None
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._ready: deque[Envelope] = deque()
        self._ids = itertools.count(1)
        self._starting: int | None = None  # id of the "runs" request while starting
        self._start_deadline = 0.0
        self._initial: deque[str] = deque()  # runs whose first snapshot is still to fetch
        context = context or zmq.Context.instance()
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, receive_hwm)
        if receive_buffer:
            self.sub.setsockopt(zmq.RCVBUF, receive_buffer)
        self.sub.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.dealer.setsockopt(zmq.RCVHWM, 0)  # the broker paces replies; never drop one
        self.dealer.setsockopt(zmq.LINGER, 0)
        self._poller = zmq.Poller()
        self._poller.register(self.sub, zmq.POLLIN)
        self._poller.register(self.dealer, zmq.POLLIN)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe first, then ask the broker what it holds (steps 1 and 2 of the dance)."""
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.out_endpoint)
        self.dealer.connect(self.snapshot_endpoint)
        self._starting = self._request({"type": "runs"})
        self._start_deadline = time.monotonic() + self.request_timeout
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
            self._handle_reply(frames)

    def _handle_reply(self, frames: list[bytes]) -> None:
        if frames[0] == b"msg":
            message = self._decode(frames[1:])
            if message is not None:
                run = self._runs.get(message.run_id)
                self._accept(message, "repair" if run and run.live else "snapshot")
            return
        if frames[0] != b"reply" or len(frames) != 2:
            self.counts["bad_replies"] += 1
            return
        try:
            reply = json.loads(frames[1])
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.counts["bad_replies"] += 1
            return
        if not isinstance(reply, dict):
            return
        broker = reply.get("broker")
        if isinstance(broker, str) and broker != self.broker_id:
            if self.broker_id is not None:
                log.info("the broker restarted (%s -> %s)", self.broker_id, broker)
                self.counts["broker_restarts"] += 1
            self.broker_id = broker
        try:
            match reply.get("type"):
                case "runs":
                    self._on_runs(reply)
                case "end":
                    self._on_end(reply)
                case "error":
                    self._on_error(reply)
        except (KeyError, TypeError, ValueError) as exc:
            self.counts["bad_replies"] += 1
            log.warning("ignored a malformed reply from the broker: %s", exc)

    def _decode(self, frames: list[bytes]) -> Envelope | None:
        try:
            return decode(frames, self.max_message_bytes)
        except ProtocolError as exc:
            self.counts["rejected"] += 1
            log.warning("ignored invalid message: %s", exc)
            return None

    # -- ordering -----------------------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run()
            while len(self._runs) > RUN_STATES_KEPT:
                self._runs.popitem(last=False)
        return run

    def _accept(self, message: Envelope, source: str) -> None:
        run = self._run(message.run_id)
        seq = message.seq
        if (run.expected is not None and seq < run.expected) or seq in run.pending:
            self.counts["duplicates"] += 1
            return
        run.pending[seq] = (message, source)
        self._advance(run)

    def _advance(self, run: _Run) -> None:
        """Deliver every pending message that is next in line."""
        if run.expected is None:
            return
        while run.expected in run.pending:
            message, source = run.pending.pop(run.expected)
            self.counts["delivered"] += 1
            if source != "live":
                self.counts["repaired" if source == "repair" else "from_snapshot"] += 1
            self._ready.append(message)
            run.expected += 1
        if not run.pending:
            run.gap_since = None

    def _service(self, now: float) -> None:
        """Ask for missing ranges, retry, and give up on gaps older than ``gap_timeout``."""
        if self._starting is not None:
            if now < self._start_deadline:
                return
            log.warning("no answer from the snapshot service at %s; live only for now",
                        self.snapshot_endpoint)  # fmt: skip
            self._starting = None
        if self._initial:
            self._next_initial(now)
            return
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._check = self._request({"type": "runs"})
        for run_id, run in self._runs.items():
            if run.request is not None:
                if now < run.request_deadline:
                    continue
                self.counts["request_timeouts"] += 1
                run.request = None
            if not run.pending:
                continue
            first = min(run.pending)
            if run.expected is None and first == 0:
                run.expected, run.live = 0, True
                self._advance(run)
                continue
            start = run.expected or 0
            if first <= start:
                continue
            if run.gap_since is None:
                run.gap_since = now
            elif now - run.gap_since > self.gap_timeout:
                log.warning("run %s: gave up on seq %d..%d", run_id, start, first - 1)
                self.counts["unrepairable"] += first - start
                run.expected, run.live, run.gap_since = first, True, None
                self._advance(run)
                continue
            if now >= run.retry_at:
                self._ask(run_id, run, start, first - 1, now)

    def _ask(self, run_id: str, run: _Run, from_seq: int, to_seq: int | None, now: float) -> None:
        body: dict[str, Any] = {"type": "snapshot", "run": run_id, "from_seq": from_seq}
        if to_seq is not None:
            body["to_seq"] = to_seq
            self.counts["repair_requests"] += 1
        run.request = self._request(body)
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

    def _on_runs(self, reply: dict[str, Any]) -> None:
        if reply.get("id") == self._check:
            return self._check_tails(reply["runs"])
        if reply.get("id") != self._starting:
            return
        self._starting = None
        held = [str(r["run_id"]) for r in reply["runs"]][-self.max_runs :]
        log.info("broker holds %d run(s); fetching %d", len(reply["runs"]), len(held))
        self._initial.extend(held)
        self._service(time.monotonic())

    def _check_tails(self, runs: list[dict[str, Any]]) -> None:
        """Repair the tail of a run: messages lost after the last one that arrived.

        A gap only shows when a later message arrives, so the client compares its position
        with the broker's every ``check_interval``; a run that was already further along at
        the previous check (so its messages have had time to arrive) is repaired.
        """
        now = time.monotonic()
        newest = {str(r["run_id"]) for r in runs[-self.max_runs :]}
        for info in runs:
            run_id, last = str(info["run_id"]), int(info["last_seq"])
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

    def _on_end(self, reply: dict[str, Any]) -> None:
        """Everything in ``[from_seq, to_seq]`` not listed as unseen has now arrived or is gone."""
        run_id = str(reply["run"])
        run = self._run(run_id)
        if run.request == reply.get("id"):
            run.request = None
        if self._initial and self._initial[0] == run_id:
            self._initial.popleft()
        if not reply["known"]:
            run.retry_at = time.monotonic() + RETRY_SECONDS
            return
        lo, hi = int(reply["from_seq"]), int(reply["to_seq"])
        if run.expected is None:
            run.expected = lo
        run.live = True
        unseen = sorted((int(a), int(b)) for a, b in reply["unseen"])
        if not lo <= run.expected <= hi:
            self._advance(run)
            return
        stop = next((a for a, b in unseen if b >= run.expected), hi + 1)
        while run.expected < min(stop, hi + 1):
            if run.expected in run.pending:
                self._advance(run)
            else:
                self.counts["gone"] += 1  # superseded by a newer "latest" message, or evicted
                run.expected += 1
        self._advance(run)
        if stop <= hi and run.expected >= stop:
            run.retry_at = time.monotonic() + RETRY_SECONDS  # not seen by the broker yet

    def _on_error(self, reply: dict[str, Any]) -> None:
        log.warning("snapshot service: %s", reply.get("message"))
        for run in self._runs.values():
            if run.request is not None and run.request == reply.get("id"):
                run.request = None
                run.retry_at = time.monotonic() + RETRY_SECONDS

    def _request(self, body: dict[str, Any]) -> int:
        request_id = next(self._ids)
        try:
            self.dealer.send(json.dumps({**body, "id": request_id}).encode(), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.counts["requests_unsent"] += 1
        return request_id
