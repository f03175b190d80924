"""What a replay sends of a recorded run, and in which order: two passes over the file.

The first (:func:`scan`) keeps only an index entry per message (seq, kind, log time, step), so
it can list the runs, choose one, find the starting point and know which messages the catch-up
needs; it does not even decode the ``model`` messages (~1.6 MB each, four fifths of a
recording's bytes, and never a starting point). The second (:func:`in_seq_order`) streams the
chosen run's messages in ``seq`` order through a bounded reorder window (a broker's recording
may hold gap fills that arrived after a restart), so at most a window's worth of decoded
messages is ever held.

Starting from a point: everything before it that the page needs is sent at once first
(``run_started``, every curve point, and only the last of each "latest-only" kind, by the
protocol's rule in :mod:`protocol.runlog`), so a viewer shows the run exactly as it was at that
moment, and the rest follows with its timing.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from broker.recording.reader import Recorded, RecordingReader
from protocol import MESSAGE_TYPES, Envelope
from protocol.cli.durations import format_duration
from protocol.errors import CommandError
from protocol.runlog import LATEST_ONLY

log = logging.getLogger("broker.replay")

REORDER_WINDOW = 1000
"""Messages held while waiting for an out-of-order seq; a later one is skipped and counted."""
MAX_RUN_ID = 200
UNINDEXED = frozenset({"model"})
"""Kinds the first pass skips undecoded: the second pass places them by seq as they come."""
INDEXED = frozenset(MESSAGE_TYPES) - UNINDEXED


def parse_speed(text: str) -> float:
    """``max`` (no waiting: infinity) or a positive factor of the original timing."""
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text.strip().rstrip("xX"))
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and speed > 0):
        raise CommandError(
            f"--speed must be a positive number (4 = four times as fast) or 'max', got {text!r}"
        )
    return speed


_OFFSET = re.compile(r"^(?:(\d+):)??(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_offset(text: str) -> float:
    """Seconds from ``SECONDS``, ``M:SS`` or ``H:MM:SS`` (fractions allowed in the seconds)."""
    match = _OFFSET.match(text.strip())
    if not match:
        raise CommandError(
            f"--from must be a time since the run's start like 90, 1:30 or 1:02:30, got {text!r}"
        )
    hours, minutes, seconds = match.groups()
    if (minutes is not None or hours is not None) and float(seconds) >= 60:
        raise CommandError(f"--from {text!r}: seconds must be below 60 in M:SS or H:MM:SS")
    if hours is not None and minutes is not None and int(minutes) >= 60:
        raise CommandError(f"--from {text!r}: minutes must be below 60 in H:MM:SS")
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def replay_run_id(original: str) -> str:
    """A fresh run id that names the recorded run: ``<original>-replay-<6 hex>``."""
    suffix = f"-replay-{secrets.token_hex(3)}"
    return original[: MAX_RUN_ID - len(suffix)] + suffix


@dataclass
class RunIndex:
    """One run of a recording, as the first pass saw it: an entry per message, no payloads."""

    run_id: str
    entries: dict[int, tuple[str, float, int | None]] = field(default_factory=dict)

    def add(self, message: Envelope, log_time: float) -> None:
        if message.seq in self.entries:
            return  # a duplicate: the first one counts
        step = getattr(message, "step", None)
        self.entries[message.seq] = (
            message.kind,
            log_time,
            step if isinstance(step, int) else None,
        )

    @property
    def messages(self) -> int:
        return len(self.entries)

    @property
    def first_time(self) -> float:
        return min(entry[1] for entry in self.entries.values())

    @property
    def last_time(self) -> float:
        return max(entry[1] for entry in self.entries.values())

    @property
    def duration(self) -> float:
        return self.last_time - self.first_time

    @property
    def finished(self) -> bool:
        return any(entry[0] == "run_finished" for entry in self.entries.values())

    @property
    def last_step(self) -> int:
        return max((e[2] for e in self.entries.values() if e[2] is not None), default=0)


def scan(reader: RecordingReader) -> dict[str, RunIndex]:
    """First pass: every run in the file, in order of first appearance."""
    runs: dict[str, RunIndex] = {}
    for recorded in reader.messages(INDEXED):
        message = recorded.message
        run = runs.get(message.run_id)
        if run is None:
            run = runs[message.run_id] = RunIndex(message.run_id)
        run.add(message, recorded.log_time)
    return runs


@dataclass(frozen=True)
class Plan:
    """What to send of one run: in seq order, those before ``point_seq`` at once (minus
    ``skip``), the rest timed from ``point_time``."""

    run: RunIndex
    order: list[int]
    point_seq: int
    point_time: float
    skip: frozenset[int]

    @property
    def catch_up(self) -> int:
        return sum(1 for seq in self.order if seq < self.point_seq) - len(self.skip)

    @property
    def messages(self) -> int:
        return len(self.order) - len(self.skip)

    @property
    def timed_duration(self) -> float:
        return max(0.0, self.run.last_time - self.point_time)


def plan(run: RunIndex, from_seconds: float | None = None, from_step: int | None = None) -> Plan:
    """Find the starting point (the first message, by seq, at or after the time or step) and
    the catch-up: everything before it except superseded latest-only messages."""
    order = sorted(run.entries)
    entries = run.entries
    if from_seconds is not None:
        at = run.first_time + from_seconds
        point = next((seq for seq in order if entries[seq][1] >= at), None)
        if point is None:
            raise CommandError(
                f"--from {format_duration(from_seconds)} is past the end of run {run.run_id}, "
                f"which lasts {format_duration(run.duration)}"
            )
    elif from_step is not None:
        point = next(
            (seq for seq in order if (step := entries[seq][2]) is not None and step >= from_step),
            None,
        )
        if point is None:
            raise CommandError(
                f"--from-step {from_step} is past the end of run {run.run_id}, "
                f"whose last step is {run.last_step}"
            )
    else:
        point = order[0]
    latest: dict[str, int] = {}
    skip: set[int] = set()
    for seq in order:
        if seq >= point:
            break
        kind = entries[seq][0]
        if kind in LATEST_ONLY:
            if kind in latest:
                skip.add(latest[kind])
            latest[kind] = seq
    point_time = run.first_time if point == order[0] else entries[point][1]
    return Plan(run, order, point, point_time, frozenset(skip))


def in_seq_order(
    reader: RecordingReader, plan: Plan, window: int = REORDER_WINDOW
) -> Iterator[Recorded]:
    """Second pass: the planned run's messages in seq order, each seq once.

    Up to ``window`` messages are held back while an out-of-order one is awaited; past that
    it is given up (and skipped if it comes later). Unindexed messages (``model``) go out in
    their seq place; of those before the starting point only the last of each kind is sent,
    at the end of the catch-up.
    """
    run, skip, point = plan.run, plan.skip, plan.point_seq
    wanted = [seq for seq in plan.order if seq not in skip]
    expected = iter(wanted)
    want: int | None = next(expected, None)
    heap: list[tuple[int, Recorded]] = []
    held: set[int] = set()
    pending: dict[str, Recorded] = {}  # the latest unindexed message of each kind before point
    last = -1
    indexed_sent = 0

    def release() -> Iterator[Recorded]:
        nonlocal want, last, indexed_sent
        while heap and (want is None or heap[0][0] <= want):
            seq, recorded = heapq.heappop(heap)
            held.discard(seq)
            last = seq
            kind = recorded.message.kind
            if seq == want:
                want = next(expected, None)
            if kind in INDEXED:
                indexed_sent += 1
            elif seq < point and kind in LATEST_ONLY:
                pending[kind] = recorded
                continue
            if seq >= point and pending:
                yield from sorted(pending.values(), key=lambda r: r.message.seq)
                pending.clear()
            yield recorded

    for recorded in reader.messages():
        message = recorded.message
        seq = message.seq
        if message.run_id != run.run_id or seq <= last or seq in held:
            continue  # another run, a duplicate, or too late
        if message.kind in INDEXED and (seq in skip or seq not in run.entries):
            continue  # superseded before the starting point, or written after the first pass
        heapq.heappush(heap, (seq, recorded))
        held.add(seq)
        if len(held) > window:  # give up on the awaited seqs below the lowest held one
            while want is not None and want < heap[0][0]:
                want = next(expected, None)
        yield from release()
    want = None
    yield from release()
    yield from sorted(pending.values(), key=lambda r: r.message.seq)
    if indexed_sent < len(wanted):
        log.warning(
            "%d messages of run %s were skipped: missing on the second reading, or more than "
            "%d messages out of order",
            len(wanted) - indexed_sent,
            run.run_id,
            window,
        )
