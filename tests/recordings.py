"""Runs of realistic messages and recording files of them, shared by the record/replay tests.

The run builders differ on purpose: tests count messages, steps and seconds of one shape
(``small_run``: a message every 10 ms; ``make_run``: steps of ten on a 50 ms tick;
``realistic_run``: a trainer's cadences with a pause), so each keeps its shape while the
messages themselves come from the same few constructors.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from broker.recording.writer import RecordingWriter
from protocol import (
    Architecture,
    DatasetInfo,
    Envelope,
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
from trainer.datasets import DIGIT_NAMES
from viewer.runs.state import RunHistory

START = 1_700_000_000.0
"""When every built run starts, in epoch seconds (a fixed time, so offsets are exact)."""
TICK = 0.05


def parameter_count(layers: list[int]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(layers))


def run_started(
    fields: dict[str, Any],
    *,
    layers: list[int],
    total_steps: int,
    train_size: int = 800,
    test_size: int = 200,
    batch_size: int = 32,
    epochs: int = 1,
    synthetic: bool = True,
    steps_per_epoch: int = 1,
) -> RunStarted:
    return RunStarted(
        **fields,
        dataset=DatasetInfo(
            name="synthetic" if synthetic else "mnist",
            synthetic=synthetic,
            train_size=train_size,
            test_size=test_size,
            class_names=list(DIGIT_NAMES),
        ),
        architecture=Architecture(layer_sizes=layers, activation="relu"),
        hyperparameters=Hyperparameters(
            optimizer="sgd", learning_rate=0.1, batch_size=batch_size, epochs=epochs, seed=0
        ),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
    )


def training_metrics(
    fields: dict[str, Any],
    step: int,
    *,
    loss: float,
    accuracy: float,
    samples_seen: int,
    speed: float,
) -> TrainingMetrics:
    return TrainingMetrics(
        **fields,
        step=step,
        epoch=0,
        samples_seen=samples_seen,
        loss=loss,
        batch_accuracy=accuracy,
        learning_rate=0.1,
        samples_per_second=speed,
    )


def model_weights(
    fields: dict[str, Any], step: int, layers: list[int], parameters: np.ndarray
) -> ModelWeights:
    assert parameters.size == parameter_count(layers)
    return ModelWeights(
        **fields,
        step=step,
        epoch=0,
        architecture=Architecture(layer_sizes=layers, activation="relu"),
        parameters=parameters.astype(np.float32),
    )


class Feed:
    """Builds a run's messages with consecutive sequence numbers (``sent_at`` left unset)."""

    LAYERS = [784, 32, 10]

    def __init__(self, run_id: str = "run-a", synthetic: bool = True) -> None:
        self.run_id = run_id
        self.seq = 0
        self.synthetic = synthetic

    def _next(self) -> dict:
        fields = {"run_id": self.run_id, "seq": self.seq}
        self.seq += 1
        return fields

    def started(self, total_steps: int = 100, steps_per_epoch: int = 25) -> RunStarted:
        return run_started(
            self._next(),
            layers=self.LAYERS,
            total_steps=total_steps,
            epochs=4,
            synthetic=self.synthetic,
            steps_per_epoch=steps_per_epoch,
        )

    def metrics(self, step: int, loss: float = 1.0, accuracy: float = 0.5, speed: float = 320.0):
        return training_metrics(
            self._next(), step, loss=loss, accuracy=accuracy, samples_seen=step * 32, speed=speed
        )

    def sample(self, step: int, label: int = 3, predicted: int = 5) -> SamplePrediction:
        probabilities = np.full(10, 0.02)
        probabilities[predicted] = 0.82
        image = np.arange(28 * 28, dtype=np.int64).reshape(28, 28) % 256
        return SamplePrediction(
            **self._next(),
            step=step,
            index=7,
            image=image.astype(np.uint8),
            label=label,
            probabilities=probabilities.tolist(),
        )

    def evaluation(self, step: int, split: str = "subset", mistakes: int = 3) -> Evaluation:
        confusion = np.eye(10, dtype=int) * 8
        confusion[1, 7] = 2  # class 1: 8 right, 2 taken for a 7
        return Evaluation(
            **self._next(),
            step=step,
            epoch=0,
            split=split,  # type: ignore[arg-type]
            accuracy=0.975,
            loss=0.3,
            examples=int(confusion.sum()),
            per_class_accuracy=[0.8 if i == 1 else 1.0 for i in range(10)],
            confusion=confusion.tolist(),
            misclassified_images=np.zeros((mistakes, 28, 28), np.uint8),
            misclassified_index=list(range(mistakes)),
            misclassified_label=[1] * mistakes,
            misclassified_predicted=[7] * mistakes,
        )

    def weights(self, step: int, tiles: int = 10) -> FirstLayerWeights:
        return FirstLayerWeights(
            **self._next(),
            step=step,
            epoch=0,
            units=list(range(tiles)),
            tiles=np.zeros((tiles, 28, 28), np.uint8),
            scale=0.5,
        )

    def model(self, step: int, layers: list[int]) -> ModelWeights:
        return model_weights(self._next(), step, layers, np.zeros(parameter_count(layers)))

    def status(self, step: int, state: str) -> RunStatus:
        return RunStatus(**self._next(), step=step, state=state)  # type: ignore[arg-type]

    def finished(self, step: int, status: str = "completed") -> RunFinished:
        return RunFinished(**self._next(), status=status, step=step, epoch=4, test_accuracy=0.9)  # type: ignore[arg-type]


