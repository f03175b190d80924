"""The trainer with a real publisher: what it sends, in what order, and how runs end."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from protocol import RunFinished, RunStarted, decode
from tests.conftest import wait_until
from trainer.datasets import DIGIT_NAMES, Dataset
from trainer.loop import TrainConfig, build_model, train
from trainer.publisher import Publisher
from trainer.reporter import Cadences, Reporter


def blob_dataset(n_train: int = 400, n_test: int = 100, seed: int = 0) -> Dataset:
    """Ten classes of bright squares at class-specific places: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        pixels = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            pixels[i, 4 + row * 10 : 12 + row * 10, 1 + col * 5 : 5 + col * 5] = 255
        return pixels, labels

    train_x, train_y = images(n_train)
    test_x, test_y = images(n_test)
    return Dataset("blobs", train_x, train_y, test_x, test_y, DIGIT_NAMES)


class Collector:
    """A bound SUB socket standing in for the broker, gathering decoded messages."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(endpoint)

    def drain(self, until_kind: str = "run_finished", timeout: float = 10.0) -> list:
        messages: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.poll(100):
                messages.append(decode(self.socket.recv_multipart()))
                if messages[-1].kind == until_kind:
                    return messages
        raise AssertionError(f"no {until_kind} within {timeout} s; got {len(messages)} messages")

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def collector_and_publisher(endpoint):
    address = endpoint()
    collector = Collector(address)
    publisher = Publisher(address)
    # A bound socket only processes new connections when its own thread touches it.
    wait_until(
        lambda: collector.socket.poll(0) or publisher.wait_for_subscriber(0.05),
        timeout=5,
        message="the collector's subscription",
    )
    yield collector, publisher
    publisher.close()
    collector.close()


FAST = Cadences(metrics=0.0, sample=0.0, evaluation=0.0)


def test_run_publishes_a_complete_ordered_stream(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = TrainConfig(hidden=(32,), batch_size=20, epochs=2)
    result = train(dataset, config, Reporter(publisher, dataset, cadences=FAST))
    messages = collector.drain()

    assert result.status == "completed" and result.steps == 40
    assert isinstance(messages[0], RunStarted)
    assert messages[0].dataset.name == "blobs" and messages[0].total_steps == 40
    assert messages[0].architecture.layer_sizes == [784, 32, 10]
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert {m.run_id for m in messages} == {publisher.run_id}
    kinds = [m.kind for m in messages]
    assert kinds.count("metrics") == 40 and kinds.count("sample") == 40
    assert kinds.count("evaluation") == 40
    final = messages[-1]
    assert isinstance(final, RunFinished) and final.status == "completed"
    assert final.test_accuracy == pytest.approx(result.test_accuracy)
    assert result.test_accuracy > 0.9
    samples = [m for m in messages if m.kind == "sample"]
    assert len({m.index for m in samples}) > 10, "samples should cycle through test images"


def test_cadence_coalesces_metrics(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = TrainConfig(hidden=(16,), batch_size=4, epochs=3)  # 300 steps, fast
    cadences = Cadences(metrics=60.0, sample=60.0, evaluation=60.0)
    train(dataset, config, Reporter(publisher, dataset, cadences=cadences))
    kinds = [m.kind for m in collector.drain()]
    assert kinds.count("metrics") == 1 and kinds.count("evaluation") == 1


def test_stop_event_ends_run_as_stopped(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    stop = threading.Event()
    config = TrainConfig(hidden=(16,), batch_size=10, epochs=100, steps_per_second=200)
    threading.Timer(0.3, stop.set).start()
    result = train(dataset, config, Reporter(publisher, dataset), stop=stop)
    final = collector.drain()[-1]
    assert result.status == "stopped" and final.status == "stopped"
    assert 0 < result.steps < 4000


def test_divergence_is_detected_and_reported(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = TrainConfig(hidden=(64,), learning_rate=1e6, batch_size=50, epochs=20)
    result = train(dataset, config, Reporter(publisher, dataset))
    final = collector.drain()[-1]
    assert result.status == "diverged" and final.status == "diverged"
    assert "smaller --lr" in final.message
    assert result.steps < config.total_steps(400)


def test_pacing_slows_training_to_the_requested_rate() -> None:
    dataset = blob_dataset()
    config = TrainConfig(hidden=(8,), batch_size=20, epochs=1, steps_per_second=50)
    result = train(dataset, config)
    assert result.steps == 20
    assert 0.3 < result.wall_seconds < 2.0  # 20 steps at 50/s is 0.4 s


def test_same_seed_same_weights_bit_for_bit() -> None:
    dataset = blob_dataset()
    config = TrainConfig(hidden=(24,), batch_size=8, epochs=1, max_steps=50, seed=7)
    first, second = build_model(config, dataset), build_model(config, dataset)
    assert all(np.array_equal(a, b) for a, b in zip(first.params, second.params, strict=True))
    results = []
    for _ in range(2):
        captured = {}
        reporter = _Capture(captured)
        train(dataset, config, reporter)
        results.append(captured["model"].params)
    assert all(np.array_equal(a, b) for a, b in zip(*results, strict=True))
    other = TrainConfig(hidden=(24,), batch_size=8, epochs=1, max_steps=50, seed=8)
    captured = {}
    train(dataset, other, _Capture(captured))
    assert not np.array_equal(captured["model"].params[0], results[0][0])


class _Capture(Reporter):
    """A reporter that keeps the trained model instead of publishing it."""

    def __init__(self, box: dict) -> None:
        self.box = box

    def started(self, model, hyperparameters, total_steps) -> None:
        self.box["model"] = model

    def after_step(self, *args) -> None:
        pass

    def finished(self, *args) -> None:
        pass
