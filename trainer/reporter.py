"""What the room sees of a run: metrics, samples, evaluations and weights on time cadences.

The training loop calls :meth:`Reporter.after_step` once per step and knows nothing else about
publishing. Cadences are in wall-clock seconds rather than steps so the stream stays watchable
(and the broker's load bounded) however fast or slow training runs; the work they cost the
trainer (an evaluation forward pass, a copy of the weights) is bounded the same way.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import cast

import numpy as np

from broker.clients.publisher import Publisher
from protocol import (
    Architecture,
    DatasetInfo,
    Evaluation,
    FirstLayerWeights,
    Hyperparameters,
    HyperparametersTuned,
    ModelWeights,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
)
from protocol.arrays import MAX_TILES
from protocol.messages import Activation
from trainer.datasets import Dataset
from trainer.evaluation import Assessment, assess
from trainer.mlp import MLP, pixels
from trainer.tuning import Tuned

EPOCH_EVALUATION_SHARE = 0.01
"""Most of the wall time that full test-set evaluations at epoch ends may take."""
MISCLASSIFIED_SHOWN = 8
"""Mistakes sent with each evaluation: a gallery row, not a dump of the test set."""


@dataclass(frozen=True)
class Cadences:
    """Seconds between messages of each kind; ``None`` turns a kind off.

    The defaults suit a room: curves at ~20 updates/s, a new test digit ~4 times a second,
    an evaluation and the weight mosaic each second, the full model every 5 s (it is the
    largest message: 3 MB for 784-1000-10).
    """

    metrics: float | None = 0.05
    sample: float | None = 0.25
    evaluation: float | None = 1.0
    weights: float | None = 1.0
    model: float | None = 5.0


class Every:
    """True at most once per ``seconds`` (never for ``None``), the first time immediately."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._next = 0.0

    def due(self, now: float) -> bool:
        if self.seconds is None or now < self._next:
            return False
        self._next = now + self.seconds
        return True


def weight_tiles(first_layer: np.ndarray, count: int) -> tuple[list[int], np.ndarray, float]:
    """The input weights of the first ``count`` hidden units as uint8 images centred on 128.

    The scale is the 99.5th percentile of ``|w|`` rather than the maximum, so one outlier
    weight cannot wash every tile out to grey.
    """
    units = list(range(min(count, first_layer.shape[1])))
    weights = first_layer[:, units].T
    scale = float(np.percentile(np.abs(weights), 99.5)) or 1e-12
    pixels = np.clip(127.5 + 127.5 * (weights / scale), 0, 255)
    return units, pixels.round().astype(np.uint8).reshape(len(units), 28, 28), scale


RATE_WINDOW = 3.0
"""Seconds of training the published rate is measured over. A paced loop's metrics window
holds one step or two (50 ms windows at 20 steps/s), so a rate per window jumps by a third;
over 3 s it is within a percent, and it still follows a new pace within a few seconds."""


