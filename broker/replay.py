"""Play a recorded run back into a broker, as a trainer would, at any speed, from any point.

Two passes over the file. The first (:func:`scan`) keeps only an index entry per message
(seq, kind, log time, step), so it can list the runs, choose one, find the starting point and
know which messages the catch-up needs; it does not even decode the ``model`` messages (~1.6
MB each, four fifths of a recording's bytes, and never a starting point). The second
(:func:`in_seq_order`) streams the chosen run's messages in ``seq`` order through a bounded
reorder window (a broker's recording may hold gap fills that arrived after a restart), so at
most a window's worth of decoded messages is ever held.

Each message goes out under a run id of the replay's own that names the recorded run, with
``seq`` renumbered from 0 without gaps, ``sent_at`` the time of sending and ``replayed`` set;
every other field is the recorded one. Timing follows the recording's log times (the original
send times) scaled by the speed, each message sent at its due time counted from one fixed
start, so sleeping errors never add up.

Starting from a point: everything before it that the page needs is sent at once first
(``run_started``, every curve point, and only the last of each "latest-only" kind), so a
viewer shows the run exactly as it was at that moment, and the rest follows with its timing.

The presenter's commands reach a replay as they reach a trainer: Pause holds it (announced as a
``status`` message of its own, not marked replayed, so the page says PAUSED) until Resume, and
the rest of the run follows that much later; Stop ends it; Pace is ignored, ``--speed`` sets
the pace.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from broker.history import LATEST_ONLY
from broker.recording_reader import Recorded, RecordingReader, pick_run
from protocol import MESSAGE_TYPES, Envelope, RunFinished, RunStatus
from protocol.errors import CommandError
from trainer.progress import TerminalLine, format_duration
from trainer.publisher import Publisher

log = logging.getLogger("broker.replay")

REORDER_WINDOW = 1000
"""Messages held while waiting for an out-of-order seq; a later one is skipped and counted."""
LINGER_MS = 10_000
"""How long queued messages may take to leave once the replay is done."""
MAX_RUN_ID = 200
UNINDEXED = frozenset({"model"})
"""Kinds the first pass skips undecoded: the second pass places them by seq as they come."""
INDEXED = frozenset(MESSAGE_TYPES) - UNINDEXED
WAIT_SLICE = 0.05
"""Longest single sleep while waiting for a message's due time: upstream traffic (a restarted
broker's subscription) is served between slices."""


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


class Progress:
    """Where the replay is in the run, on one terminal line (a log line every 10 s otherwise)."""

    def __init__(self, duration: float, *, enabled: bool = True) -> None:
        self.duration = duration
        self.line = TerminalLine(enabled=enabled, logger=log)

    def update(self, sent: int, position: float) -> None:
        if self.line.due():
            done = position / self.duration if self.duration > 0 else 1.0
            self.line.show(
                f"replaying {format_duration(position)} / {format_duration(self.duration)}, "
                f"{sent} messages sent",
                done=done,
            )

    def close(self) -> None:
        self.line.close()


