"""The fused weight update gives what NumPy's two-step expression gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_dataset
from trainer import blas
from trainer.loop import TrainConfig, build_model
from trainer.optim import SGD


@pytest.mark.parametrize("beta", [1.0, 0.99])
def test_add_product_matches_numpy(beta: float) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 30), dtype=np.float32)
    b = rng.standard_normal((16, 20), dtype=np.float32)
    c = rng.standard_normal((30, 20), dtype=np.float32)
    expected = beta * c.astype(np.float64) - 0.1 * (a.T.astype(np.float64) @ b)
    blas.add_product(c, a, b, -0.1, beta)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


def test_add_product_falls_back_for_arrays_blas_cannot_take() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 30), dtype=np.float32)[:, ::2]  # not contiguous
    b = rng.standard_normal((8, 5), dtype=np.float32)
    c = np.zeros((15, 5), np.float32)
    blas.add_product(c, a, b, 2.0)
    np.testing.assert_allclose(c, 2 * a.T @ b, rtol=1e-5, atol=1e-6)


def test_numpy_wheels_get_the_fused_call() -> None:
    if not list(Path(np.__file__).resolve().parent.parent.glob("numpy.libs/*openblas*")):
        pytest.skip("this NumPy does not bundle OpenBLAS")
    assert blas.fused()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_with_products_steps_like_sgd_with_gradients(weight_decay: float) -> None:
    dataset = blob_dataset(64, 10)
    x = dataset.train_images.reshape(64, -1)[:16] / np.float32(255)
    y = dataset.train_labels[:16].astype(np.int64)
    config = TrainConfig(hidden=(24,))
    plain, fused = build_model(config, dataset), build_model(config, dataset)
    for products, model in ((False, plain), (True, fused)):
        optimizer = SGD(model.params, 0.5, weight_decay)
        for _ in range(3):
            optimizer.step(model.loss_and_gradients(x, y, products=products)[2])
    assert not np.array_equal(plain.params[0], build_model(config, dataset).params[0])
    for p, q in zip(plain.params, fused.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
