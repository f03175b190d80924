"""One broker subscription per viewer process, feeding every browser session in it.

A background thread runs a :class:`broker.clients.clone.CloneClient` (live stream plus snapshot and
gap repair, so a viewer started late or left behind still gets the whole run, in order) and
folds its messages into :class:`RunHistory` objects; sessions read from them on their own
schedule. So a hundred open laptops cost one subscription, one decode and one fold per
message. The hub holds no per-session state: a closed session leaves nothing behind here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import zmq

from broker.clients.clone import CloneClient
from broker.curve.keys import ClientKeys
from protocol import Envelope
from viewer.runs.state import RunHistory
from viewer.sources import RunSource, install

log = logging.getLogger("viewer")

RUNS_KEPT = 4
"""Runs held in memory; the oldest is forgotten when a new one starts."""


class Hub:
    """The live :class:`~viewer.sources.RunSource`: ``endpoint`` is the broker's ``--out``;
    ``snapshot_endpoint`` defaults to its port + 1."""

    def __init__(
        self,
        endpoint: str,
        snapshot_endpoint: str | None = None,
        *,
        context: zmq.Context | None = None,
        curve: ClientKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.snapshot_endpoint = snapshot_endpoint
        self.lock = threading.Lock()
        self.runs: OrderedDict[str, RunHistory] = OrderedDict()
        self.received = 0
        self.rejected = 0
        self.unusable = 0
        """Messages that validated yet could not be folded (a bug here, not the sender's):
        skipped and counted, so one cannot end the subscription."""
        self._broker_heard_at: float | None = None
        self._context = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, name="viewer-hub", daemon=True)

    @property
    def current(self) -> RunHistory | None:
        """The most recently started run: what the dashboard shows unless a session pins one."""
        with self.lock:
            return next(reversed(self.runs.values()), None)

    def run(self, run_id: str | None) -> RunHistory | None:
        """The run with this id, if it is still held."""
        with self.lock:
            return self.runs.get(run_id) if run_id is not None else None

    def previous(self, run: RunHistory) -> RunHistory | None:
        """The run that started just before ``run``: drawn faintly under it to compare."""
        with self.lock:
            ids = list(self.runs)
            if run.run_id not in ids:
                return None
            position = ids.index(run.run_id)
            return self.runs[ids[position - 1]] if position > 0 else None

    def comparable(self) -> dict[str, RunHistory]:
        """The runs held (the broker's latest :data:`RUNS_KEPT`), oldest first."""
        with self.lock:
            return dict(self.runs)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def broker_silence(self) -> float | None:
        heard = self._broker_heard_at
        return None if heard is None else time.monotonic() - heard

    def figures(self) -> dict[str, Any]:
        """For ``/healthz`` and ``/metrics``: is the subscription alive, what arrived, when."""
        with self.lock:
            last = max((run.last_received_at for run in self.runs.values()), default=0.0)
        return {
            "running": self._thread.is_alive(),
            "received": self.received,
            "rejected": self.rejected + self.unusable,
            "last_message_age": round(time.time() - last, 3) if last else None,
        }

    def _receive_loop(self) -> None:
        client = CloneClient(
            self.endpoint,
            self.snapshot_endpoint,
            max_runs=RUNS_KEPT,
            context=self._context,
            curve=self.curve,
        )
        client.start()
        try:
            while not self._stop.is_set():
                for message in client.poll(0.2):
                    self.apply(message)
                self._broker_heard_at = client.heard_at
                self.rejected = client.counts["rejected"]
        finally:
            client.close()

    def apply(self, message: Envelope) -> None:
        """Fold one message into its run (the receive thread's job; tests call it directly)."""
        with self.lock:
            self.received += 1
            run = self.runs.get(message.run_id)
            if run is None:
                run = self.runs[message.run_id] = RunHistory(message.run_id)
                log.info("new run %s", message.run_id)
                while len(self.runs) > RUNS_KEPT:
                    self.runs.popitem(last=False)
            try:
                run.apply(message)
            except Exception as exc:  # whatever it is, the next message comes
                self.unusable += 1
                if self.unusable <= 10 or self.unusable % 1000 == 0:
                    log.warning(
                        "skipped %s message %d of run %s, which could not be used (%d so far): %s",
                        message.kind, message.seq, message.run_id, self.unusable, exc,
                    )  # fmt: skip


def start(
    endpoint: str, snapshot_endpoint: str | None = None, curve: ClientKeys | None = None
) -> RunSource:
    """Subscribe this process to the broker, once (:func:`viewer.sources.install`)."""

    def subscribe() -> Hub:
        live = Hub(endpoint, snapshot_endpoint, curve=curve)
        live.start()
        return live

    return install(subscribe)
