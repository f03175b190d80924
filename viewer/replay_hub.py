"""A recorded run played back in a viewer process, in place of the live broker subscription.

``mnist-live view --replay run.mcap`` loads the recording once per server process and serves
it through a :class:`ReplayHub`, which offers sessions what :class:`viewer.hub.Hub` does
(``lock``, ``current``, ``run``, ``previous``, ``start``, ``stop``), so the dashboard is the
same code. One clock per process drives the playback, shared by every session in it (the room
follows the presenter): it plays at a chosen speed, pauses, and jumps to any moment.

Playing forward folds each message into the current :class:`RunHistory` once the clock passes
its log time. A jump builds a *fresh* RunHistory folded with every message logged up to the
moment, so sessions see a new run object and render it whole. Such a fold skips every
``sample`` and ``weights`` message that a later one of the same kind supersedes (the page
shows only the latest), which keeps a jump within a 30-minute run well under a second.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.recording.reader import RecordingReader, pick_run
from protocol import MESSAGE_TYPES, Envelope, runlog
from viewer import hub
from viewer.history import RunHistory

log = logging.getLogger("viewer")

SKIPPED_KINDS = frozenset({"model"})
"""Kinds the dashboard never shows: not even loaded."""
LATEST_ONLY = runlog.LATEST_ONLY - SKIPPED_KINDS
"""Kinds of which the page shows only the latest (the broker's last-value cache keeps the same
ones): a fold skips the superseded ones."""
SPEEDS = (1.0, 2.0, 4.0, 10.0, 50.0)
"""The speeds the playback controls offer."""
TICK_SECONDS = 0.05
"""How often the playback thread moves the clock on (sessions look at most at frame rate)."""


@dataclass
class RecordedRun:
    """One run of a recording, in sequence order, with each message's time into the run."""

    run_id: str
    messages: list[Envelope] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    """Seconds from the run's first message, never decreasing (a clock step back is flattened)."""
    latest: dict[str, list[int]] = field(default_factory=dict)
    """For each latest-only kind, the positions of its messages."""

    @property
    def duration(self) -> float:
        return self.offsets[-1] if self.offsets else 0.0

    def count_until(self, offset: float) -> int:
        """How many messages were logged at or before ``offset`` seconds into the run."""
        return bisect.bisect_right(self.offsets, offset + 1e-9)

    def needed(self, start: int, stop: int) -> Iterable[Envelope]:
        """Messages ``start:stop`` in order, less latest-only ones superseded before ``stop``."""
        last = {
            kind: positions[i - 1]
            for kind, positions in self.latest.items()
            if (i := bisect.bisect_left(positions, stop)) > 0
        }
        for position in range(start, stop):
            message = self.messages[position]
            if message.kind in last and position != last[message.kind]:
                continue
            yield message


@dataclass
class Recording:
    """Every run of one file (``model`` messages left out), and how reading it went."""

    path: Path
    runs: dict[str, RecordedRun]
    note: str
    seconds: float

    def pick(self, run_id: str | None) -> RecordedRun:
        """The run ``run_id``, or the one with the most messages, as every command picks."""
        return pick_run(self.runs, run_id, self.path, lambda run: len(run.messages))


def load(path: str | Path) -> Recording:
    """Read a recording into memory, run by run in sequence order (duplicates dropped).

    Raises :class:`RecordingError` for a file that is not a recording; a damaged one is kept up
    to the damage, and ``note`` says so.
    """
    began = time.perf_counter()
    reader = RecordingReader(path)
    wanted = [k for k in MESSAGE_TYPES if k not in SKIPPED_KINDS]
    by_run: dict[str, dict[int, tuple[float, Envelope]]] = {}
    for recorded in reader.messages(wanted):
        message = recorded.message
        by_run.setdefault(message.run_id, {}).setdefault(message.seq, (recorded.log_time, message))
    runs = {}
    for run_id, by_seq in by_run.items():
        run = RecordedRun(run_id)
        start = clock = None
        for seq in sorted(by_seq):
            log_time, message = by_seq[seq]
            start = log_time if start is None else start
            clock = max(log_time - start, clock or 0.0)
            if message.kind in LATEST_ONLY:
                run.latest.setdefault(message.kind, []).append(len(run.messages))
            run.messages.append(message)
            run.offsets.append(clock)
        runs[run_id] = run
    return Recording(Path(path), runs, reader.note(), time.perf_counter() - began)


def fold(run: RecordedRun, count: int, replayed: bool = True) -> RunHistory:
    """A fresh RunHistory holding the first ``count`` messages of ``run``.

    ``replayed`` makes its status say so while the run is unfinished (as ``view --replay``
    shows it); an export shows the run as it was.
    """
    history = RunHistory(run.run_id)
    history.replayed = history.played_back = replayed
    history.apply_many(run.needed(0, count))
    return history


