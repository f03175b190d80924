"""Optimizer updates split over two cores give the one-piece result to the bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trainer import halves
from trainer.mlp import MLP
from trainer.optim import make_optimizer


def test_halves_cover_the_range_once_and_use_a_second_thread() -> None:
    seen: list[tuple[int, int, str]] = []
    helper = halves.Halves()
    for n in (1000, 4097):
        seen.clear()
        helper.run(lambda lo, hi: seen.append((lo, hi, threading.current_thread().name)), n)
        spans = sorted((lo, hi) for lo, hi, _ in seen)
        assert spans[0][0] == 0 and spans[0][1] == spans[1][0] and spans[1][1] == n
        assert spans[0][1] % 64 == 0 and abs(spans[0][1] - n / 2) <= 64
        threads = {name for *_, name in seen}
        assert threading.current_thread().name in threads and "halves" in threads


def test_an_error_in_the_helper_reaches_the_caller_and_the_helper_goes_on() -> None:
    helper = halves.Halves()

    def upper_half_fails(lo: int, hi: int) -> None:
        if lo > 0:
            raise ValueError(f"bad slice {lo}")

    with pytest.raises(ValueError, match="bad slice 512"):
        helper.run(upper_half_fails, 1024)
    done: list[int] = []
    helper.run(lambda lo, hi: done.append(hi - lo), 1024)
    assert sorted(done) == [512, 512]


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_split_update_equals_whole_update(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for split in (True, False):
        monkeypatch.setattr(halves, "worth_splitting", lambda n, split=split: split)
        model = MLP([300, 200, 10], "relu", np.random.default_rng(1))  # 62,210 parameters
        optimizer = make_optimizer(name, model.params, lr=0.01, weight_decay=0.01)
        grads_rng = np.random.default_rng(2)
        for _ in range(3):
            grads = [grads_rng.standard_normal(p.shape).astype(np.float32) for p in model.params]
            optimizer.step(grads)
        results.append(model.params)
    initial = MLP([300, 200, 10], "relu", np.random.default_rng(1)).params
    assert not np.array_equal(results[0][0], initial[0])  # the steps did move the weights
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
