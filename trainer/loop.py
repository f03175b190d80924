"""The training loop: shuffle, take a batch, compute the gradient, step.

Everything else a live run needs (publishing, the progress bar, a presenter's controls, pacing,
checkpoints, stopping) sits beside the loop as one call per step, so the loop still reads like
the textbook one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol.cli.durations import format_duration
from protocol.messages import samples_seen
from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.control import Controls
from trainer.datasets import Dataset
from trainer.evaluation import assess
from trainer.mlp import MLP, PixelBatches, pixels
from trainer.optim import Optimizer, make_optimizer, make_schedule
from trainer.progress import ProgressBar
from trainer.reporter import Reporter
from trainer.tuning import Tuning

log = logging.getLogger("trainer")


@dataclass(frozen=True)
class RunResult:
    status: str
    steps: int
    epochs_completed: int
    test_accuracy: float | None
    test_loss: float | None
    wall_seconds: float
    message: str = ""
    samples_per_second: float = 0.0
    """Training examples per wall-clock second over this run (resumed steps excluded)."""


PACE_SLICE = 0.05
"""Seconds between looks at the presenter's commands while a pace holds the loop."""


class Pacer:
    """Holds the loop to at most ``rate`` steps per second (``None``: as fast as it goes).

    ``rate`` may change at any time (a presenter's pace command).
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._next = time.monotonic()

    def wait(self, stop: threading.Event, meanwhile: Callable[[], None] | None = None) -> None:
        """Hold until the next step is due; ``meanwhile`` runs every :data:`PACE_SLICE` seconds
        of the wait (the presenter's commands are read while a slow pace waits: Stop and a
        faster pace act at once)."""
        if not self.rate:
            return
        period = 1.0 / self.rate
        self._next = max(self._next + period, time.monotonic() - period)
        while not stop.is_set():
            delay = self._next - time.monotonic()
            if delay <= 0:
                return
            stop.wait(min(delay, PACE_SLICE))
            if meanwhile is not None:
                meanwhile()
            if not self.rate:
                return
            self._next = min(self._next, time.monotonic() + 1.0 / self.rate)  # a faster pace


def batches(
    config: TrainConfig, train_size: int, start_step: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """``(epoch, indices)`` for every step from ``start_step`` on.

    Each epoch's order comes from the seed and the epoch number alone, so a resumed run
    continues with exactly the batches the uninterrupted run would have seen.
    """
    steps_per_epoch = config.steps_per_epoch(train_size)
    first_epoch, first_batch = divmod(start_step, steps_per_epoch)
    steps_left = config.total_steps(train_size) - start_step
    for epoch in range(first_epoch, config.epochs):
        order = np.random.default_rng([config.seed, 1, epoch]).permutation(train_size)
        first = first_batch * config.batch_size if epoch == first_epoch else 0
        for start in range(first, train_size, config.batch_size):
            if steps_left <= 0:
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
    controls: Controls | None = None,
    pacer: Pacer | None = None,
    tuning: Tuning | None = None,
    save: Path | None = None,
    resume: checkpoint.Checkpoint | None = None,
) -> RunResult:
    """Train ``config``'s model on ``dataset``; ``stop`` ends it early as "stopped".

    ``save`` writes a checkpoint at every epoch end and at the finish; ``resume`` continues
    from one (same step count, data order, optimizer state and tuning). ``controls`` applies a
    presenter's commands between steps, changing ``pacer.rate`` or ``tuning`` when told to.
    """
    model = build_model(config, dataset)
    optimizer = make_optimizer(
        config.optimizer,
        model.params,
        config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    start_step = resume.restore(model, optimizer, config.to_dict()) if resume else 0
    x = PixelBatches(dataset.train_images, config.batch_size)
    y = dataset.train_labels.astype(np.int64)
    schedule = make_schedule(config.schedule, config.total_steps(len(y)))
    tuning = tuning or Tuning.of(config)
    live = Beside(
        dataset, config, model, optimizer, reporter, progress, controls,
        pacer or Pacer(config.steps_per_second), tuning, stop or threading.Event(), save,
    )  # fmt: skip
    live.start(start_step, resume)

    step, status, message = start_step, "completed", ""
    for epoch, batch in batches(config, len(y), start_step):
        if live.stop.is_set():
            status, message = "stopped", "stopped by request"
            break
        optimizer.lr = tuning.learning_rate * schedule(step)
        optimizer.momentum = tuning.momentum or 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            loss, accuracy, grads = model.loss_and_gradients(
                x.take(batch), y[batch], products=optimizer.takes_products, x_scale=x.scale
            )
        if not np.isfinite(loss):
            status = "diverged"
            message = f"loss became {loss} at step {step + 1}; try a smaller --lr"
            break
        optimizer.step(grads)
        step += 1
        live.after_step(step, epoch, loss, accuracy, optimizer.lr)
    return live.finish(status, message, step, start_step)


@dataclass
class Beside:
    """Everything a live run does beside the loop, one call per step: publishing, the progress
    bar, the presenter's commands, pacing and checkpoints, and the run's end."""

    dataset: Dataset
    config: TrainConfig
    model: MLP
    optimizer: Optimizer
    reporter: Reporter | None
    progress: ProgressBar | None
    controls: Controls | None
    pacer: Pacer
    tuning: Tuning
    stop: threading.Event
    save: Path | None
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self.train_size = len(self.dataset.train_labels)
        self.steps_per_epoch = self.config.steps_per_epoch(self.train_size)

    def samples_seen(self, step: int) -> int:
        """Training examples consumed by the first ``step`` steps (the last batch may be short)."""
        per_epoch, batch = self.steps_per_epoch, self.config.batch_size
        return int(samples_seen(step, per_epoch, batch, self.train_size))

    def start(self, start_step: int, resume: checkpoint.Checkpoint | None) -> None:
        config = self.config
        if self.reporter:
            self.reporter.started(
                self.model,
                config.hyperparameters(),
                config.total_steps(self.train_size),
                steps_per_epoch=self.steps_per_epoch,
                start_step=start_step,
            )
        if resume is not None and resume.tuning:
            self.resume_tuning(resume, start_step)
        if self.controls and config.wait_for_start:
            self.controls.wait_for_start(start_step, self.stop)
        self.started_at = time.monotonic()

    def resume_tuning(self, resume: checkpoint.Checkpoint, step: int) -> None:
        """Go on as the presenter left the saved run, unless this run's own options changed
        the learning rate or momentum (then they win: the user asked for them)."""
        assert resume.tuning is not None
        saved = Tuning.of(TrainConfig.from_dict(resume.config))
        if Tuning.of(self.config) != saved:
            log.info("the checkpoint's tuning (lr %g) left aside: this run's options change the "
                     "learning rate or momentum", resume.tuning["learning_rate"])  # fmt: skip
            return
        retuned = self.tuning.restore(resume.tuning)
        if retuned is not None:
            log.info("resumed as the presenter left it: lr %g", retuned.learning_rate)
            if self.reporter:
                self.reporter.tuned(step, retuned)

    def after_step(self, step: int, epoch: int, loss: float, accuracy: float, lr: float) -> None:
        samples = self.samples_seen(step)
        if self.reporter:
            self.reporter.after_step(step, epoch, samples, loss, accuracy, lr)
        if self.progress:
            self.progress.update(step, epoch, loss, accuracy, samples)
        if step % self.steps_per_epoch == 0:
            if self.reporter:
                self.reporter.epoch_finished(step, epoch)
            self.checkpoint(step, epoch + 1)
        if self.controls:
            self.controls.between_steps(step, self.stop)
        self.pacer.wait(self.stop, self._meanwhile(step) if self.controls else None)

    def _meanwhile(self, step: int) -> Callable[[], None]:
        """What a paced wait does: read the presenter's commands, and say the run is alive."""
        controls, stop = self.controls, self.stop
        assert controls is not None

        def look() -> None:
            controls.between_steps(step, stop)
            controls.heartbeat(step)

        return look

    def checkpoint(self, step: int, epoch: int) -> None:
        if self.save:
            config, model, optimizer = self.config.to_dict(), self.model, self.optimizer
            checkpoint.save(self.save, model, optimizer, config, step, epoch, self.dataset.name,
                            len(self.dataset.train_labels), self.tuned())  # fmt: skip

    def tuned(self) -> dict[str, float | None] | None:
        """What a checkpoint keeps of the presenter's changes (None: there were none)."""
        return self.tuning.saved() if self.tuning != Tuning.of(self.config) else None

    def finish(self, status: str, message: str, step: int, start_step: int) -> RunResult:
        """End the run: the final checkpoint and test, the viewers told, the result logged."""
        if self.progress:
            self.progress.close()
        wall_seconds = time.monotonic() - self.started_at
        epochs_completed = step // self.steps_per_epoch
        test_accuracy = test_loss = None
        if status != "diverged":
            if step % self.steps_per_epoch:  # an epoch end has saved this step already
                self.checkpoint(step, epochs_completed)
            test = self.dataset
            final = assess(self.model, pixels(test.test_images), test.test_labels.astype(np.int64))
            test_accuracy, test_loss = final.accuracy, final.loss
        if self.reporter:
            self.reporter.finished(status, step, epochs_completed, test_accuracy, message)
        trained = self.samples_seen(step) - self.samples_seen(start_step)
        result = RunResult(
            status,
            step,
            epochs_completed,
            test_accuracy,
            test_loss,
            wall_seconds,
            message,
            trained / max(wall_seconds, 1e-9),
        )
        log.info(
            "run %s: test accuracy %s after %d steps (%d full epochs) in %s, %.0f samples/s",
            status,
            "n/a" if test_accuracy is None else f"{test_accuracy:.2%}",
            step,
            epochs_completed,
            format_duration(result.wall_seconds),
            result.samples_per_second,
        )
        if message:
            log.warning("%s", message) if status == "diverged" else log.info("%s", message)
        return result