REPLAY_STAMP = frozenset({"run_id", "seq", "sent_at", "replayed"})
"""What a replay changes in a message: whose run it is, its place in that run (a catch-up
leaves messages out), when it was sent, and that it is replayed."""


def contents(message: Envelope) -> dict[str, Any]:
    """A message's fields minus the replay's stamp, arrays as (dtype, shape, bytes) so that
    two messages compare by value with ``==``."""
    fields: dict[str, Any] = {}
    for name in type(message).model_fields:
        if name not in REPLAY_STAMP:
            value = getattr(message, name)
            if isinstance(value, np.ndarray):
                value = (value.dtype.str, value.shape, value.tobytes())
            fields[name] = value
    return fields


def same_contents(replayed: Envelope, original: Envelope) -> bool:
    """Whether a replayed message says what the original said (see ``contents``)."""
    return type(replayed) is type(original) and contents(replayed) == contents(original)


def feed_run(feed: Feed, steps: range, every: int = 10, finish: bool = False) -> list[Envelope]:
    """Metrics each step and a sample, evaluation and weights every ``every`` steps; the start
    when ``steps`` begins at 0 and the finish when asked (a run published in pieces)."""
    messages: list[Envelope] = [feed.started()] if steps.start == 0 else []
    for step in steps:
        messages.append(feed.metrics(step))
        if step % every == 0:
            messages += [feed.sample(step), feed.evaluation(step), feed.weights(step)]
    if finish:
        messages.append(feed.finished(steps.stop))
    return messages


def small_run(run_id: str, metrics: int = 20, t0: float = START) -> list[Envelope]:
    """A run of every kind, a message every 10 ms from ``t0``, as a trainer would send it."""
    rng = np.random.default_rng(0)
    layers = [784, 4, 10]
    out: list[Envelope] = []

    def envelope() -> dict[str, Any]:
        return {"run_id": run_id, "seq": len(out), "sent_at": t0 + len(out) * 0.01}

    def add(model: type[Envelope], **fields) -> None:
        out.append(model(**envelope(), **fields))

    out.append(
        run_started(
            envelope(), layers=layers, total_steps=metrics, train_size=100, test_size=20,
            batch_size=4,
        )
    )  # fmt: skip
    add(RunStatus, step=0, state="training")
    for step in range(1, metrics + 1):
        out.append(
            training_metrics(
                envelope(), step, loss=2.3 / step, accuracy=0.5, samples_seen=4 * step, speed=1000.0
            )
        )
        if step % 5 == 0:
            probabilities = rng.dirichlet(np.ones(10))
            add(
                SamplePrediction, step=step, index=step, label=step % 10,
                image=rng.integers(0, 256, (28, 28), dtype=np.uint8),
                probabilities=(probabilities / probabilities.sum()).tolist(),
            )  # fmt: skip
        if step % 10 == 0:
            confusion = np.diag(np.full(10, 2))
            confusion[0, 1] = 1
            add(
                Evaluation, step=step, epoch=0, accuracy=20 / 21, loss=0.5, examples=21,
                per_class_accuracy=[2 / 3] + [1.0] * 9, confusion=confusion.tolist(),
                misclassified_images=rng.integers(0, 256, (1, 28, 28), dtype=np.uint8),
                misclassified_index=[3], misclassified_label=[0], misclassified_predicted=[1],
            )  # fmt: skip
            add(
                FirstLayerWeights, step=step, epoch=0, units=[0, 1],
                tiles=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), scale=0.1,
            )  # fmt: skip
            parameters = rng.standard_normal(parameter_count(layers)).astype(np.float32)
            out.append(model_weights(envelope(), step, layers, parameters))
        if step == metrics // 2:
            add(HyperparametersTuned, step=step, learning_rate=0.01, previous_learning_rate=0.1)
    add(RunFinished, status="completed", step=metrics, epoch=1, test_accuracy=0.9)
    return out


