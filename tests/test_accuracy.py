"""The trainer learns the real thing: accuracy targets on real MNIST and Fashion-MNIST.

Each test prints its wall time (``pytest -s`` shows it). They skip when the shared data folder
is absent.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tests.conftest import SEED, shared_dataset
from trainer.config import DEFAULT, TrainConfig
from trainer.datasets import load_dataset
from trainer.loop import train

pytestmark = pytest.mark.slow

ISSUE_RECIPE = replace(
    SEED, hidden=(128,), optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=5
)


def _accuracy(name: str, config: TrainConfig) -> float:
    dataset = load_dataset(str(shared_dataset(name)))
    started = time.monotonic()
    result = train(dataset, config)
    seconds = time.monotonic() - started
    print(
        f"\n{name} {'-'.join(map(str, (784, *config.hidden, 10)))} {config.optimizer} "
        f"batch {config.batch_size}, {result.epochs_completed} epochs: "
        f"{result.test_accuracy:.2%} in {seconds:.1f} s "
        f"({result.samples_per_second:,.0f} samples/s)"
    )
    assert result.status == "completed" and result.test_accuracy is not None
    return result.test_accuracy


def test_mnist_10k_784_128_10_adam_reaches_94_5_percent_in_5_epochs() -> None:
    assert _accuracy("mnist-10k", ISSUE_RECIPE) >= 0.945


def test_fashion_mnist_784_128_10_adam_reaches_86_5_percent_in_5_epochs() -> None:
    assert _accuracy("fashion-mnist", ISSUE_RECIPE) >= 0.865


def test_default_recipe_reaches_96_percent_on_mnist_10k_within_10_epochs() -> None:
    config = DEFAULT
    assert config.epochs <= 10
    assert _accuracy("mnist-10k", config) >= 0.96
