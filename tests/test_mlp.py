"""The numerics: gradients match finite differences, softmax is stable, optimizers do what
their formulas say, learning happens."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cross_entropy
from trainer.evaluation import assess
from trainer.mlp import ACTIVATIONS, MLP, PixelBatches, log_softmax, pixels, softmax
from trainer.optim import SGD, Adam, Momentum, joined, make_optimizer, make_schedule


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
    final = assess(model, x, y)
    accuracy, loss = final.accuracy, final.loss
    assert loss < first_loss / 4
    assert accuracy > 0.95


def test_every_activation_the_protocol_names_is_implemented() -> None:
    from typing import get_args

    from protocol.messages import Activation

    assert set(get_args(Activation)) == set(ACTIVATIONS)


def test_training_step_gradients_equal_the_plain_formulas() -> None:
    """The buffered fast path gives what textbook NumPy gives, in float32."""
    rng = np.random.default_rng(3)
    model = MLP([784, 40, 20, 10], "relu", rng)
    x = rng.random((16, 784), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    loss, accuracy, grads = model.loss_and_gradients(x, y)
    h1 = np.maximum(x @ model.params[0] + model.params[1], 0)
    h2 = np.maximum(h1 @ model.params[2] + model.params[3], 0)
    logits = h2 @ model.params[4] + model.params[5]
    probs = softmax(logits)
    assert loss == pytest.approx(cross_entropy(logits, y), rel=1e-5)
    assert accuracy == np.mean(logits.argmax(axis=1) == y)
    d3 = probs.copy()
    d3[np.arange(16), y] -= 1
    d3 /= 16
    d2 = (d3 @ model.params[4].T) * (h2 > 0)
    d1 = (d2 @ model.params[2].T) * (h1 > 0)
    expected = [x.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ d3, d3.sum(0)]
    for got, want in zip(grads, expected, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert joined(model.params) is not None and joined(grads) is not None


def _tiny_params() -> list[np.ndarray]:
    return [np.array([[1.0, -2.0]], dtype=np.float32), np.array([0.5], dtype=np.float32)]


def test_adam_matches_its_formula_by_hand() -> None:
    params = _tiny_params()
    adam = Adam(params, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    g1 = [np.array([[0.2, -0.4]], np.float32), np.array([1.0], np.float32)]
    g2 = [np.array([[0.1, 0.3]], np.float32), np.array([-2.0], np.float32)]
    expected = [p.astype(np.float64) for p in _tiny_params()]
    m = [np.zeros_like(p) for p in expected]
    v = [np.zeros_like(p) for p in expected]
    for t, grads in enumerate((g1, g2), start=1):
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g.astype(np.float64) ** 2
            m_hat, v_hat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
            expected[i] -= 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
        adam.step([g.copy() for g in grads])
    for got, want in zip(params, expected, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_first_adam_step_is_lr_times_the_sign() -> None:
    params = _tiny_params()
    Adam(params, lr=0.01).step([np.array([[3.0, -0.5]], np.float32), np.array([1e-3], np.float32)])
    np.testing.assert_allclose(params[0], [[0.99, -1.99]], rtol=1e-6)
    np.testing.assert_allclose(params[1], [0.49], rtol=1e-5)


def test_momentum_is_heavy_ball() -> None:
    params = _tiny_params()
    optimizer = Momentum(params, lr=0.1, momentum=0.5)
    for _ in range(2):
        optimizer.step([np.array([[1.0, 1.0]], np.float32), np.array([2.0], np.float32)])
    # v1 = g, v2 = 0.5 g + g: the weights move by 0.1 * (1 + 1.5) * g
    np.testing.assert_allclose(params[0], [[0.75, -2.25]], rtol=1e-6)
    np.testing.assert_allclose(params[1], [0.0], atol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_weight_decay_shrinks_weights_without_gradient(name: str) -> None:
    params = _tiny_params()
    optimizer = make_optimizer(name, params, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        optimizer.step([np.zeros_like(p) for p in params])
    assert np.all(np.abs(params[0]) < np.abs(_tiny_params()[0]))
    assert np.all(np.sign(params[0]) == np.sign(_tiny_params()[0]))
    plain = _tiny_params()
    make_optimizer(name, plain, lr=0.1).step([np.zeros_like(p) for p in plain])
    assert all(np.array_equal(a, b) for a, b in zip(plain, _tiny_params(), strict=True))


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_one_vector_and_separate_arrays_update_alike(name: str) -> None:
    model = MLP([20, 8, 3], "tanh", np.random.default_rng(1))
    separate = [p.copy() for p in model.params]
    assert joined(model.params) is not None and joined(separate) is None
    fast = make_optimizer(name, model.params, lr=0.01, weight_decay=0.01)
    slow = make_optimizer(name, separate, lr=0.01, weight_decay=0.01)
    rng = np.random.default_rng(2)
    for _ in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in separate]
        fast.step([g.copy() for g in grads])
        slow.step(grads)
    for a, b in zip(model.params, separate, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_schedules() -> None:
    constant = make_schedule("constant", 100)
    assert constant(0) == constant(99) == 1.0
    cosine = make_schedule("cosine", 100)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) < 1e-12
    assert all(cosine(s) >= cosine(s + 1) for s in range(100))
    step = make_schedule("step", 100)
    assert [step(0), step(49), step(50), step(75)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("warm", 10)


def test_pixel_batches_hand_over_the_counts_that_scale_to_the_float_rows() -> None:
    images = np.random.default_rng(4).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    batches = PixelBatches(images, batch_size=8)
    whole = pixels(images)
    for batch in (np.array([3, 1, 49, 0, 7, 7, 12, 30]), np.array([5, 2])):  # full, and short
        counts = batches.take(batch)
        assert counts.dtype == np.float32 and counts.shape == (len(batch), 784)
        np.testing.assert_array_equal(counts, images[batch].reshape(len(batch), -1))
        np.testing.assert_allclose(batches.scale * counts, whole[batch], rtol=1e-6)


@pytest.mark.parametrize("products", [False, True])
def test_an_input_scale_gives_what_the_scaled_input_gives(products: bool) -> None:
    """Counts with ``x_scale`` train the model exactly as the pixels they stand for do."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 16)
    model = MLP([784, 32, 10], "relu", rng)
    loss, accuracy, grads = model.loss_and_gradients(pixels(images), y, products=products)
    expected = [np.array(g) for g in grads]  # the model reuses its buffers
    batches = PixelBatches(images, batch_size=16)
    counts = batches.take(np.arange(16))
    scaled = model.loss_and_gradients(counts, y, products=products, x_scale=batches.scale)
    assert scaled[:2] == pytest.approx((loss, accuracy), rel=1e-5)
    for got, want in zip(scaled[2], expected, strict=True):
        np.testing.assert_allclose(np.array(got), want, rtol=1e-4, atol=1e-6)
    assert np.abs(expected[0]).max() > 1e-4  # the first layer's gradient is not trivially 0
