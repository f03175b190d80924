"""One run as the viewer knows it, folded once from its messages and shared by all sessions.

The source's thread applies each message exactly once (:meth:`RunHistory.apply`): curve rows
are appended to columns (what a session streams), and for everything else the run keeps the
latest message and bumps the version of the *part* it changes (``header``: anything; the
``sample``, ``evaluation`` and ``weights`` pictures). A session asks :meth:`RunHistory.changes`
for what its :class:`~viewer.runs.columns.Cursor` has not seen, and a panel draws a changed
part from :meth:`RunHistory.rendered`, which renders it once per version for every session.
So a session's work per frame is a slice (new curve rows) or an assignment (a changed
picture), and nothing here knows how anything is drawn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from protocol import (
    Envelope,
    Evaluation,
    FirstLayerWeights,
    HyperparametersTuned,
    ModelWeights,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
)
from protocol.cli.durations import format_duration
from viewer.runs.columns import Changes, Columns, Cursor

SMOOTHING = 0.9
"""EMA factor for the smoothed loss and batch accuracy, per metrics message (~20 a second)."""
OVERLAY_POINTS = 2_000
"""Points of the previous run's curves drawn as the faint overlay."""
FINISHED_WORDS = {"completed": "finished", "stopped": "stopped", "diverged": "diverged"}

METRIC_COLUMNS = ("step", "loss", "loss_smooth", "batch_accuracy", "accuracy_smooth", "sent_at")
EVALUATION_COLUMNS = ("step", "epoch", "accuracy", "loss", "sent_at")
CURVES = {
    "loss": METRIC_COLUMNS,
    "accuracy": EVALUATION_COLUMNS,
    "test_accuracy": EVALUATION_COLUMNS,
}
"""Streamed curves by source name: metrics, subset evaluations, per-epoch test evaluations."""
PARTS = ("header", "sample", "evaluation", "weights", "tunings")
"""What changes as a whole: the run's summary and status, its latest pictures, and the
presenter's changes of its hyperparameters (marked on the curves)."""
TUNINGS_KEPT = 1_000
"""Changes of hyperparameters a run keeps: a presenter makes a handful; a flood is cut."""

Render = Callable[["RunHistory"], dict[str, Any]]
"""Draws a part of a run as the columns of the sources that show it."""


