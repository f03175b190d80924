"""Any message the protocol accepts can be folded into a real hub and drawn on a page.

Hypothesis makes valid-shaped messages of every kind with their fields anywhere in their
ranges (class counts from 2 to 100, steps up to 10^12, empty and full galleries, 0 to 256
weight tiles, runs that start, finish and interleave); each is applied to a real
:class:`~viewer.sources.live.Hub` and a dashboard draws a frame after it. Nothing may raise,
and nothing may be skipped as unusable. A message that does break a fold is skipped and
counted, and the messages after it still arrive.
"""

from __future__ import annotations

import numpy as np
import pytest
from bokeh.document import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol import (
    Architecture,
    DatasetInfo,
    Evaluation,
    FirstLayerWeights,
    Hyperparameters,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
)
from tests.recordings import Feed
from viewer.dashboard import Dashboard
from viewer.server.settings import ViewerSettings
from viewer.sources.live import Hub

RUNS = st.sampled_from(["run-a", "run-b", "r" * 200])
SEQS = st.integers(0, 2**53 - 1)
SENT = st.floats(1e-3, 3.9e9)
STEPS = st.integers(0, 10**12)
UNIT = st.floats(0.0, 1.0)
FINITE = st.floats(-1e300, 1e300)
CLASSES = st.integers(2, 100)


def pixels(draw: st.DrawFn, *shape: int) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def envelope(draw: st.DrawFn) -> dict:
    return {"run_id": draw(RUNS), "seq": draw(SEQS), "sent_at": draw(SENT)}


@st.composite
def started(draw: st.DrawFn) -> RunStarted:
    classes = draw(CLASSES)
    hidden = draw(st.lists(st.integers(1, 2000), min_size=0, max_size=3))
    return RunStarted(
        **envelope(draw),
        dataset=DatasetInfo(
            name=draw(st.text(min_size=1, max_size=20)),
            synthetic=draw(st.booleans()),
            train_size=draw(st.integers(0, 10**6)),
            test_size=draw(st.integers(0, 10**6)),
            class_names=[str(i) for i in range(draw(st.integers(2, 100)))],
        ),
        architecture=Architecture(layer_sizes=[784, *hidden, classes], activation="relu"),
        hyperparameters=Hyperparameters(
            optimizer="sgd",
            learning_rate=draw(st.floats(1e-9, 10)),
            batch_size=draw(st.integers(1, 4096)),
            epochs=draw(st.integers(1, 1000)),
            seed=draw(st.integers(-(2**31), 2**31)),
        ),
        total_steps=draw(st.integers(0, 10**9)),
        steps_per_epoch=draw(st.integers(1, 10**6)),
        start_step=draw(st.integers(0, 10**9)),
    )


@st.composite
def metrics(draw: st.DrawFn) -> TrainingMetrics:
    return TrainingMetrics(
        **envelope(draw),
        step=draw(STEPS),
        epoch=draw(st.integers(0, 10**6)),
        samples_seen=draw(STEPS),
        loss=draw(FINITE),
        batch_accuracy=draw(UNIT),
        learning_rate=draw(st.floats(0, 1e6)),
        samples_per_second=draw(st.floats(0, 1e9)),
    )


@st.composite
def sample(draw: st.DrawFn) -> SamplePrediction:
    classes = draw(CLASSES)
    weights = np.asarray(draw(st.lists(UNIT, min_size=classes, max_size=classes))) + 1e-9
    return SamplePrediction(
        **envelope(draw),
        step=draw(STEPS),
        index=draw(st.integers(0, 10**9)),
        image=pixels(draw, 28, 28),
        label=draw(st.integers(0, classes - 1)),
        probabilities=(weights / weights.sum()).tolist(),
    )


