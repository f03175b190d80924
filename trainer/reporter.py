"""What the room sees of a run: metrics, samples and evaluations on time-based cadences.

The training loop calls :meth:`Reporter.after_step` once per step and knows nothing else about
publishing. Cadences are in wall-clock seconds rather than steps so the stream stays watchable
(and the broker's load bounded) however fast or slow training runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import numpy as np

from protocol import (
    Architecture,
    DatasetInfo,
    Evaluation,
    Hyperparameters,
    RunFinished,
    RunStarted,
    SamplePrediction,
    TrainingMetrics,
)
from protocol.messages import Activation
from trainer.datasets import Dataset
from trainer.mlp import MLP
from trainer.publisher import Publisher


@dataclass(frozen=True)
class Cadences:
    """Seconds between messages of each kind (defaults sized for a room of viewers)."""

    metrics: float = 0.05
    sample: float = 0.25
    evaluation: float = 1.0


class Every:
    """True at most once per ``seconds``, the first time immediately."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = 0.0

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.seconds
        return True


class Reporter:
    def __init__(
        self,
        publisher: Publisher,
        dataset: Dataset,
        *,
        cadences: Cadences = Cadences(),
        eval_examples: int = 1000,
    ) -> None:
        self.publisher = publisher
        self.dataset = dataset
        self._model: MLP | None = None
        self.test_x = dataset.test_images.reshape(len(dataset.test_images), -1) / np.float32(255)
        self.test_y = dataset.test_labels.astype(np.int64)
        self.eval_count = min(eval_examples, len(self.test_y))
        self._metrics, self._sample, self._eval = (
            Every(cadences.metrics),
            Every(cadences.sample),
            Every(cadences.evaluation),
        )
        self._sample_index = 0
        self._loss_sum = self._acc_sum = 0.0
        self._batches = self._samples = self._window_first_sample = 0
        self._window_start = time.monotonic()

    @property
    def model(self) -> MLP:
        if self._model is None:
            raise RuntimeError("Reporter.started() names the model first")
        return self._model

    def started(self, model: MLP, hyperparameters: Hyperparameters, total_steps: int) -> None:
        self._model = model
        d = self.dataset
        self.publisher.send(
            RunStarted,
            dataset=DatasetInfo(
                name=d.name,
                synthetic=d.synthetic,
                train_size=len(d.train_labels),
                test_size=len(d.test_labels),
                class_names=list(d.class_names),
            ),
            architecture=Architecture(
                layer_sizes=model.layer_sizes, activation=cast(Activation, model.activation)
            ),
            hyperparameters=hyperparameters,
            total_steps=total_steps,
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

    def _send_metrics(self, step: int, epoch: int, lr: float, now: float) -> None:
        elapsed = max(now - self._window_start, 1e-9)
        self.publisher.send(
            TrainingMetrics,
            step=step,
            epoch=epoch,
            samples_seen=self._samples,
            loss=self._loss_sum / self._batches,
            batch_accuracy=self._acc_sum / self._batches,
            learning_rate=lr,
            samples_per_second=(self._samples - self._window_first_sample) / elapsed,
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
        accuracy, loss = self.model.evaluate(
            self.test_x[: self.eval_count], self.test_y[: self.eval_count]
        )
        if np.isfinite(loss):  # a diverging model is reported by the loop, not here
            self.publisher.send(
                Evaluation,
                step=step,
                epoch=epoch,
                accuracy=accuracy,
                loss=loss,
                examples=self.eval_count,
            )

    def epoch_finished(self, step: int, epoch: int) -> None:
        """Evaluate on the whole test set at an epoch end, the figure papers report."""
        accuracy, loss = self.model.evaluate(self.test_x, self.test_y)
        if np.isfinite(loss):
            self.publisher.send(
                Evaluation,
                step=step,
                epoch=epoch,
                split="test",
                accuracy=accuracy,
                loss=loss,
                examples=len(self.test_y),
            )

    def finished(
        self, status: str, step: int, epoch: int, test_accuracy: float | None, message: str
    ) -> None:
        self.publisher.send(
            RunFinished,
            status=status,
            step=step,
            epoch=epoch,
            test_accuracy=test_accuracy,
            message=message,
        )
