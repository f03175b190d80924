"""The runs a broker holds for late joiners and repairs, each kept by the protocol's rule.

Each run is a :class:`protocol.runlog.RunLog` (every curve point, the latest of each state
kind, bounded in bytes); only the last ``runs_kept`` runs are held, so a publisher that keeps
starting runs cannot grow the broker without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

from protocol.runlog import HISTORY_BYTES, RunLog

RUNS_KEPT = 4


class History:
    """The runs a broker holds, oldest first; the newest started is "latest"."""

    def __init__(self, run_bytes: int = HISTORY_BYTES, runs_kept: int = RUNS_KEPT) -> None:
        self.run_bytes = run_bytes
        self.runs_kept = runs_kept
        self.runs: OrderedDict[str, RunLog] = OrderedDict()
        self.retired = 0

    def add(self, run_id: str, seq: int, kind: str, frames: Sequence[bytes]) -> bool:
        """Hold a validated message; False if its run has already seen this seq."""
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = RunLog(run_id, self.run_bytes)
            while len(self.runs) > self.runs_kept:
                self.runs.popitem(last=False)
                self.retired += 1
        return run.add(seq, kind, frames)

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
