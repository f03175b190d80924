"""Checkpoints: written atomically, read without unpickling, checked against the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEED, blob_dataset
from trainer import checkpoint
from trainer.checkpoint import CheckpointError
from trainer.config import TrainConfig
from trainer.loop import build_model, train
from trainer.optim import make_optimizer

CONFIG = replace(SEED, hidden=(12,), optimizer="adam", learning_rate=1e-3, batch_size=40, epochs=2)


def _saved(tmp_path: Path, config: TrainConfig = CONFIG) -> Path:
    path = tmp_path / "run.npz"
    assert train(blob_dataset(), config, save=path).status == "completed"
    return path


def test_save_writes_plain_arrays_and_metadata(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"], "no temporary file left behind"
    with np.load(path, allow_pickle=False) as file:
        assert all(file[name].dtype != object for name in file.files)
        metadata = json.loads(str(file["metadata"]))
    assert metadata["step"] == 20 and metadata["epoch"] == 2 and metadata["dataset"] == "blobs"
    assert metadata["layer_sizes"] == [784, 12, 10] and metadata["config"]["optimizer"] == "adam"
    loaded = checkpoint.load(path)
    assert [p.shape for p in loaded.params] == [(784, 12), (12,), (12, 10), (10,)]
    assert int(loaded.optimizer_state["steps"]) == 20


def test_save_replaces_atomically_and_cleans_up_on_failure(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    before = path.read_bytes()
    model = build_model(CONFIG, blob_dataset())
    optimizer = make_optimizer("adam", model.params, 1e-3)
    with pytest.raises(TypeError):  # a configuration JSON cannot hold fails mid-save
        checkpoint.save(path, model, optimizer, {"bad": object()}, 1, 0, "blobs")
    assert path.read_bytes() == before, "the old checkpoint survives a failed save"
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_restore_rejects_a_different_architecture(tmp_path: Path) -> None:
    saved = checkpoint.load(_saved(tmp_path))
    other = TrainConfig(**{**CONFIG.__dict__, "hidden": (13,)})
    with pytest.raises(CheckpointError, match=r"784-12-10 relu model but this run is 784-13-10"):
        train(blob_dataset(), other, resume=saved)
    with pytest.raises(CheckpointError, match="same batch_size"):
        train(blob_dataset(), TrainConfig(**{**CONFIG.__dict__, "batch_size": 8}), resume=saved)


def test_load_refuses_pickles_and_garbage(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, metadata=np.array([{"format": "x"}], dtype=object))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(200))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    for path in (pickled, garbage, foreign, tmp_path / "absent.npz"):
        with pytest.raises(CheckpointError) as caught:
            checkpoint.load(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_cli_resume_continues_and_rejects_mismatch(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "protocol.cli", "train", "--dataset", "synthetic"]
    base += ["--synthetic-size", "300,100", "--wait-for-broker", "0", "--quiet"]
    base += ["--connect", "tcp://127.0.0.1:9", "--hidden", "16", "--batch-size", "50"]
    model = tmp_path / "m.npz"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    first = run("--epochs", "1", "--save", str(model))
    assert first.returncode == 0, first.stderr
    assert checkpoint.load(model).step == 6
    summary = tmp_path / "s.json"
    second = run("--epochs", "3", "--resume", str(model), "--save", str(model), "--summary",
                 str(summary))  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert json.loads(summary.read_text())["steps"] == 18
    assert checkpoint.load(model).step == 18
    assert "training images" not in second.stderr, "the same dataset: no warning"
    assert checkpoint.load(model).train_size == 300
    bigger = run("--epochs", "4", "--resume", str(model), "--synthetic-size", "600,100")
    assert bigger.returncode == 0, bigger.stderr
    (warning,) = [line for line in bigger.stderr.splitlines() if "training images" in line]
    assert "trained on 300 training images, this dataset has 600" in warning
    assert "an epoch is now 12 steps, not 6" in warning
    mismatch = run("--hidden", "17", "--resume", str(model))
    assert mismatch.returncode == 2
    assert mismatch.stderr.strip().splitlines()[-1].startswith("mnist-live train: error: ")
    assert "784-16-10 relu model but this run is 784-17-10" in mismatch.stderr
