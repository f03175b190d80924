"""Which messages a run keeps, and which are superseded: the rule publisher and broker share.

A run is a sequence of messages numbered by ``seq``. Curves need every point, so ``metrics``
and ``evaluation`` messages are kept in sequence order; for the "state" kinds (current sample,
weight mosaic, full model) and ``status`` only the latest matters, so each new one replaces
the last (the ZeroMQ guide's Last Value Cache). ``run_started`` and ``run_finished`` are never
evicted. Messages are kept as the frames that arrived (bytes, never re-encoded), so a replay
is byte-identical.

Both ends of the wire keep a run this way: the trainer's publisher, to re-send its run to a
restarted broker, and the broker, to serve late joiners. The rule is part of the protocol
because each side relies on the other applying it: :meth:`RunLog._replayed` infers the gaps
in a re-publish from it (both sides drop exactly the same superseded messages), and a
subscriber is told a superseded seq is "gone" rather than waiting for it.

Memory is bounded per run by bytes; over the bound, the oldest curve points go first and are
counted.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.messages import STATE_KINDS
from protocol.snapshot import RunInfo

LATEST_ONLY = STATE_KINDS | {"status"}
"""Kinds where a newer message supersedes the older one (Last Value Cache)."""
STRUCTURAL = frozenset({"run_started", "run_finished"})
"""Kinds never evicted: without them a run cannot be understood."""

HISTORY_BYTES = 128 * 1024 * 1024
"""Default bound per run. A 30-minute run at default cadences holds about 30 MB: ~36,000
metrics (~300 B) = 11 MB, ~1,800 evaluations with a 10x10 confusion and 8 mistake images
(~8.5 KB) = 15 MB, plus the latest sample, weight mosaic (50 KB) and model (3 MB). 128 MB is
room for about two hours."""
PER_MESSAGE_OVERHEAD = 200
"""Bytes charged per held message beyond its frames (Python objects, index entries)."""
MAX_INTERVALS = 4096
"""Bound on the seen-sequence bookkeeping: a hostile publisher cannot grow it without limit."""


@dataclass(frozen=True, slots=True)
class Held:
    """One message exactly as received."""

    seq: int
    kind: str
    frames: tuple[bytes, ...]
    size: int  # bytes charged against the run's bound


def make_held(seq: int, kind: str, frames: Sequence[bytes]) -> Held:
    return Held(seq, kind, tuple(frames), sum(map(len, frames)) + PER_MESSAGE_OVERHEAD)


class SeqSet:
    """Which sequence numbers of a run have been seen, as sorted disjoint ``[start, end)``.

    In-order traffic is one interval, and a gap filled later merges two, so this stays tiny;
    it is still bounded (``max_intervals``): past it, the lowest gap is given up as seen.
    """

    def __init__(self, max_intervals: int = MAX_INTERVALS) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.max_intervals = max_intervals

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq < self.ends[i]

    @property
    def max(self) -> int:
        """The highest seq seen, -1 if none."""
        return self.ends[-1] - 1 if self.ends else -1

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it was already seen."""
        starts, ends = self.starts, self.ends
        if ends and seq == ends[-1]:  # the common case: the next one in order
            ends[-1] += 1
            return True
        i = bisect.bisect_right(starts, seq) - 1
        if i >= 0 and seq < ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == seq
        joins_right = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] += 1
        elif joins_right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq + 1)
            if len(starts) > self.max_intervals:
                ends[0] = ends[1]
                del starts[1], ends[1]
        return True

    def add_range(self, lo: int, hi: int) -> int:
        """Record every seq in ``[lo, hi)``; how many were new. Costs the intervals it meets,
        not the width of the range (a forged seq 10^12 must not cost 10^12 steps)."""
        if hi <= lo:
            return 0
        new = (hi - lo) - self.count(lo, hi - 1)
        starts, ends = self.starts, self.ends
        first = bisect.bisect_left(ends, lo)  # the first interval ending at or after lo
        last = bisect.bisect_right(starts, hi)  # past the last interval starting at or before hi
        if first < last:
            lo, hi = min(lo, starts[first]), max(hi, ends[last - 1])
        starts[first:last] = [lo]
        ends[first:last] = [hi]
        while len(starts) > self.max_intervals:
            ends[0] = ends[1]
            del starts[1], ends[1]
        return new

    def count(self, lo: int, hi: int) -> int:
        """How many seqs in ``[lo, hi]`` were seen."""
        return sum(
            max(0, min(e, hi + 1) - max(s, lo)) for s, e in zip(self.starts, self.ends, strict=True)
        )

    def gaps(self, lo: int, hi: int, limit: int = 100) -> list[list[int]]:
        """Inclusive ``[first, last]`` ranges in ``[lo, hi]`` never seen (at most ``limit``)."""
        out: list[list[int]] = []
        cursor = lo
        for s, e in zip(self.starts, self.ends, strict=True):
            if e <= cursor:
                continue
            if s > hi:
                break
            if s > cursor:
                out.append([cursor, min(s - 1, hi)])
            cursor = max(cursor, e)
            if len(out) >= limit:
                return out
        if cursor <= hi:
            out.append([cursor, hi])
        return out[:limit]