class RunHistory:
    """One run as the viewer knows it. Only the source's thread calls :meth:`apply`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.started: RunStarted | None = None
        self.latest_metrics: TrainingMetrics | None = None
        self.run_status: RunStatus | None = None
        self.finished: RunFinished | None = None
        self.sample: SamplePrediction | None = None
        self.evaluation: Evaluation | None = None
        """The latest evaluation with a confusion matrix (what the evaluation panels show)."""
        self.weights: FirstLayerWeights | None = None
        self.model: ModelWeights | None = None
        """The latest whole model: what the drawing pads read with."""
        self.tunings: list[HyperparametersTuned] = []
        """The presenter's changes of learning rate and momentum, in order."""
        self.replayed = False
        self.played_back = False
        """Folded from a file by ``view --replay``: every status in it is the recorded run's."""
        self.pictures_from: float | None = None
        """For a recording that began mid-run: seconds into the run of its first picture (the
        curves reach back to the start, the sample and weights only to there)."""
        self.curves = {name: Columns(names) for name, names in CURVES.items()}
        self.versions = dict.fromkeys(PARTS, 0)
        self.version = 0
        self.messages = 0
        self.last_seq = -1
        self.last_sent_at = 0.0
        self.last_received_at = 0.0
        self._rendered: dict[str, tuple[int, Render, dict[str, Any]]] = {}
        self.pictures: dict[str, Any] = {}
        """What the panels' renderers keep of this run between renders, by part: the
        encoders of its pictures, whose next rows depend on the rows before."""
        self._smooth_loss = self._smooth_accuracy = 0.0
        self._smoothed = 0
        self._overlay: tuple[int, dict[str, list[float]]] | None = None

    def pictures_pending(self) -> str | None:
        """What the picture panels say while a mid-run recording has no picture yet ("from
        3:47"), or None when that is not the case."""
        if self.pictures_from is None or self.sample is not None or self.weights is not None:
            return None
        return f"from {format_duration(self.pictures_from)}"

    # -- folding messages (the source's thread) ---------------------------------------------------

    def apply(self, message: Envelope) -> None:
        """Fold one message in."""
        self.apply_many((message,))

    def apply_many(self, messages: Iterable[Envelope]) -> None:
        """Fold messages in order (a replay's jump folds thousands at once)."""
        for message in messages:
            self._fold(message)
            self.versions["header"] += 1

    def _fold(self, message: Envelope) -> None:
        self.messages += 1
        self.version += 1
        self.last_seq = max(self.last_seq, message.seq)
        self.last_sent_at = max(self.last_sent_at, message.sent_at)
        self.last_received_at = time.time()
        self.replayed = self.replayed or message.replayed
        match message:
            case RunStarted():
                self.started = message
            case TrainingMetrics():
                self._add_metrics(message)
            case Evaluation():
                self._add_evaluation(message)
            case SamplePrediction():
                self.sample = message
                self.versions["sample"] += 1
            case FirstLayerWeights():
                self.weights = message
                self.versions["weights"] += 1
            case ModelWeights():
                self.model = message
            case RunStatus():
                self.run_status = message
            case HyperparametersTuned():
                if len(self.tunings) >= TUNINGS_KEPT:  # the latest always shows: it holds now
                    self.tunings.pop()
                self.tunings.append(message)
                self.versions["tunings"] += 1
            case RunFinished():
                self.finished = message

    def _add_metrics(self, m: TrainingMetrics) -> None:
        self.latest_metrics = m
        if math.isfinite(m.loss):  # a diverged loss must not poison the average for good
            self._smoothed += 1
            self._smooth_loss = SMOOTHING * self._smooth_loss + (1 - SMOOTHING) * m.loss
            self._smooth_accuracy = (
                SMOOTHING * self._smooth_accuracy + (1 - SMOOTHING) * m.batch_accuracy
            )
        debias = 1 - SMOOTHING**self._smoothed if self._smoothed else 1.0  # as Adam does
        self.curves["loss"].append(
            {
                "step": m.step,
                "loss": m.loss,
                "loss_smooth": self._smooth_loss / debias if self._smoothed else math.nan,
                "batch_accuracy": m.batch_accuracy,
                "accuracy_smooth": self._smooth_accuracy / debias if self._smoothed else math.nan,
                "sent_at": m.sent_at,
            }
        )

    def _add_evaluation(self, e: Evaluation) -> None:
        if e.split == "validation":
            return
        curve = "accuracy" if e.split == "subset" else "test_accuracy"
        row = {"step": e.step, "epoch": e.epoch, "accuracy": e.accuracy, "loss": e.loss}
        self.curves[curve].append({**row, "sent_at": e.sent_at})
        if e.confusion:
            self.evaluation = e
            self.versions["evaluation"] += 1

    # -- what sessions read (under the source's lock) -------------------------------------------

    def changes(self, cursor: Cursor) -> Changes:
        """Everything ``cursor`` has not seen yet; advances ``cursor`` past it."""
        rows = {}
        for name, columns in self.curves.items():
            if columns.total != cursor.rows.get(name, 0):
                rows[name] = columns.since(cursor.rows.get(name, 0))
                cursor.rows[name] = columns.total
        parts = []
        for name, version in self.versions.items():
            if version != cursor.versions.get(name, 0):
                parts.append(name)
                cursor.versions[name] = version
        cursor.version = self.version
        return Changes(rows, frozenset(parts), self.last_sent_at)

    def rendered(self, part: str, render: Render) -> dict[str, Any]:
        """``render(self)`` for the current version of ``part``: drawn once, for every session.

        Shared by every session that shows this run: never mutate what this returns.
        """
        version = self.versions[part]
        cached = self._rendered.get(part)
        if cached is None or cached[0] != version or cached[1] is not render:
            cached = (version, render, render(self))
            self._rendered[part] = cached
        return cached[2]

    @property
    def metrics(self) -> dict[str, list[float]]:
        """The metrics columns (the ``loss`` curve): step, loss, smoothed values, sent_at."""
        return self.curves["loss"].data

    def overlay(self) -> dict[str, list[float]]:
        """This run's smoothed curves thinned to :data:`OVERLAY_POINTS`, to draw under the next."""
        metrics = self.curves["loss"]
        if self._overlay is None or self._overlay[0] != metrics.total:
            stride = max(1, math.ceil(len(metrics) / OVERLAY_POINTS))
            data = {
                "step": metrics.data["step"][::stride],
                "loss": metrics.data["loss_smooth"][::stride],
                "accuracy": metrics.data["accuracy_smooth"][::stride],
            }
            self._overlay = (metrics.total, data)
        return self._overlay[1]

    def class_names(self, count: int = 10) -> list[str]:
        """The dataset's class names for ``count`` classes (their numbers if they disagree)."""
        if self.started and len(self.started.dataset.class_names) == count:
            return list(self.started.dataset.class_names)
        return [str(i) for i in range(count)]

    @property
    def status(self) -> str:
        """One word: waiting, training, paused, finished, stopped, diverged or replay."""
        if self.finished:
            return FINISHED_WORDS[self.finished.status]
        if self.replayed:
            # A replay's own pause (a presenter's, announced live and so not marked replayed)
            # shows; a pause that is part of the recorded run does not: the replay plays on.
            status = self.run_status
            own_pause = (
                status is not None
                and status.state == "paused"
                and not (status.replayed or self.played_back)
            )
            return "paused" if own_pause else "replay"
        if self.run_status:
            return self.run_status.state
        return "training" if self.latest_metrics else "waiting"

    def hyperparameters_now(self) -> tuple[float, float | None] | None:
        """The base learning rate and momentum (None: the optimizer has none) as they are now,
        after any presenter's change; None before ``run_started``."""
        if self.started is None:
            return None
        hp = self.started.hyperparameters
        if self.tunings:
            return self.tunings[-1].learning_rate, self.tunings[-1].momentum
        return hp.learning_rate, None if hp.optimizer == "sgd" else hp.momentum

    @property
    def step(self) -> int:
        steps = [self.started.start_step if self.started else 0]
        steps += [m.step for m in (self.latest_metrics, self.run_status, self.finished) if m]
        return max(steps)

    def samples_per_second(self) -> float | None:
        if self.status != "training" or not self.latest_metrics:
            return None
        return self.latest_metrics.samples_per_second

    def eta_seconds(self) -> float | None:
        """Seconds left at the current speed: steps left x batch size / samples per second."""
        if self.finished:
            return 0.0
        speed = self.samples_per_second()
        if not self.started or not speed:
            return None
        steps_left = max(0, self.started.total_steps - self.step)
        return steps_left * self.started.hyperparameters.batch_size / speed

    def epoch_progress(self) -> tuple[int, float]:
        """The epoch under way (from 1) and the fraction of it done (``(1, 0.0)`` unstarted)."""
        if self.started is None:
            return 1, 0.0
        per_epoch = self.started.steps_per_epoch
        epochs = self.started.hyperparameters.epochs
        done = self.step / per_epoch
        if self.finished or done >= epochs:
            return min(epochs, max(1, math.ceil(done))), 1.0
        return int(done) + 1, done - int(done)
