"""One run's ordering in the Clone client: deliver each seq once, in order, across live
messages, snapshots and repairs, and know when a range is gone for good.

:class:`RunOrder` is the per-run half of :class:`broker.clients.clone.CloneClient`'s state
machine (the client owns the sockets and decides when to ask; this decides what to deliver).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum

from protocol import Envelope
from protocol.snapshot import SnapshotEnd

RETRY_SECONDS = 0.2
"""Pause before asking again for a range the broker has not seen (yet)."""


class RunPhase(Enum):
    """Where one run is: its start not known yet, its first snapshot on the way, delivered in
    order, or held back behind a gap that is being filled."""

    UNKNOWN = "unknown"
    SYNCING = "syncing"
    LIVE = "live"
    REPAIRING = "repairing"


@dataclass
class RunOrder:
    """Ordering state for one run; delivers into ``ready`` and counts into ``counts``."""

    counts: Counter[str]
    ready: deque[Envelope]

    phase: RunPhase = RunPhase.UNKNOWN
    expected: int | None = None  # next seq to deliver; None until the start is known
    pending: dict[int, tuple[Envelope, str]] = field(default_factory=dict)
    request: int | None = None  # id of the outstanding snapshot request
    request_deadline: float = 0.0
    gap_since: float | None = None
    retry_at: float = 0.0
    broker_last: int = -1  # the broker's last seq for this run at the previous check

    @property
    def delivering(self) -> bool:
        return self.phase in (RunPhase.LIVE, RunPhase.REPAIRING)

    def accept(self, message: Envelope, source: str) -> None:
        """Take one message (``source``: live, snapshot or repair); deliver what is in line."""
        seq = message.seq
        if (self.expected is not None and seq < self.expected) or seq in self.pending:
            self.counts["duplicates"] += 1
            return
        self.pending[seq] = (message, source)
        self.advance()

    def advance(self) -> None:
        """Deliver every pending message that is next in line."""
        if self.expected is None:
            return
        while self.expected in self.pending:
            message, source = self.pending.pop(self.expected)
            self.counts["delivered"] += 1
            if source != "live":
                self.counts["repaired" if source == "repair" else "from_snapshot"] += 1
            self.ready.append(message)
            self.expected += 1
        if not self.pending:
            self.gap_since = None
            if self.phase is RunPhase.REPAIRING:
                self.phase = RunPhase.LIVE

    def go_live(self, expected: int) -> None:
        """Deliver from ``expected`` on (the run's start, or past a gap given up)."""
        self.expected, self.phase = expected, RunPhase.LIVE
        self.advance()

    def apply_end(self, reply: SnapshotEnd, retry_at: float) -> None:
        """Everything in ``[from_seq, to_seq]`` not listed as unseen has now arrived or is gone;
        a range the broker has not seen yet is asked for again from ``retry_at``."""
        if not reply.known:
            self.retry_at = retry_at
            return
        lo, hi = reply.from_seq, reply.to_seq
        if self.expected is None:
            self.expected = lo
        if not self.delivering:
            self.phase = RunPhase.LIVE
        if not lo <= self.expected <= hi:
            self.advance()
            return
        stop = next((a for a, b in sorted(reply.unseen) if b >= self.expected), hi + 1)
        while self.expected < min(stop, hi + 1):
            if self.expected in self.pending:
                self.advance()
            else:
                self.counts["gone"] += 1  # superseded by a newer "latest" message, or evicted
                self.expected += 1
        self.advance()
        if stop <= hi and self.expected >= stop:
            self.retry_at = retry_at  # not seen by the broker yet