@dataclass
class RunLog:
    """Everything held for one run."""

    run_id: str
    limit: int = HISTORY_BYTES
    seen: SeqSet = field(default_factory=SeqSet)
    seqs: list[int] = field(default_factory=list)  # sorted keys of ``points``
    points: dict[int, Held] = field(default_factory=dict)  # metrics, evaluations, ...
    structural: dict[int, Held] = field(default_factory=dict)
    latest: dict[str, Held] = field(default_factory=dict)
    held_bytes: int = 0
    evicted: int = 0
    superseded: int = 0
    finished: bool = False
    replay_cursor: int = -1

    def add(self, seq: int, kind: str, frames: Sequence[bytes]) -> bool:
        """Hold one validated message; False (and nothing held) if its seq was seen before."""
        if seq < self.seen.max:
            self._replayed(seq)
        if not self.seen.add(seq):
            return False
        message = make_held(seq, kind, frames)
        if kind in LATEST_ONLY:
            old = self.latest.get(kind)
            if old is not None and old.seq > seq:
                self.superseded += 1  # a late gap fill older than what we hold
                return True
            if old is not None:
                self.held_bytes -= old.size
                self.superseded += 1
            self.latest[kind] = message
        elif kind in STRUCTURAL:
            self.structural[seq] = message
            self.finished = self.finished or kind == "run_finished"
        else:
            if not self.seqs or seq > self.seqs[-1]:
                self.seqs.append(seq)
            else:
                bisect.insort(self.seqs, seq)
            self.points[seq] = message
        self.held_bytes += message.size
        if self.held_bytes > self.limit:
            self._evict()
        return True

    def _replayed(self, seq: int) -> None:
        """Infer what a publisher's re-publish leaves out: it never comes.

        A publisher re-sends its history in ascending order, and it holds only the latest of
        each state kind, so when it goes from seq a to seq b, the seqs in between were
        superseded (or evicted) at the publisher. Marking them seen lets a snapshot report them
        as gone at once, instead of a client waiting for them until its gap timeout.
        """
        if seq <= self.replay_cursor:  # a new pass from the start
            self.replay_cursor = seq
            return
        self.superseded += self.seen.add_range(self.replay_cursor + 1, seq)
        self.replay_cursor = seq

    def _evict(self) -> None:
        """Drop the oldest curve points until the run fits its bound again."""
        n = 0
        while self.held_bytes > self.limit and n < len(self.seqs):
            self.held_bytes -= self.points.pop(self.seqs[n]).size
            n += 1
        del self.seqs[:n]
        self.evicted += n

    @property
    def last_seq(self) -> int:
        return self.seen.max

    @property
    def held(self) -> int:
        return len(self.points) + len(self.structural) + len(self.latest)

    def select(self, from_seq: int, to_seq: int) -> list[Held]:
        """Held messages with ``from_seq <= seq <= to_seq``, in sequence order."""
        lo = bisect.bisect_left(self.seqs, from_seq)
        hi = bisect.bisect_right(self.seqs, to_seq)
        chosen = [self.points[s] for s in self.seqs[lo:hi]]
        extra = [
            h
            for h in (*self.structural.values(), *self.latest.values())
            if from_seq <= h.seq <= to_seq
        ]
        if extra:
            chosen = sorted(chosen + extra, key=lambda h: h.seq)
        return chosen

    def summary(self) -> RunInfo:
        return RunInfo(
            run_id=self.run_id,
            last_seq=self.last_seq,
            held=self.held,
            bytes=self.held_bytes,
            evicted=self.evicted,
            superseded=self.superseded,
            finished=self.finished,
        )
