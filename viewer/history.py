"""Everything a viewer process knows about a run, shared by all its browser sessions.

Curves are kept as columns (lists per field) because that is the shape a Bokeh
``ColumnDataSource`` streams, so a new session renders by slicing, not by converting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from protocol import (
    Envelope,
    Evaluation,
    RunFinished,
    RunStarted,
    SamplePrediction,
    TrainingMetrics,
)

METRIC_COLUMNS = ("step", "loss", "batch_accuracy")
EVALUATION_COLUMNS = ("step", "accuracy", "loss")


def _columns(names: tuple[str, ...]) -> dict[str, list[float]]:
    return {name: [] for name in names}


@dataclass
class RunHistory:
    run_id: str
    started: RunStarted | None = None
    metrics: dict[str, list[float]] = field(default_factory=lambda: _columns(METRIC_COLUMNS))
    evaluations: dict[str, list[float]] = field(
        default_factory=lambda: _columns(EVALUATION_COLUMNS)
    )
    latest_metrics: TrainingMetrics | None = None
    sample: SamplePrediction | None = None
    finished: RunFinished | None = None
    messages: int = 0
    last_seq: int = -1
    last_sent_at: float = 0.0
    last_received_at: float = 0.0

    def apply(self, message: Envelope) -> None:
        """Fold one message into the history (the viewer's only writer)."""
        self.messages += 1
        self.last_seq = max(self.last_seq, message.seq)
        self.last_sent_at = message.sent_at
        self.last_received_at = time.time()
        match message:
            case RunStarted():
                self.started = message
            case TrainingMetrics():
                self.latest_metrics = message
                for name in METRIC_COLUMNS:
                    self.metrics[name].append(getattr(message, name))
            case Evaluation(split="subset"):
                for name in EVALUATION_COLUMNS:
                    self.evaluations[name].append(getattr(message, name))
            case SamplePrediction():
                self.sample = message
            case RunFinished():
                self.finished = message

    @property
    def status(self) -> str:
        if self.finished:
            return self.finished.status
        return "training" if self.messages else "waiting"

    @property
    def step(self) -> int:
        if self.finished:
            return self.finished.step
        return self.latest_metrics.step if self.latest_metrics else 0
