"""The training loop: shuffle, take a batch, compute the gradient, step.

Everything else a live run needs (publishing, the progress bar, pacing, stopping) sits beside
the loop as one call per step, so the loop still reads like the textbook one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from protocol import Hyperparameters
from trainer.datasets import Dataset
from trainer.mlp import MLP, SGD
from trainer.progress import ProgressBar, format_duration
from trainer.reporter import Reporter

log = logging.getLogger("trainer")


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...] = (1000,)
    activation: str = "relu"
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch_size: int = 16
    epochs: int = 5
    max_steps: int | None = None
    seed: int = 0
    steps_per_second: float | None = None

    def steps_per_epoch(self, train_size: int) -> int:
        return -(-train_size // self.batch_size)

    def total_steps(self, train_size: int) -> int:
        steps = self.epochs * self.steps_per_epoch(train_size)
        return min(steps, self.max_steps) if self.max_steps else steps


@dataclass(frozen=True)
class RunResult:
    status: str
    steps: int
    epochs_completed: int
    test_accuracy: float | None
    test_loss: float | None
    wall_seconds: float
    message: str = ""


class Pacer:
    """Holds the loop to at most ``rate`` steps per second, so a talk can follow it."""

    def __init__(self, rate: float | None) -> None:
        self.period = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event) -> None:
        if not self.period:
            return
        self._next = max(self._next + self.period, time.monotonic() - self.period)
        delay = self._next - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def batches(config: TrainConfig, train_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(epoch, indices)`` for every step of the run, reshuffled each epoch from the seed."""
    rng = np.random.default_rng([config.seed, 1])
    steps_left = config.total_steps(train_size)
    for epoch in range(config.epochs):
        order = rng.permutation(train_size)
        for start in range(0, train_size, config.batch_size):
            if steps_left == 0:
                return
            steps_left -= 1
            yield epoch, order[start : start + config.batch_size]


def build_model(config: TrainConfig, dataset: Dataset) -> MLP:
    sizes = [28 * 28, *config.hidden, len(dataset.class_names)]
    return MLP(sizes, config.activation, np.random.default_rng(config.seed))


def train(
    dataset: Dataset,
    config: TrainConfig,
    reporter: Reporter | None = None,
    *,
    stop: threading.Event | None = None,
    progress: ProgressBar | None = None,
) -> RunResult:
    """Train ``config``'s model on ``dataset``; ``stop`` ends it early as "stopped"."""
    stop = stop or threading.Event()
    model = build_model(config, dataset)
    optimizer = SGD(model.params, config.learning_rate)
    x = dataset.train_images.reshape(len(dataset.train_images), -1) / np.float32(255)
    y = dataset.train_labels.astype(np.int64)
    if reporter:
        hyperparameters = Hyperparameters(
            optimizer=config.optimizer,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.seed,
        )
        reporter.started(model, hyperparameters, config.total_steps(len(y)))

    pacer = Pacer(config.steps_per_second)
    started = time.monotonic()
    step, status, message = 0, "completed", ""
    for epoch, batch in batches(config, len(y)):
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            loss, accuracy, grads = model.loss_and_gradients(x[batch], y[batch])
        if not np.isfinite(loss):
            status, message = "diverged", f"loss became {loss} at step {step}; try a smaller --lr"
            break
        optimizer.step(grads)
        step += 1
        samples_seen = step * config.batch_size
        if reporter:
            reporter.after_step(step, epoch, samples_seen, loss, accuracy, optimizer.lr)
        if progress:
            progress.update(step, epoch, loss, accuracy, samples_seen)
        if stop.is_set():
            status, message = "stopped", "stopped by request"
            break
        pacer.wait(stop)
    if progress:
        progress.close()

    epochs_completed = step // config.steps_per_epoch(len(y))
    test_accuracy = test_loss = None
    if status != "diverged":
        test_x = dataset.test_images.reshape(len(dataset.test_images), -1) / np.float32(255)
        test_accuracy, test_loss = model.evaluate(test_x, dataset.test_labels.astype(np.int64))
    if reporter:
        reporter.finished(status, step, epochs_completed, test_accuracy, message)
    result = RunResult(
        status,
        step,
        epochs_completed,
        test_accuracy,
        test_loss,
        time.monotonic() - started,
        message,
    )
    log.info(
        "run %s after %d steps, %d full epochs, in %s: test accuracy %s",
        status,
        step,
        epochs_completed,
        format_duration(result.wall_seconds),
        "n/a" if test_accuracy is None else f"{test_accuracy:.2%}",
    )
    if message:
        log.warning("%s", message) if status == "diverged" else log.info("%s", message)
    return result
