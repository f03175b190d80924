"""The training loop with a real publisher, real checkpoints and the real ``mnist-live train``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from protocol import Evaluation, RunFinished, RunStarted
from tests.conftest import SEED, blob_dataset, wait_until
from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.loop import Pacer, batches, train
from trainer.reporter import Cadences, Reporter

FAST = Cadences(metrics=0.0, sample=0.0, evaluation=0.0)


def test_run_publishes_a_complete_ordered_stream(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = replace(SEED, hidden=(32,), batch_size=20, epochs=2)
    result = train(
        dataset, config, Reporter(publisher, dataset, cadences=FAST, epoch_evaluation_share=None)
    )
    messages = collector.drain()

    assert result.status == "completed" and result.steps == 40
    assert isinstance(messages[0], RunStarted)
    assert messages[0].dataset.name == "blobs" and messages[0].total_steps == 40
    assert messages[0].steps_per_epoch == 20 and messages[0].start_step == 0
    assert messages[0].architecture.layer_sizes == [784, 32, 10]
    assert messages[0].hyperparameters.optimizer == "sgd"
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert {m.run_id for m in messages} == {publisher.run_id}
    kinds = [m.kind for m in messages]
    assert kinds.count("metrics") == 40 and kinds.count("sample") == 40
    splits = [m.split for m in messages if isinstance(m, Evaluation)]
    assert splits.count("subset") == 40 and splits.count("test") == 2, "one per epoch end"
    final = messages[-1]
    assert isinstance(final, RunFinished) and final.status == "completed"
    assert final.test_accuracy == pytest.approx(result.test_accuracy)
    assert result.test_accuracy > 0.9
    samples = [m for m in messages if m.kind == "sample"]
    assert len({m.index for m in samples}) > 10, "samples should cycle through test images"


def test_cadence_coalesces_metrics(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = replace(SEED, hidden=(16,), batch_size=4, epochs=3)  # 300 steps, fast
    cadences = Cadences(metrics=60.0, sample=60.0, evaluation=60.0)
    train(dataset, config, Reporter(publisher, dataset, cadences=cadences))
    messages = collector.drain()
    assert [m.kind for m in messages].count("metrics") == 1
    assert [m.split for m in messages if isinstance(m, Evaluation)].count("subset") == 1


def test_stop_event_ends_run_as_stopped(collector_and_publisher) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    stop = threading.Event()
    config = replace(SEED, hidden=(16,), batch_size=10, epochs=100, steps_per_second=200)
    threading.Timer(0.3, stop.set).start()
    result = train(dataset, config, Reporter(publisher, dataset), stop=stop)
    final = collector.drain()[-1]
    assert result.status == "stopped" and final.status == "stopped"
    assert 0 < result.steps < 4000


def test_divergence_is_detected_and_reported(collector_and_publisher, tmp_path: Path) -> None:
    collector, publisher = collector_and_publisher
    dataset = blob_dataset()
    config = replace(SEED, hidden=(64,), learning_rate=1e6, batch_size=50, epochs=20)
    save = tmp_path / "diverged.npz"
    result = train(dataset, config, Reporter(publisher, dataset), save=save)
    final = collector.drain()[-1]
    assert result.status == "diverged" and final.status == "diverged"
    assert f"at step {result.steps + 1}" in final.message and "smaller --lr" in final.message
    assert result.steps < config.total_steps(400)
    assert result.test_accuracy is None and final.test_accuracy is None
    assert not save.exists(), "a diverged model is not worth a checkpoint"


def test_pacing_slows_training_and_follows_a_new_rate() -> None:
    dataset = blob_dataset()
    config = replace(SEED, hidden=(8,), batch_size=20, epochs=1, steps_per_second=50)
    result = train(dataset, config)
    assert result.steps == 20
    assert 0.3 < result.wall_seconds < 2.0  # 20 steps at 50/s is 0.4 s

    pacer = Pacer(50)
    pacer.rate = None  # as a presenter's "pace: unlimited" does
    assert train(dataset, config, pacer=pacer).wall_seconds < 0.3


def test_batches_cover_each_epoch_once_in_a_seeded_order() -> None:
    config = replace(SEED, batch_size=32, epochs=3, seed=5)
    steps = list(batches(config, 100))
    assert len(steps) == 3 * 4 and [e for e, _ in steps] == [0] * 4 + [1] * 4 + [2] * 4
    for epoch in range(3):
        seen = np.concatenate([b for e, b in steps if e == epoch])
        assert sorted(seen) == list(range(100))
    first, second = (np.concatenate([b for e, b in steps if e == k]) for k in (0, 1))
    assert not np.array_equal(first, second), "reshuffled every epoch"
    resumed = list(batches(config, 100, start_step=6))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(resumed, steps[6:], strict=True))


def _weights_after(config: TrainConfig, path: Path, **kwargs) -> list[np.ndarray]:
    result = train(blob_dataset(), config, save=path, **kwargs)
    assert result.status == "completed"
    return checkpoint.load(path).params


def test_same_seed_same_weights_bit_for_bit(tmp_path: Path) -> None:
    config = replace(SEED, hidden=(24,), optimizer="adam", learning_rate=1e-3, batch_size=8)
    config = TrainConfig(**{**config.__dict__, "max_steps": 50, "seed": 7})
    first = _weights_after(config, tmp_path / "a.npz")
    second = _weights_after(config, tmp_path / "b.npz")
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other = _weights_after(TrainConfig(**{**config.__dict__, "seed": 8}), tmp_path / "c.npz")
    assert not np.array_equal(other[0], first[0])


@pytest.mark.parametrize(
    ("optimizer", "schedule"), [("sgd", "constant"), ("momentum", "step"), ("adam", "cosine")]
)
def test_resume_continues_bit_for_bit(tmp_path: Path, optimizer: str, schedule: str) -> None:
    # 400 examples in batches of 32: 13 steps per epoch, the last one short; 20 and 40 steps
    # both end mid-epoch, so the resumed run must pick up the data order part-way through.
    config = replace(
        SEED,
        hidden=(16,),
        optimizer=optimizer,
        learning_rate=0.05 if optimizer != "adam" else 1e-3,
        weight_decay=1e-3,
        schedule=schedule,
        batch_size=32,
        epochs=4,
        seed=3,
    )
    straight = _weights_after(
        config.__class__(**{**config.__dict__, "max_steps": 40}), tmp_path / "s.npz"
    )

    half = tmp_path / "half.npz"
    stop = threading.Event()
    # Stopped at step 20 the way Ctrl-C stops a run, so the schedule still spans 40 steps.
    progress = _StopAt(20, stop)
    run = config.__class__(**{**config.__dict__, "max_steps": 40})
    assert train(blob_dataset(), run, save=half, stop=stop, progress=progress).steps == 20
    saved = checkpoint.load(half)
    assert saved.step == 20 and saved.epoch == 1
    resumed = _weights_after(run, tmp_path / "r.npz", resume=saved)
    assert all(np.array_equal(a, b) for a, b in zip(straight, resumed, strict=True))


class _StopAt:
    """A progress sink that asks the run to stop after a given step."""

    def __init__(self, step: int, stop: threading.Event) -> None:
        self.step, self.stop = step, stop

    def update(self, step: int, *args: object) -> None:
        if step == self.step:
            self.stop.set()

    def close(self) -> None:
        pass


def _train_command(tmp_path: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "protocol.cli",
        "train",
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "600,200",
        "--wait-for-broker",
        "0",
        "--connect",
        "tcp://127.0.0.1:9",  # nobody there: publishing must not matter
        "--quiet",
        *args,
    ]


def test_cli_writes_summary_json(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    command = _train_command(
        tmp_path, "--hidden", "32", "--epochs", "2", "--batch-size", "50", "--optimizer",
        "momentum", "--lr", "0.05", "--summary", str(summary), "--save", str(tmp_path / "m.npz"),
    )  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    figures = json.loads(summary.read_text())
    assert figures["status"] == "completed" and figures["steps"] == 24 and figures["epochs"] == 2
    assert figures["dataset"]["name"] == "synthetic" and figures["dataset"]["train_size"] == 600
    assert figures["configuration"]["hidden"] == [32]
    assert figures["configuration"]["optimizer"] == "momentum"
    assert 0.0 <= figures["test_accuracy"] <= 1.0 and figures["test_loss"] > 0
    assert figures["wall_seconds"] > 0 and figures["samples_per_second"] > 0
    assert "test accuracy" in finished.stderr.splitlines()[-2]
    assert checkpoint.load(tmp_path / "m.npz").step == 24


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--lr", "-1"], "--lr"),
        (["--hidden", "10,x"], "--hidden"),
        (["--optimizer", "rmsprop"], "--optimizer"),
        (["--momentum", "1.5"], "--momentum"),
        (["--resume", "missing.npz"], "missing.npz"),
        (["--save", "no/such/dir/m.npz"], "does not exist"),
    ],
)
def test_cli_bad_option_is_one_line(tmp_path: Path, args: list[str], problem: str) -> None:
    finished = subprocess.run(
        _train_command(tmp_path, *args), capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert finished.returncode == 2
    errors = [line for line in finished.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and problem in errors[0], finished.stderr
    assert "Traceback" not in finished.stderr


def test_cli_sigterm_stops_the_run_as_stopped(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    command = _train_command(
        tmp_path, "--hidden", "16", "--steps-per-second", "20", "--summary", str(summary)
    )
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True
    )
    try:
        assert process.stderr
        wait_until(lambda: "publishing to" in process.stderr.readline(), 30, 0, "training start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.loads(summary.read_text())["status"] == "stopped"