class ReplayHub:
    """Plays one recorded run on a clock shared by every session of this process.

    Positions are seconds into the run (0 = its first message). The playback thread moves the
    clock; sessions call :meth:`play`, :meth:`pause`, :meth:`set_speed` and :meth:`seek` from
    their callbacks and read :meth:`state` every frame.
    """

    def __init__(self, run: RecordedRun) -> None:
        self.recorded = run
        self.lock = threading.Lock()
        self.duration = run.duration
        self.speed = 1.0
        self.playing = False
        self._base_position = 0.0
        self._base_time = time.monotonic()
        self._seek_to: float | None = None
        self._folded = run.count_until(0.0)
        self._history = fold(run, self._folded)
        self._control = threading.Lock()  # orders clock changes against the thread's reads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play_loop, name="viewer-replay", daemon=True)

    # -- what the dashboard needs of a hub --------------------------------------------------------

    @property
    def current(self) -> RunHistory:
        with self.lock:
            return self._history

    def run(self, run_id: str | None) -> RunHistory | None:
        with self.lock:
            return self._history if run_id == self._history.run_id else None

    def previous(self, run: RunHistory) -> RunHistory | None:
        return None  # one run at a time; the overlay is for live runs following each other

    def start(self) -> None:
        self._thread.start()

    def figures(self) -> dict[str, Any]:
        """For ``/healthz`` and ``/metrics``: the playback thread stands in for a subscription,
        and the messages now on the page count as received."""
        return {
            "running": self._thread.is_alive(),
            "received": self._folded,
            "rejected": 0,
            "last_message_age": None,
        }

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    # -- the clock ------------------------------------------------------------------------------

    def _position(self, now: float) -> float:
        if not self.playing:
            return self._base_position
        moved = self._base_position + (now - self._base_time) * self.speed
        return min(moved, self.duration)

    def play(self) -> None:
        """Play from here; from the end, play again from the start."""
        with self._control:
            if self.playing:
                return
            if self._base_position >= self.duration:
                self._rewind(0.0)
            self._base_time = time.monotonic()
            self.playing = True
        log.info("replay plays at %gx from %s", self.speed, clock_text(self._base_position))

    def pause(self) -> None:
        with self._control:
            if not self.playing:
                return
            self._base_position = self._position(time.monotonic())
            self.playing = False
        log.info("replay paused at %s", clock_text(self._base_position))

    def set_speed(self, speed: float) -> None:
        if not 0 < speed <= 1000:
            raise ValueError(f"speed must be above 0 and at most 1000, got {speed:g}")
        with self._control:
            now = time.monotonic()
            self._base_position, self._base_time = self._position(now), now
            self.speed = speed

    def seek(self, position: float) -> None:
        """Jump to ``position`` seconds into the run; the thread rebuilds the page's run."""
        with self._control:
            self._rewind(min(max(0.0, position), self.duration))

    def _rewind(self, position: float) -> None:
        self._base_position, self._base_time = position, time.monotonic()
        self._seek_to = position

    def advance(self) -> None:
        """Move the run to the clock: a pending jump rebuilds it, playing folds what is due.

        The playback thread calls this every :data:`TICK_SECONDS`; tests call it directly.
        """
        with self._control:
            now = time.monotonic()
            position = self._position(now)
            seek_to, self._seek_to = self._seek_to, None
            if self.playing and position >= self.duration:
                self.playing = False  # the end: stay there, paused
                self._base_position = self.duration
                log.info("replay reached the end (%s)", clock_text(self.duration))
        due = self.recorded.count_until(position)
        if seek_to is not None:
            began = time.perf_counter()
            history = fold(self.recorded, due)
            with self.lock:
                self._history = history
                self._folded = due
            log.info(
                "replay jumped to %s: %d messages folded in %.0f ms",
                clock_text(position),
                due,
                (time.perf_counter() - began) * 1000,
            )
        elif due > self._folded:
            with self.lock:
                self._history.apply_many(self.recorded.needed(self._folded, due))
                self._folded = due

    def state(self) -> tuple[bool, float, float]:
        """``(playing, position, speed)`` now, for the controls."""
        with self._control:
            return self.playing, self._position(time.monotonic()), self.speed

    def _play_loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.advance()
            except Exception:  # a bug must not silently freeze the page
                log.exception("replay playback failed")
                return


def clock_text(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a position in the run."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_preloaded: Recording | None = None


def preload(path: str | Path, run_id: str | None) -> tuple[Recording, RecordedRun]:
    """Load the recording and pick its run before the server starts (children inherit it)."""
    global _preloaded
    recording = load(path)
    run = recording.pick(run_id)
    _preloaded = recording
    return recording, run


def start(path: str | Path, run_id: str | None) -> ReplayHub:
    """Play the recording in this process (from the preloaded copy if it is this one) as what
    its sessions show (:func:`viewer.hub.install`)."""
    current = hub.install(lambda: _playing(path, run_id))
    assert isinstance(current, ReplayHub), "this process already shows something else"
    return current


def _playing(path: str | Path, run_id: str | None) -> ReplayHub:
    recording = _preloaded
    if recording is None or recording.path != Path(path):
        recording = load(path)
        log.info("recording %s loaded in %.2f s (%s)", path, recording.seconds, recording.note)
    playback = ReplayHub(recording.pick(run_id))
    playback.start()
    return playback
