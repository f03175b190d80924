"""The runs a broker holds for late joiners and repairs, each kept by the protocol's rule.

Each run is a :class:`protocol.runlog.RunLog` (every curve point, the latest of each state
kind, bounded in bytes); only the last ``runs_kept`` runs are held, so a publisher that keeps
starting runs cannot grow the broker without limit.

New runs are bounded too, since anyone who reaches ``--in`` can name one: a burst of
:data:`NEW_RUN_BURST` new runs, then one per :data:`NEW_RUN_SECONDS`; a refused run stays
refused (it would otherwise come in later without its ``run_started``); and a new run
never retires a *live* one (a run not finished and heard from in the last
:data:`LIVE_SECONDS`); a new run that would have to is refused. So a flood of made-up run ids
cannot push a talk's real run out of the broker (its viewers' late joiners and repairs) or
make a recording file for each.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from protocol.runlog import HISTORY_BYTES, RunLog

RUNS_KEPT = 4
SEQ_WINDOW = 10_000_000
"""How far past a run's highest seq (or past 0, for a run's first message) a seq may be: more
than a publisher could have dropped or held back, or skips when it re-publishes a run of up to
ten million messages (four days at default cadences) to a restarted broker, and far less than a
forged 10^12, which would otherwise leave every subscriber waiting for messages that never
come."""
REFUSED_KEPT = 10_000
"""Run ids refused, remembered so that a refused run stays refused rather than coming in later
without its ``run_started``."""
NEW_RUN_BURST = 8
NEW_RUN_SECONDS = 10.0
LIVE_SECONDS = 30.0
LISTENING_SECONDS = 3.0
"""A run heard from within this long has a publisher that reads commands: a training run sends
many messages a second, a waiting or paused one a heartbeat each second. A run that finished
that recently counts too: a ``--loop`` replay starts its next pass a moment later."""


class History:
    """The runs a broker holds, oldest first; the newest started is "latest"."""

    def __init__(
        self,
        run_bytes: int = HISTORY_BYTES,
        runs_kept: int = RUNS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_bytes = run_bytes
        self.runs_kept = runs_kept
        self.runs: OrderedDict[str, RunLog] = OrderedDict()
        self.heard: dict[str, float] = {}
        """When each held run last sent a message (``clock`` time)."""
        self.retired = 0
        self.clock = clock
        self.new_run_credit = float(NEW_RUN_BURST)
        self._credited_at = clock()
        self.refused: OrderedDict[str, None] = OrderedDict()
        self.refused_heard: dict[str, float] = {}
        """When a refused run last sent (its publisher is alive and hears commands): the
        newest few, for :meth:`listening`."""

    def add(self, run_id: str, seq: int, kind: str, frames: Sequence[bytes]) -> str | None:
        """Hold a validated message; None, or why not: ``duplicate`` (its run has seen this
        seq), ``seq_out_of_window`` (:data:`SEQ_WINDOW`) or ``new_run_refused`` (too many new
        runs, or only live ones to retire)."""
        now = self.clock()
        run = self.runs.get(run_id)
        if seq > (run.last_seq if run is not None else 0) + SEQ_WINDOW:
            return "seq_out_of_window"
        if run is None:
            if run_id in self.refused or not self._admit(now):
                self.refused[run_id] = None
                self.refused.move_to_end(run_id)
                while len(self.refused) > REFUSED_KEPT:
                    self.refused.popitem(last=False)
                self.refused_heard[run_id] = now
                if len(self.refused_heard) > NEW_RUN_BURST:
                    oldest = min(self.refused_heard, key=self.refused_heard.__getitem__)
                    del self.refused_heard[oldest]
                return "new_run_refused"
            run = self.runs[run_id] = RunLog(run_id, self.run_bytes)
        self.heard[run_id] = now
        return None if run.add(seq, kind, frames) else "duplicate"

    def _admit(self, now: float) -> bool:
        """Whether a new run may start now: credit for it, and room (retiring a quiet run)."""
        elapsed, self._credited_at = now - self._credited_at, now
        self.new_run_credit = min(NEW_RUN_BURST, self.new_run_credit + elapsed / NEW_RUN_SECONDS)
        if self.new_run_credit < 1:
            return False
        if len(self.runs) >= self.runs_kept:
            quiet = next(
                (
                    run_id
                    for run_id, run in self.runs.items()
                    if run.finished or now - self.heard.get(run_id, now) > LIVE_SECONDS
                ),
                None,
            )
            if quiet is None:
                return False
            del self.runs[quiet]
            self.heard.pop(quiet, None)
            self.retired += 1
        self.new_run_credit -= 1
        return True

    def listening(self, run_id: str = "*") -> bool:
        """Whether a command for ``run_id`` (``"*"``: any run) has a publisher to obey it."""
        now = self.clock()
        held = any(
            now - self.heard.get(rid, -LISTENING_SECONDS) < LISTENING_SECONDS
            for rid in self.runs
            if run_id in ("*", rid)
        )
        refused = any(  # a publisher whose new run was refused (a fast --loop replay) still hears
            now - at < LISTENING_SECONDS
            for rid, at in self.refused_heard.items()
            if run_id in ("*", rid)
        )
        return held or refused

    def find(self, run: str) -> RunLog | None:
        """A run by id, or the newest one for ``"latest"``."""
        if run == "latest":
            return next(reversed(self.runs.values()), None)
        return self.runs.get(run)

    @property
    def held_bytes(self) -> int:
        return sum(r.held_bytes for r in self.runs.values())

    def __iter__(self) -> Iterator[RunLog]:
        return iter(self.runs.values())