class Replay:
    """Replays one run of a recording into the broker at ``endpoint`` (its ``--in``).

    ``speed`` is a factor of the original timing (``math.inf``: no waiting). ``from_seconds``
    (since the run's first message) or ``from_step`` picks the starting point. ``loop`` plays
    again after the end, each pass under a new run id. The file is read when constructed, so
    a bad file, run or starting point raises :class:`CommandError` before anything is sent.
    """

    def __init__(
        self,
        path: str | Path,
        endpoint: str,
        *,
        speed: float = 1.0,
        from_seconds: float | None = None,
        from_step: int | None = None,
        run_id: str | None = None,
        loop: bool = False,
        wait_for_broker: float = 10.0,
        progress: bool = True,
    ) -> None:
        if not speed > 0:
            raise CommandError(f"the speed must be positive, got {speed}")
        self.path = Path(path)
        self.endpoint = endpoint
        self.speed = speed
        self.loop = loop
        self.wait_for_broker = wait_for_broker
        self.progress_enabled = progress
        self.reader = RecordingReader(self.path)
        self.runs = scan(self.reader)
        self.damage = None if self.reader.whole else self.reader.describe_damage()
        chosen = pick_run(self.runs, run_id, self.path, lambda run: run.messages)
        self.plan = plan(chosen, from_seconds, from_step)
        self.run_ids: list[str] = []
        self.sent = 0
        self.dropped = 0
        self.stopped = False
        self.stop_requested = False

    @property
    def original(self) -> RunIndex:
        return self.plan.run

    def run(self) -> int:
        """Play (and loop) until done or interrupted; returns the messages sent in all."""
        plan, run = self.plan, self.plan.run
        if self.damage:
            log.warning("%s: %s", self.path, self.damage)
        speed = "max" if math.isinf(self.speed) else f"{self.speed:g}x"
        start = ""
        if plan.point_seq != plan.order[0]:
            start = (
                f", from {format_duration(plan.point_time - run.first_time)} "
                f"({plan.catch_up} messages sent at once first)"
            )
        log.info(
            "replaying %s: run %s, %d messages (+ model snapshots), %s long, speed %s%s",
            self.path,
            run.run_id,
            plan.messages,
            format_duration(run.duration),
            speed,
            start,
        )
        if not run.finished:
            log.info(
                "run %s has no run_finished in the recording (its recorder stopped early): "
                "the replay ends it as stopped",
                run.run_id,
            )
        context = zmq.Context()
        linger: int | None = LINGER_MS
        began = time.monotonic()
        publisher: Publisher | None = None
        try:
            # One connection for every pass: the broker, and the presenter's commands through
            # it, reach the replay between passes too.
            publisher = self._connect(context)
            while True:
                self._play_once(publisher)
                if self.stop_requested:
                    self.stopped = True
                    log.info("stopped by the presenter")
                if not self.loop or self.stop_requested:
                    break
        except KeyboardInterrupt:
            self.stopped = True
            linger = 1000  # Ctrl-C: wait for a broker only briefly
        finally:
            if publisher is not None:
                self.dropped = publisher.dropped
                publisher.close(linger)
            context.setsockopt(zmq.LINGER, linger)
            context.term()  # waits (up to the linger) until everything queued has left
        if self.loop or self.stopped or self.dropped:
            log.info(
                "replay %s: %d messages sent in %.2f s over %d pass(es)%s",
                "stopped" if self.stopped else "done",
                self.sent,
                time.monotonic() - began,
                len(self.run_ids),
                f", {self.dropped} dropped (the broker took none for 10 s)" if self.dropped else "",
            )
        return self.sent

    def _connect(self, context: zmq.Context) -> Publisher:
        """A publisher for the first pass, once a broker has subscribed to it."""
        publisher = Publisher(
            self.endpoint,
            replay_run_id(self.plan.run.run_id),
            linger_ms=LINGER_MS,
            blocking=True,
            context=context,
        )
        waited = time.monotonic()
        first_look = min(0.5, self.wait_for_broker)
        if not publisher.wait_for_subscriber(first_look):
            log.info(
                "waiting up to %g s for a broker to subscribe at %s",
                self.wait_for_broker,
                self.endpoint,
            )
        if not publisher.wait_for_subscriber(self.wait_for_broker - first_look):
            publisher.close(0)
            raise CommandError(
                f"no broker subscribed at {self.endpoint} within {self.wait_for_broker:g} s; "
                "start 'mnist-live broker' and point --connect at its --in endpoint"
            )
        log.info("broker at %s subscribed after %.2f s", self.endpoint, time.monotonic() - waited)
        return publisher

    def _play_once(self, publisher: Publisher) -> None:
        plan = self.plan
        if self.run_ids:  # a later pass of --loop: a new run on the same connection
            publisher.begin_run(replay_run_id(plan.run.run_id))
        run_id = publisher.run_id
        log.info("replaying as run %s", run_id)
        self.run_ids.append(run_id)
        progress = Progress(plan.run.duration, enabled=self.progress_enabled)
        try:
            sent = self._send_all(publisher, progress)
        finally:
            progress.close()
        timed = plan.timed_duration
        effective = timed / sent[1] if sent[1] > 0 else math.inf
        log.info(
            "run %s done: %d messages sent, %.2f s of original timing in %.2f s "
            "(effective speed %s)",
            run_id,
            sent[0],
            timed,
            sent[1],
            "max" if math.isinf(effective) else f"{effective:.2f}x",
        )

    def _send_all(self, publisher: Publisher, progress: Progress) -> tuple[int, float]:
        """Send one pass; returns the messages sent and the wall time of the timed part."""
        plan = self.plan
        first_time = plan.run.first_time
        sent = 0
        start: float | None = None
        step = epoch = 0
        finished = False
        for recorded in in_seq_order(self.reader, plan):
            if recorded.message.seq >= plan.point_seq:
                if start is None:
                    start = time.monotonic()
                due = start  # at --speed max every message is due at once
                if not math.isinf(self.speed):
                    due += (recorded.log_time - plan.point_time) / self.speed
                # The presenter is heard at any speed; a pause moves the timeline on.
                start += self._wait(publisher, due, step)
                if self.stop_requested:
                    break
            step = getattr(recorded.message, "step", step)
            epoch = getattr(recorded.message, "epoch", epoch)
            finished = finished or recorded.message.kind == "run_finished"
            publisher.publish(recorded.message, replayed=True)
            sent += 1
            self.sent += 1
            progress.update(sent, recorded.log_time - first_time)
        if not finished:  # stopped, or a recording cut short: end the run as a trainer would
            why = "stopped by the presenter" if self.stop_requested else "the recording ends here"
            publisher.send(RunFinished, status="stopped", step=step, epoch=epoch, message=why)
        return sent, (time.monotonic() - start) if start is not None else 0.0

    def _wait(self, publisher: Publisher, due: float, step: int) -> float:
        """Sleep until ``due`` (monotonic), serving the broker and the presenter meanwhile.

        The presenter's Pause holds the replay here until Resume (or Start); Stop ends it.
        Each change is announced as a ``status`` message, as a trainer does. Returns the
        seconds spent paused, by which the rest of the replay moves later.
        """
        paused_since: float | None = None
        paused_for = 0.0
        while True:
            now = time.monotonic()
            for command in publisher.poll_commands():
                if command.run_id not in ("*", publisher.run_id):
                    continue
                log.info("presenter command: %s", command.command)
                match command.command:
                    case "pause" if paused_since is None:
                        paused_since = now
                        publisher.send(RunStatus, step=step, state="paused")
                    case "resume" | "start" if paused_since is not None:
                        paused_for += now - paused_since
                        paused_since = None
                        publisher.send(RunStatus, step=step, state="training")
                    case "stop":
                        self.stop_requested = True
                        return paused_for
                    case "pace":
                        log.info("a replay keeps its --speed; 'pace' ignored")
            if paused_since is None and now >= due + paused_for:
                return paused_for
            remaining = due + paused_for - now if paused_since is None else WAIT_SLICE
            time.sleep(min(remaining, WAIT_SLICE))
