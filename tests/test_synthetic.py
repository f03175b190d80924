"""The generated digits: deterministic, varied, digit-sized, and learnable but not trivial."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.datasets import load_dataset
from trainer.evaluation import assess
from trainer.mlp import MLP
from trainer.optim import SGD
from trainer.synthetic import make_digits


def test_same_seed_same_images_and_other_seed_other_images() -> None:
    images, labels = make_digits(200, seed=3)
    again, again_labels = make_digits(200, seed=3)
    other, _ = make_digits(200, seed=4)
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert not np.array_equal(images, other)


@pytest.mark.parametrize("n", [0, 1, 7, 1001])
def test_any_size_with_balanced_labels(n: int) -> None:
    images, labels = make_digits(n, seed=0)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1


def test_digits_sit_in_the_middle_with_mnist_like_ink() -> None:
    images, _ = make_digits(500, seed=1)
    ink = images > 128
    assert 0.08 < ink.mean() < 0.3  # MNIST: 0.14
    rows = ink.any(axis=2)
    cols = ink.any(axis=1)
    assert rows[:, :2].mean() < 0.05 and rows[:, -2:].mean() < 0.05
    assert cols[:, :2].mean() < 0.05 and cols[:, -2:].mean() < 0.05
    heights = rows.sum(axis=1)
    assert 12 < np.median(heights) <= 24  # MNIST digits fill a ~20 px box


def test_samples_of_one_class_vary() -> None:
    images, labels = make_digits(400, seed=2)
    threes = images[labels == 3].astype(np.float32)
    differences = np.abs(threes[1:] - threes[:-1]).mean(axis=(1, 2))
    assert differences.min() > 5  # no two consecutive threes are near copies


def test_classes_need_learning_not_a_template_match() -> None:
    """A nearest-class-mean classifier is well above chance but far from solved; an MLP does
    better after a little training, as on MNIST."""
    x, y = make_digits(3000, seed=5)
    x_test, y_test = make_digits(1000, seed=6)
    flat = x.reshape(len(x), -1).astype(np.float32) / 255
    flat_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255
    means = np.stack([flat[y == d].mean(axis=0) for d in range(10)])
    scores = flat_test @ means.T - 0.5 * (means**2).sum(axis=1)
    template_accuracy = (scores.argmax(axis=1) == y_test).mean()
    assert 0.3 < template_accuracy < 0.85

    rng = np.random.default_rng(0)
    model = MLP([784, 128, 10], "relu", rng)
    before = assess(model, flat_test, y_test).accuracy
    optimizer = SGD(model.params, lr=0.1)
    for _ in range(3):
        order = rng.permutation(len(flat))
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            _, _, grads = model.loss_and_gradients(flat[batch], y[batch])
            optimizer.step(grads)
    after = assess(model, flat_test, y_test).accuracy
    assert before < 0.2
    assert after > template_accuracy + 0.05


def test_synthetic_dataset_is_labelled_synthetic() -> None:
    dataset = load_dataset("synthetic", seed=0)
    assert dataset.synthetic
    assert "SYNTHETIC" in dataset.description
    assert len(dataset.train_images) == 10_000 and len(dataset.test_images) == 2_000
    assert not np.array_equal(dataset.train_images[:100], dataset.test_images[:100])