@st.composite
def evaluation(draw: st.DrawFn) -> Evaluation:
    classes = draw(st.integers(2, 30))
    counts = pixels(draw, classes, classes).astype(int) % draw(st.integers(1, 50))
    counts[0, 0] += 1
    mistakes = draw(st.integers(0, 32))
    return Evaluation(
        **envelope(draw),
        step=draw(STEPS),
        epoch=draw(st.integers(0, 10**6)),
        split=draw(st.sampled_from(["subset", "test", "validation"])),
        accuracy=draw(UNIT),
        loss=draw(FINITE),
        examples=int(counts.sum()),
        per_class_accuracy=draw(
            st.lists(st.one_of(st.none(), UNIT), min_size=classes, max_size=classes)
        ),
        confusion=counts.tolist(),
        misclassified_images=pixels(draw, mistakes, 28, 28),
        misclassified_index=[draw(st.integers(0, 10**9)) for _ in range(mistakes)],
        misclassified_label=[draw(st.integers(0, classes - 1)) for _ in range(mistakes)],
        misclassified_predicted=[draw(st.integers(0, classes - 1)) for _ in range(mistakes)],
    )


@st.composite
def weights(draw: st.DrawFn) -> FirstLayerWeights:
    tiles = draw(st.integers(0, 256))
    return FirstLayerWeights(
        **envelope(draw),
        step=draw(STEPS),
        epoch=draw(st.integers(0, 10**6)),
        units=list(range(tiles)),
        tiles=pixels(draw, tiles, 28, 28),
        scale=draw(st.floats(1e-30, 1e30)),
    )


@st.composite
def status(draw: st.DrawFn) -> RunStatus:
    return RunStatus(
        **envelope(draw),
        step=draw(STEPS),
        state=draw(st.sampled_from(["waiting", "training", "paused"])),
        steps_per_second=draw(st.one_of(st.none(), st.floats(1e-3, 1e6))),
        message=draw(st.text(max_size=50)),
    )


@st.composite
def finished(draw: st.DrawFn) -> RunFinished:
    return RunFinished(
        **envelope(draw),
        status=draw(st.sampled_from(["completed", "stopped", "diverged"])),
        step=draw(STEPS),
        epoch=draw(st.integers(0, 10**6)),
        test_accuracy=draw(st.one_of(st.none(), UNIT)),
        message=draw(st.text(max_size=50)),
    )


MESSAGES = st.one_of(started(), metrics(), sample(), evaluation(), weights(), status(), finished())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(MESSAGES, min_size=1, max_size=12))
def test_the_hub_and_a_page_take_any_valid_message(messages: list) -> None:
    hub = Hub("tcp://127.0.0.1:1")  # never started: the messages are applied here
    page = Dashboard(Document(), hub, ViewerSettings(), frames=False)
    for message in messages:
        hub.apply(message)
        page.tick()
    assert hub.unusable == 0


def test_a_message_that_breaks_a_fold_is_skipped_and_counted(monkeypatch) -> None:
    hub, feed = Hub("tcp://127.0.0.1:1"), Feed("run-a")
    hub.apply(feed.started())
    from viewer.runs.state import RunHistory

    fold = RunHistory._fold

    def broken(self: RunHistory, message) -> None:
        if message.kind == "sample":
            raise IndexError("a bug in a fold")
        fold(self, message)

    monkeypatch.setattr(RunHistory, "_fold", broken)
    hub.apply(feed.sample(1))
    hub.apply(feed.metrics(2))
    assert hub.unusable == 1 and hub.figures()["rejected"] == 1
    run = hub.current
    assert run is not None and run.curves["loss"].data["step"] == [2], "the next one arrived"


def test_what_would_break_a_page_does_not_validate() -> None:
    feed = Feed("run-a")
    with pytest.raises(ValidationError, match="not one of the 10 classes"):
        SamplePrediction(**{**feed.sample(1).model_dump(), "label": 99})
    broken = feed.evaluation(1).model_dump()
    with pytest.raises(ValidationError, match="class 50 is not one"):
        Evaluation(**{**broken, "misclassified_label": [50, 1, 1]})
    with pytest.raises(ValidationError, match="greater than 0"):
        TrainingMetrics(**{**feed.metrics(1).model_dump(), "sent_at": -1})
