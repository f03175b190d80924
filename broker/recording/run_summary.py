"""One run as a recording's messages show it: what it was, and how far the recording holds it.

Gathered message by message; ``mnist-live inspect`` prints it and ``mnist-live export`` writes
it to runs.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from protocol import Envelope, RunFinished, RunStarted, RunStatus

Number = TypeVar("Number", int, float)


@dataclass
class RunSummary:
    run_id: str
    started: RunStarted | None = None
    finished: RunFinished | None = None
    state: str | None = None
    """What the last ``status`` message said (waiting, training, paused)."""
    messages: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_step: int | None = None
    last_step: int | None = None
    first_at: float | None = None
    last_at: float | None = None
    replayed: bool = False

    def add(self, message: Envelope) -> None:
        self.messages += 1
        self.first_seq = _low(self.first_seq, message.seq)
        self.last_seq = _high(self.last_seq, message.seq)
        self.first_at = _low(self.first_at, message.sent_at)
        self.last_at = _high(self.last_at, message.sent_at)
        self.replayed = self.replayed or message.replayed
        step = getattr(message, "step", None)
        if isinstance(step, int):
            self.first_step = _low(self.first_step, step)
            self.last_step = _high(self.last_step, step)
        match message:
            case RunStarted():
                self.started = message
            case RunStatus():
                self.state = message.state
            case RunFinished():
                self.finished = message

    @property
    def architecture(self) -> str | None:
        """Like ``784-128-10 relu``."""
        return None if self.started is None else self.started.architecture.label

    @property
    def status(self) -> str:
        """How the run ended, or ``unfinished``."""
        return self.finished.status if self.finished else "unfinished"


def _low(current: Number | None, value: Number) -> Number:
    return value if current is None else min(current, value)


def _high(current: Number | None, value: Number) -> Number:
    return value if current is None else max(current, value)
