"""The numerics: gradients match finite differences, softmax is stable, learning happens."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.mlp import ACTIVATIONS, MLP, SGD, cross_entropy, log_softmax, softmax


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_match_finite_differences(activation: str) -> None:
    rng = np.random.default_rng(0)
    model = MLP([6, 5, 4, 3], activation, rng)
    model.params = [p.astype(np.float64) for p in model.params]  # float64 for a tight check
    x = rng.standard_normal((7, 6))
    y = rng.integers(0, 3, 7)
    _, _, grads = model.loss_and_gradients(x, y)
    eps = 1e-6
    for param, grad in zip(model.params, grads, strict=True):
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            original = param[index]
            param[index] = original + eps
            plus = cross_entropy(model.forward(x)[-1], y)
            param[index] = original - eps
            minus = cross_entropy(model.forward(x)[-1], y)
            param[index] = original
            numeric[index] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)


def test_softmax_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [3.0, 3.0, 3.0]], dtype=np.float32)
    probs = softmax(logits.copy())
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(log_softmax(logits)))
    assert cross_entropy(logits, np.array([2, 0])) == pytest.approx((2e4 + np.log(3)) / 2)


def test_float32_throughout() -> None:
    model = MLP([784, 32, 10], "relu", np.random.default_rng(0))
    x = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    assert all(p.dtype == np.float32 for p in model.params)
    _, _, grads = model.loss_and_gradients(x, np.array([1, 2, 3, 4]))
    assert all(g.dtype == np.float32 for g in grads)


def test_sgd_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 20)).astype(np.float32) * 3
    y = rng.integers(0, 3, 600)
    x = centres[y] + rng.standard_normal((600, 20)).astype(np.float32)
    model = MLP([20, 16, 3], "relu", rng)
    optimizer = SGD(model.params, lr=0.1)
    first_loss, _, _ = model.loss_and_gradients(x, y)
    for start in range(0, 600 * 5, 30):
        batch = np.arange(start, start + 30) % 600
        optimizer.step(model.loss_and_gradients(x[batch], y[batch])[2])
    accuracy, loss = model.evaluate(x, y)
    assert loss < first_loss / 4
    assert accuracy > 0.95


def test_every_activation_the_protocol_names_is_implemented() -> None:
    from typing import get_args

    from protocol.messages import Activation

    assert set(get_args(Activation)) == set(ACTIVATIONS)