def make_run(run_id: str, seconds: float = 2.0, *, finished: bool = True) -> list[Envelope]:
    """A realistic run: start, metrics every tick, samples, evaluations, weights, model,
    status, and the finish; step 10 per tick, so the step says where in the run it is.
    Arrays are filled with the tick, so two pictures of one kind are told apart."""
    layers = [784, 4, 10]
    seqs = itertools.count()

    def envelope(t: float) -> dict[str, Any]:
        return {"run_id": run_id, "seq": next(seqs), "sent_at": START + t}

    ticks = round(seconds / TICK)
    messages: list[Envelope] = [run_started(envelope(0.0), layers=layers, total_steps=ticks * 10)]
    for i in range(1, ticks + 1):
        t, step = i * TICK, i * 10
        messages.append(
            training_metrics(
                envelope(t), step, loss=2.0 / i, accuracy=i / ticks, samples_seen=step * 32,
                speed=1000.0,
            )
        )  # fmt: skip
        if i % 5 == 0:
            probabilities = [0.01] * 10
            probabilities[i % 10] = 0.91
            messages.append(
                SamplePrediction(
                    **envelope(t),
                    step=step,
                    index=i,
                    image=np.full((28, 28), i % 256, np.uint8),
                    label=i % 10,
                    probabilities=probabilities,
                )
            )
        if i % 10 == 0:
            messages.append(
                Evaluation(
                    **envelope(t),
                    step=step,
                    epoch=0,
                    accuracy=i / ticks,
                    loss=1.0 / i,
                    examples=100,
                    per_class_accuracy=[1.0] * 10,
                    confusion=[[10 if r == c else 0 for c in range(10)] for r in range(10)],
                    misclassified_images=np.full((2, 28, 28), i % 256, np.uint8),
                    misclassified_index=[1, 2],
                    misclassified_label=[3, 4],
                    misclassified_predicted=[5, 6],
                )
            )
        if i % 10 == 5:
            messages.append(
                FirstLayerWeights(
                    **envelope(t),
                    step=step,
                    epoch=0,
                    units=[0, 1, 2, 3],
                    tiles=np.full((4, 28, 28), i % 256, np.uint8),
                    scale=0.1,
                )
            )
        if i % 20 == 0:
            parameters = np.full(parameter_count(layers), i, np.float32)
            messages.append(model_weights(envelope(t), step, layers, parameters))
        if i % 15 == 0:
            messages.append(RunStatus(**envelope(t), step=step, state="training"))
    if finished:
        messages.append(
            RunFinished(**envelope(ticks * TICK), status="completed", step=ticks * 10, epoch=0)
        )
    return messages


RUN_SECONDS = 6.0


def realistic_run(feed: Feed, seconds: float = RUN_SECONDS, start: float = START) -> list:
    """Every kind of message at a trainer's cadences, each stamped with its send time; the
    trainer pauses half-way for half a second."""
    steps = round(seconds / TICK)
    timed: list[tuple[float, Envelope]] = [
        (0.0, feed.started(total_steps=steps, steps_per_epoch=steps // 2)),
        (0.0, feed.status(0, "training")),
    ]
    paused = 0.0
    for step in range(1, steps + 1):
        t = step * TICK + paused
        timed.append((t, feed.metrics(step, loss=3.0 / step, accuracy=min(1.0, step / steps))))
        if step % 5 == 0:
            timed.append((t, feed.sample(step, label=step % 10, predicted=(step // 5) % 10)))
        if step % 10 == 0:
            evaluation = feed.evaluation(step, mistakes=1 + step // 10 % 8)
            per_class = [round(step / (steps + i + 1), 4) for i in range(10)]
            update = {"accuracy": step / steps, "per_class_accuracy": per_class}
            timed.append((t, evaluation.model_copy(update=update)))
        if step % 20 == 0:
            timed.append((t, feed.weights(step, tiles=16)))
        if step % 40 == 0:
            timed.append((t, feed.model(step, [784, 8, 10])))
        if step == steps // 2:
            timed.append((t, feed.evaluation(step, split="test")))
            timed.append((t, feed.status(step, "paused")))
            paused = 0.5
            timed.append((t + paused, feed.status(step, "training")))
    timed.append((t + 0.01, feed.evaluation(steps, split="test")))
    timed.append((t + 0.02, feed.finished(steps)))
    return [m.model_copy(update={"sent_at": start + t}) for t, m in timed]


def write_recording(
    path: Path, *runs: Iterable[Envelope], chunk: int | None = None, source: str = "test"
) -> Path:
    """Write ``runs`` one after the other into a new recording at ``path``; with ``chunk``, a
    flush after every ``chunk`` messages, so a cut file keeps the chunks before the cut."""
    writer = RecordingWriter(path, source=source)
    for i, message in enumerate(itertools.chain(*runs)):
        writer.write(message)
        if chunk and i % chunk == chunk - 1:
            writer.flush()
    writer.close()
    return path


def piece(run: RunHistory, part: str) -> dict:
    """What the panel that draws ``part`` of ``run`` is given (rendered as a session would)."""
    from viewer.dashboard import RENDER

    return run.rendered(part, RENDER[part])
