"""A recording read into memory for the viewer: every run of the file, in sequence order.

``mnist-live view --replay`` and ``mnist-live export --html`` both show a run of a file the way
a live viewer would have: :func:`load` reads it once (validated by the recording room's
reader), and :func:`fold` builds the :class:`~viewer.runs.state.RunHistory` of any moment of a
run. Such a fold skips every latest-only message (``sample``, ``weights``, ``model``,
``status``) that a later one of the same kind supersedes, by the protocol's rule
(:mod:`protocol.runlog`), which keeps a jump within a 30-minute run well under a second.

A run's full models (what the drawing pads read with) are the largest messages (1.6 MB for
784-512-10, a new one every 5 s), so only some are kept: at most :data:`MODELS_KEPT` per file,
spread over the run (:class:`ModelThinning`), and the others are never decoded. A pad in a
replay reads with the latest kept model at the playback position, and says its step.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from broker.recording.reader import RecordingReader, pick_run
from protocol import MESSAGE_TYPES, Envelope, runlog
from viewer.runs.state import RunHistory

log = logging.getLogger("viewer")

PICTURES = frozenset({"sample", "weights"})
"""Kinds a recorder that joins mid-run gets only the latest of (the broker keeps no more)."""
MID_RUN_GAP = 5.0
"""Seconds of curves before a recording's first picture that mark it as begun mid-run: a
trainer sends a sample within a second of its first metrics."""
LATEST_ONLY = runlog.LATEST_ONLY
"""Kinds of which the page shows only the latest (the broker's last-value cache keeps the same
ones): a fold skips the superseded ones."""
MODELS_KEPT = 12
"""Full models kept of a file, spread over it: a replay's pads read with the latest of them
(about 20 MB for 784-512-10)."""
MODEL_GAP = 10.0
"""Seconds between two kept models to begin with (doubled each time there are too many)."""


class ModelThinning:
    """Which ``model`` messages to decode, decided from their log times alone as the file is
    read: one at least ``gap`` seconds after the last kept; when more than :data:`MODELS_KEPT`
    are kept, every other one goes and the gap doubles. So what is kept (half to all of
    MODELS_KEPT) spans the whole run, and what is decoded grows with the logarithm of its
    length: about MODELS_KEPT / 2 more each time the run doubles (about 40 of the 1,000 models
    an 83-minute run sends)."""

    def __init__(self, kept: int = MODELS_KEPT, gap: float = MODEL_GAP) -> None:
        self.limit, self.gap = kept, gap
        self.times: list[float] = []

    def __call__(self, kind: str, log_time: float) -> bool:
        if kind != "model":
            return True
        if self.times and log_time < self.times[-1] + self.gap:
            return False
        self.times.append(log_time)
        if len(self.times) > self.limit:
            self.times = self.times[::2]
            self.gap *= 2
        return True


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

    @property
    def pictures_from(self) -> float | None:
        """Seconds into the run of the first picture, when the recording began mid-run (its
        curves go back :data:`MID_RUN_GAP` or more before it); otherwise None."""
        first = [self.offsets[p[0]] for kind, p in self.latest.items() if kind in PICTURES and p]
        metrics = next((i for i, m in enumerate(self.messages) if m.kind == "metrics"), None)
        if not first or metrics is None or min(first) - self.offsets[metrics] < MID_RUN_GAP:
            return None
        return min(first)

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
    """Every run of one file (with a few of its ``model`` messages), and how reading it went."""

    path: Path
    runs: dict[str, RecordedRun]
    note: str
    seconds: float

    def pick(self, run_id: str | None) -> RecordedRun:
        """The run ``run_id``, or the one with the most messages, as every command picks."""
        return pick_run(self.runs, run_id, self.path, lambda run: len(run.messages))


def load(path: str | Path, models: bool = True) -> Recording:
    """Read a recording into memory, run by run in sequence order (duplicates dropped), with
    some of its models (:class:`ModelThinning`; none without ``models``).

    Raises :class:`RecordingError` for a file that is not a recording; a damaged one is kept up
    to the damage, and ``note`` says so.
    """
    began = time.perf_counter()
    reader = RecordingReader(path)
    thinning = ModelThinning()
    kinds = [kind for kind in MESSAGE_TYPES if models or kind != "model"]
    by_run: dict[str, dict[int, tuple[float, Envelope]]] = {}
    held: dict[float, tuple[str, int]] = {}  # the models decoded and kept so far, by log time
    for recorded in reader.messages(kinds, thinning):
        message = recorded.message
        by_run.setdefault(message.run_id, {}).setdefault(message.seq, (recorded.log_time, message))
        if message.kind == "model":
            held[recorded.log_time] = (message.run_id, message.seq)
            for dropped in held.keys() - set(thinning.times):  # a halving: free them now
                run_id, seq = held.pop(dropped)
                by_run[run_id].pop(seq, None)
    models_kept = frozenset(thinning.times)
    runs = {}
    for run_id, by_seq in by_run.items():
        run = RecordedRun(run_id)
        start = clock = None
        for seq in sorted(by_seq):
            log_time, message = by_seq[seq]
            if message.kind == "model" and log_time not in models_kept:
                continue  # a duplicate's twin, or one a halving dropped
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
    history.pictures_from = run.pictures_from
    history.apply_many(run.needed(0, count))
    return history


_preloaded: dict[Path, Recording] = {}
"""The recordings this process read before serving (children of ``--num-procs`` inherit them)."""


def preload(path: str | Path, run_id: str | None = None) -> tuple[Recording, RecordedRun]:
    """Load a recording and pick its run before the server starts (children inherit it)."""
    recording = load(path)
    run = recording.pick(run_id)
    _preloaded[Path(path)] = recording
    return recording, run


def preloaded(path: str | Path) -> Recording:
    """The recording at ``path``: the copy read before serving, if it is one."""
    if (recording := _preloaded.get(Path(path))) is not None:
        return recording
    recording = load(path)
    log.info("recording %s loaded in %.2f s (%s)", path, recording.seconds, recording.note)
    return recording


def whole_runs(recordings: list[Recording]) -> dict[str, RunHistory]:
    """Every run of ``recordings`` folded whole, as a comparison shows them: by run id, or by
    run id and file name where two files hold the same run."""
    counts: dict[str, int] = {}
    for recording in recordings:
        for run_id in recording.runs:
            counts[run_id] = counts.get(run_id, 0) + 1
    out = {}
    for recording in recordings:
        for run_id, run in recording.runs.items():
            key = run_id if counts[run_id] == 1 else f"{run_id} ({recording.path.name})"
            if key in out:  # two files of one name, in two folders
                key = f"{run_id} ({recording.path})"
            out[key] = fold(run, len(run.messages), replayed=False)
    return out
