"""A recorded run played back in a viewer process, in place of the live broker subscription.

``mnist-live view --replay run.mcap`` loads the recording once per server process
(:mod:`.recording`) and serves it through a :class:`ReplayHub`, a
:class:`~viewer.sources.RunSource` like the live hub, so the dashboard is the same code. One
clock per process drives the playback, shared by every session in it (the room follows the
presenter): it plays at a chosen speed, pauses, and jumps to any moment.

Playing forward folds each message into the current run once the clock passes its log time. A
jump builds a *fresh* run folded with every message logged up to the moment
(:func:`~viewer.sources.recording.fold`), so sessions see a new run object and render it whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from protocol.cli.durations import format_duration
from viewer.runs.state import RunHistory
from viewer.sources import install
from viewer.sources.recording import RecordedRun, Recording, fold, preloaded, whole_runs

log = logging.getLogger("viewer")

SPEEDS = (1.0, 2.0, 4.0, 10.0, 50.0)
"""The speeds the playback controls offer."""
TICK_SECONDS = 0.05
"""How often the playback thread moves the clock on (sessions look at most at frame rate)."""


class ReplayHub:
    """Plays one recorded run on a clock shared by every session of this process.

    Positions are seconds into the run (0 = its first message). The playback thread moves the
    clock; sessions call :meth:`play`, :meth:`pause`, :meth:`set_speed` and :meth:`seek` from
    their callbacks and read :meth:`state` every frame.
    """

    def __init__(
        self,
        run: RecordedRun,
        clock: Callable[[], float] = time.monotonic,
        recordings: Sequence[Recording] = (),
    ) -> None:
        """``recordings``: every file whose runs a comparison may overlay (``run``'s too)."""
        self.recorded = run
        self.recordings = list(recordings)
        self._whole: dict[str, RunHistory] | None = None
        self.clock = clock
        self.lock = threading.Lock()
        self.duration = run.duration
        self.speed = 1.0
        self.playing = False
        self._base_position = 0.0
        self._base_time = self.clock()
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

    def comparable(self) -> dict[str, RunHistory]:
        """Every run of every file given, whole, whatever the playback's position (a
        comparison is of recorded runs as they ended); none until :meth:`fold_whole` is done
        (it runs off the event loop when playback starts: a page never waits for it)."""
        return self._whole or {}

    def fold_whole(self) -> None:
        began = time.perf_counter()
        recorded = self.recorded
        self._whole = whole_runs(self.recordings) or {
            recorded.run_id: fold(recorded, len(recorded.messages), replayed=False)
        }
        log.info(
            "%d recorded run(s) folded whole to compare, in %.0f ms",
            len(self._whole),
            (time.perf_counter() - began) * 1000,
        )

    def start(self) -> None:
        self._thread.start()
        threading.Thread(target=self.fold_whole, name="viewer-compare", daemon=True).start()

    def broker_silence(self) -> float | None:
        return None

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
            self._base_time = self.clock()
            self.playing = True
        log.info("replay plays at %gx from %s", self.speed, format_duration(self._base_position))

    def pause(self) -> None:
        with self._control:
            if not self.playing:
                return
            self._base_position = self._position(self.clock())
            self.playing = False
        log.info("replay paused at %s", format_duration(self._base_position))

    def set_speed(self, speed: float) -> None:
        if not 0 < speed <= 1000:
            raise ValueError(f"speed must be above 0 and at most 1000, got {speed:g}")
        with self._control:
            now = self.clock()
            self._base_position, self._base_time = self._position(now), now
            self.speed = speed

    def seek(self, position: float) -> None:
        """Jump to ``position`` seconds into the run; the thread rebuilds the page's run."""
        with self._control:
            self._rewind(min(max(0.0, position), self.duration))

    def _rewind(self, position: float) -> None:
        self._base_position, self._base_time = position, self.clock()
        self._seek_to = position

    def advance(self) -> None:
        """Move the run to the clock: a pending jump rebuilds it, playing folds what is due.

        The playback thread calls this every :data:`TICK_SECONDS`; tests call it directly.
        """
        with self._control:
            now = self.clock()
            position = self._position(now)
            seek_to, self._seek_to = self._seek_to, None
            if self.playing and position >= self.duration:
                self.playing = False  # the end: stay there, paused
                self._base_position = self.duration
                log.info("replay reached the end (%s)", format_duration(self.duration))
        due = self.recorded.count_until(position)
        if seek_to is not None:
            began = time.perf_counter()
            history = fold(self.recorded, due)
            with self.lock:
                self._history = history
                self._folded = due
            log.info(
                "replay jumped to %s: %d messages folded in %.0f ms",
                format_duration(position),
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
            return self.playing, self._position(self.clock()), self.speed

    def _play_loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.advance()
            except Exception:  # a bug must not silently freeze the page
                log.exception("replay playback failed")
                return


def start(path: str | Path, run_id: str | None, compare: Sequence[str | Path] = ()) -> ReplayHub:
    """Play the recording in this process (from the preloaded copy if it is this one) as what
    its sessions show (:func:`viewer.sources.install`); ``compare``: more recordings whose
    runs ``/compare`` offers beside this one's."""
    current = install(lambda: _playing(path, run_id, compare))
    assert isinstance(current, ReplayHub), "this process already shows something else"
    return current


def _playing(path: str | Path, run_id: str | None, compare: Sequence[str | Path]) -> ReplayHub:
    recording = preloaded(path)
    others = [preloaded(other) for other in compare]
    playback = ReplayHub(recording.pick(run_id), recordings=[recording, *others])
    playback.start()
    return playback
