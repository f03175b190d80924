"""The fused BLAS updates give what NumPy's multi-step expressions give."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEED, blob_dataset
from trainer import blas
from trainer.loop import build_model
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


@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.9), (-0.5, 1.0), (1.0, 0.0)])
def test_scale_add_matches_numpy(alpha: float, beta: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1000, dtype=np.float32)
    y = rng.standard_normal(1000, dtype=np.float32)
    expected = beta * y.astype(np.float64) + alpha * x
    blas.scale_add(y, x, alpha, beta)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_scale_add_falls_back_for_arrays_blas_cannot_take() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    y = np.ones((6, 4), np.float32)[::2, :]  # not contiguous, and float64 next to float32
    blas.scale_add(y, x, 2.0, 0.5)
    np.testing.assert_allclose(y, 0.5 + 2 * x)
    z = np.ones(3)  # float64 throughout
    blas.scale_add(z, np.arange(3.0), -1.0)
    np.testing.assert_array_equal(z, [1.0, 0.0, -1.0])


@pytest.mark.parametrize("contiguous", [True, False])
def test_add_matmul_matches_numpy(contiguous: bool) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 60 if contiguous else 120), dtype=np.float32)
    a = a if contiguous else a[:, ::2]
    b = rng.standard_normal((60, 7), dtype=np.float32)
    c = np.broadcast_to(rng.standard_normal(7, dtype=np.float32), (16, 7)).copy()
    expected = c.astype(np.float64) + a.astype(np.float64) @ b
    blas.add_matmul(c, a, b)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # BLAS, and NumPy's fallback
def test_read_only_inputs_a_scale_and_an_ignored_output(dtype: type) -> None:
    """Inputs BLAS cannot view as writable buffers (a loaded dataset, say) are passed as they
    are; ``alpha`` scales the product and ``beta`` 0 ignores what the output held."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 30)).astype(dtype)
    b = rng.standard_normal((30, 20)).astype(dtype)
    a.setflags(write=False)
    b.setflags(write=False)
    c = np.zeros((16, 20), dtype)
    blas.add_matmul(c, a, b, alpha=0.5)
    np.testing.assert_allclose(c, 0.5 * (a.astype(np.float64) @ b), rtol=1e-5, atol=1e-5)
    g = np.full((30, 20), np.nan, dtype)  # beta 0: NaN in the output must not survive
    blas.add_product(g, a, c, 2.0, 0.0)
    np.testing.assert_allclose(g, 2 * (a.T.astype(np.float64) @ c), rtol=1e-5, atol=1e-5)


def test_numpy_wheels_get_the_fused_call() -> None:
    if not list(Path(np.__file__).resolve().parent.parent.glob("numpy.libs/*openblas*")):
        pytest.skip("this NumPy does not bundle OpenBLAS")
    assert blas.fused()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_with_products_steps_like_sgd_with_gradients(weight_decay: float) -> None:
    dataset = blob_dataset(64, 10)
    x = dataset.train_images.reshape(64, -1)[:16] / np.float32(255)
    y = dataset.train_labels[:16].astype(np.int64)
    config = replace(SEED, hidden=(24,))
    plain, fused = build_model(config, dataset), build_model(config, dataset)
    for products, model in ((False, plain), (True, fused)):
        optimizer = SGD(model.params, 0.5, weight_decay)
        for _ in range(3):
            optimizer.step(model.loss_and_gradients(x, y, products=products)[2])
    assert not np.array_equal(plain.params[0], build_model(config, dataset).params[0])
    for p, q in zip(plain.params, fused.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def test_without_openblas_every_function_computes_the_same_with_numpy(
    monkeypatch, tmp_path: Path
) -> None:
    """A NumPy built against another BLAS (no bundled OpenBLAS): the fallback path, float32."""
    assert blas.bundled_openblas(tmp_path) is None, "an empty directory holds no OpenBLAS"
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((16, 30), np.float32), rng.standard_normal((16, 20), np.float32)
    c, x = rng.standard_normal((30, 20), np.float32), rng.standard_normal((30, 16), np.float32)
    y, v = rng.standard_normal(500, np.float32), rng.standard_normal(500, np.float32)
    results = {}
    for fused in (True, False):
        if not fused:
            for name in ("_SGEMM", "_SAXPBY", "_SAXPY"):
                monkeypatch.setattr(blas, name, None)
        assert blas.fused() is (fused and blas._OPENBLAS is not None)
        c1, c2, c3, y1, y2 = c.copy(), c.copy(), c.copy(), y.copy(), y.copy()
        blas.add_product(c1, a, b, -0.1, 0.9)
        blas.add_product(c2, a, b, 2.0, 0.0)
        blas.add_matmul(c3, x, b, 0.5)
        blas.scale_add(y1, v, 0.1, 0.9)
        blas.scale_add(y2, v, -0.5)
        results[fused] = (c1, c2, c3, y1, y2)
        assert all(r.dtype == np.float32 for r in results[fused])
    for with_blas, with_numpy in zip(results[True], results[False], strict=True):
        np.testing.assert_allclose(with_blas, with_numpy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[False][0], 0.9 * c - 0.1 * (a.T @ b), rtol=1e-5, atol=1e-5)


def test_a_paced_run_gets_one_blas_thread_and_a_request_wins() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from trainer.blas import limit_threads

    def counts() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = counts()
    if not before:
        pytest.skip("no BLAS thread pool that threadpoolctl can see")
    try:
        assert limit_threads(None, paced=False) is None and counts() == before
        assert limit_threads(None, paced=True) == 1 and counts() == {1}
        assert limit_threads(2, paced=True) == 2 and counts() == {2}
    finally:
        threadpool_limits(limits=max(before), user_api="blas")