class SampleRate:
    """Samples per second over the last :data:`RATE_WINDOW` seconds of training."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._points: deque[tuple[float, int]] = deque()

    def restart(self) -> None:
        """Forget the past: a pause, a resume or a new pace makes it no guide."""
        self._points.clear()

    def add(self, now: float, samples: int) -> float | None:
        """Note ``samples`` seen by ``now``; the rate since the window's start (None with
        only this one point)."""
        points = self._points
        points.append((now, samples))
        while len(points) > 2 and now - points[1][0] >= self.window:
            points.popleft()
        first_time, first_samples = points[0]
        return (samples - first_samples) / (now - first_time) if now > first_time else None


class Reporter:
    def __init__(
        self,
        publisher: Publisher,
        dataset: Dataset,
        *,
        cadences: Cadences = Cadences(),
        eval_examples: int = 1000,
        weight_tiles: int = 64,
        epoch_evaluation_share: float | None = EPOCH_EVALUATION_SHARE,
    ) -> None:
        self.publisher = publisher
        self.dataset = dataset
        self._model: MLP | None = None
        self.test_x = pixels(dataset.test_images)
        self.test_y = dataset.test_labels.astype(np.int64)
        self.validation_x = pixels(dataset.validation_images)
        self.validation_y = dataset.validation_labels.astype(np.int64)
        self.eval_count = min(eval_examples, len(self.test_y))
        self.weight_tiles = min(weight_tiles, MAX_TILES)
        self.epoch_evaluation_share = epoch_evaluation_share
        self._metrics, self._sample, self._eval = (
            Every(cadences.metrics),
            Every(cadences.sample),
            Every(cadences.evaluation),
        )
        self._weights, self._full_model = Every(cadences.weights), Every(cadences.model)
        self._sample_index = 0
        self._mistakes_from = 0
        self._loss_sum = self._acc_sum = 0.0
        self._batches = self._samples = self._window_first_sample = 0
        self._window_start = self._started_at = time.monotonic()
        self._rate = SampleRate()
        self._announced: tuple[str, float | None] | None = None
        self._epoch_eval_seconds = 0.0
        self.epoch_evaluations_skipped = 0

    @property
    def model(self) -> MLP:
        if self._model is None:
            raise RuntimeError("Reporter.started() names the model first")
        return self._model

    def started(
        self,
        model: MLP,
        hyperparameters: Hyperparameters,
        total_steps: int,
        *,
        steps_per_epoch: int = 1,
        start_step: int = 0,
    ) -> None:
        self._model = model
        self._started_at = time.monotonic()
        d = self.dataset
        self.publisher.send(
            RunStarted,
            dataset=DatasetInfo(
                name=d.name,
                synthetic=d.synthetic,
                train_size=len(d.train_labels),
                validation_size=len(d.validation_labels),
                test_size=len(d.test_labels),
                class_names=list(d.class_names),
                source=d.source,
            ),
            architecture=self._architecture,
            hyperparameters=hyperparameters,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            start_step=start_step,
        )

    @property
    def _architecture(self) -> Architecture:
        return Architecture(
            layer_sizes=self.model.layer_sizes, activation=cast(Activation, self.model.activation)
        )

    def after_step(
        self, step: int, epoch: int, samples_seen: int, loss: float, accuracy: float, lr: float
    ) -> None:
        self._loss_sum += loss
        self._acc_sum += accuracy
        self._batches += 1
        self._samples = samples_seen
        now = time.monotonic()
        if self._metrics.due(now):
            self._send_metrics(step, epoch, lr, now)
        if self._sample.due(now):
            self.send_sample(step)
        if self._eval.due(now):
            self.send_evaluation(step, epoch)
        if self._weights.due(now):
            self.send_weights(step, epoch)
        if self._full_model.due(now):
            self.send_model(step, epoch)

    def _send_metrics(self, step: int, epoch: int, lr: float, now: float) -> None:
        elapsed = max(now - self._window_start, 1e-9)
        this_window = (self._samples - self._window_first_sample) / elapsed
        rate = self._rate.add(now, self._samples)
        self.publisher.send(
            TrainingMetrics,
            step=step,
            epoch=epoch,
            samples_seen=self._samples,
            loss=self._loss_sum / self._batches,
            batch_accuracy=self._acc_sum / self._batches,
            learning_rate=lr,
            samples_per_second=this_window if rate is None else rate,
        )
        self._loss_sum = self._acc_sum = 0.0
        self._batches = 0
        self._window_first_sample = self._samples
        self._window_start = now

    def send_sample(self, step: int) -> None:
        """Show the next test image in turn, as the 2018 demo cycled through them."""
        i = self._sample_index % len(self.test_y)
        self._sample_index += 1
        probabilities = self.model.predict_proba(self.test_x[i : i + 1])[0].astype(np.float64)
        probabilities /= probabilities.sum()
        self.publisher.send(
            SamplePrediction,
            step=step,
            index=i,
            image=self.dataset.test_images[i],
            label=int(self.test_y[i]),
            probabilities=probabilities.tolist(),
        )

    def send_evaluation(self, step: int, epoch: int) -> None:
        """Evaluate on the fixed test subset: cheap enough to repeat every second."""
        n = self.eval_count
        result = assess(self.model, self.test_x[:n], self.test_y[:n])
        shown = self._send_assessment(result, "subset", self.dataset.test_images[:n], step, epoch)
        # The next gallery continues after the last mistake shown, so the room sees them all.
        self._mistakes_from = int(shown[-1]) + 1 if len(shown) else 0

    def epoch_finished(self, step: int, epoch: int) -> None:
        """Evaluate on the whole test set (and the validation split) at an epoch end.

        Skipped while these evaluations have taken more than ``epoch_evaluation_share`` of the
        run's time so far: on a small dataset epochs end several times a second, and a full
        pass each time would cost more than the training it reports on.
        """
        started = time.monotonic()
        share = self.epoch_evaluation_share
        if share is not None and self._epoch_eval_seconds > share * (started - self._started_at):
            self.epoch_evaluations_skipped += 1
            return
        result = assess(self.model, self.test_x, self.test_y)
        self._send_assessment(result, "test", self.dataset.test_images, step, epoch)
        if len(self.validation_y):
            result = assess(self.model, self.validation_x, self.validation_y)
            images = self.dataset.validation_images
            self._send_assessment(result, "validation", images, step, epoch)
        self._epoch_eval_seconds += time.monotonic() - started

    def _send_assessment(
        self, result: Assessment, split: str, images: np.ndarray, step: int, epoch: int
    ) -> np.ndarray:
        """Send ``result``; return the positions of the mistakes it showed."""
        if not result.finite:  # a diverging model is reported by the loop, not here
            return np.empty(0, np.int64)
        wrong = result.mistakes(MISCLASSIFIED_SHOWN, start=self._mistakes_from)
        self.publisher.send(
            Evaluation,
            step=step,
            epoch=epoch,
            split=split,
            accuracy=result.accuracy,
            loss=result.loss,
            examples=result.examples,
            per_class_accuracy=result.per_class_accuracy(),
            confusion=result.confusion().tolist(),
            misclassified_images=images[wrong],
            misclassified_index=wrong.tolist(),
            misclassified_label=result.labels[wrong].tolist(),
            misclassified_predicted=result.predictions[wrong].tolist(),
        )
        return wrong

    def send_weights(self, step: int, epoch: int) -> None:
        units, tiles, scale = weight_tiles(self.model.weights[0], self.weight_tiles)
        self.publisher.send(
            FirstLayerWeights, step=step, epoch=epoch, units=units, tiles=tiles, scale=scale
        )

    def send_model(self, step: int, epoch: int) -> None:
        parameters = np.concatenate([p.ravel() for p in self.model.params])
        if np.isfinite(parameters).all():
            self.publisher.send(
                ModelWeights,
                step=step,
                epoch=epoch,
                architecture=self._architecture,
                parameters=parameters,
            )

    def status(
        self, step: int, state: str, steps_per_second: float | None = None, message: str = ""
    ) -> None:
        """Tell viewers the trainer is waiting, training or paused (and at what pace); from a
        new state or pace on, the rate is measured afresh (a heartbeat changes neither)."""
        if (state, steps_per_second) != self._announced:
            self._announced = (state, steps_per_second)
            self._rate.restart()
        pace = {"steps_per_second": steps_per_second}
        self.publisher.send(RunStatus, step=step, state=state, message=message, **pace)

    def tuned(self, step: int, change: Tuned) -> None:
        """Tell viewers the presenter changed the hyperparameters, from step ``step + 1`` on."""
        self.publisher.send(HyperparametersTuned, step=step, **vars(change))

    def finished(
        self, status: str, step: int, epoch: int, test_accuracy: float | None, message: str
    ) -> None:
        if status != "diverged":  # late joiners and replays end on the final weights
            self.send_weights(step, epoch)
            self.send_model(step, epoch)
        self.publisher.send(
            RunFinished,
            status=status,
            step=step,
            epoch=epoch,
            test_accuracy=test_accuracy,
            message=message,
        )
