"""Every way to name a dataset resolves to the right files, and damaged ones are named.

The files are written by the tests themselves (Keras-style .npz, a Debian-style system
directory, a per-user cache), except the last tests, which read the real shared data.
"""

from __future__ import annotations

import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_idx_dir, shared_dataset, write_idx
from trainer.datasets import (
    DIGIT_NAMES,
    FASHION_NAMES,
    load_dataset,
    load_idx_directory,
    load_npz,
    split_validation,
)
from trainer.idx import DatasetError


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty per-user cache and an empty system data directory, both under tmp_path."""
    cache, system = tmp_path / "cache", tmp_path / "system"
    cache.mkdir()
    system.mkdir()
    monkeypatch.setenv("MNIST_LIVE_CACHE", str(cache))
    monkeypatch.setenv("MNIST_LIVE_SYSTEM_DATA", str(system))
    return cache, system


def keras_arrays(n_train: int = 40, n_test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def test_keras_npz_loads(tmp_path: Path) -> None:
    arrays = keras_arrays()
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    dataset = load_dataset(str(tmp_path / "mnist.npz"))
    np.testing.assert_array_equal(dataset.train_images, arrays["x_train"])
    np.testing.assert_array_equal(dataset.test_labels, arrays["y_test"])
    assert dataset.name == "mnist" and dataset.class_names == DIGIT_NAMES
    assert not dataset.synthetic
    assert dataset.source == str(tmp_path / "mnist.npz")


def test_npz_with_flat_int64_images_and_fashion_name(tmp_path: Path) -> None:
    arrays = keras_arrays()
    flat = {**arrays, "x_train": arrays["x_train"].reshape(40, 784).astype(np.int64)}
    np.savez(tmp_path / "fashion_mnist.npz", **flat)
    dataset = load_npz(tmp_path / "fashion_mnist.npz")
    assert dataset.train_images.shape == (40, 28, 28) and dataset.train_images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.train_images, arrays["x_train"])
    assert dataset.class_names == FASHION_NAMES


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"y_train": np.zeros(39, np.uint8)}, r"\(y_train\): 39 labels but 40 images"),
        ({"x_test": np.zeros((12, 32, 32), np.uint8)}, r"\(x_test\): images have shape"),
        ({"y_test": np.zeros((12, 1), np.uint8)}, r"\(y_test\): labels have shape"),
        ({"x_train": np.zeros((40, 28, 28), np.float32)}, r"\(x_train\): dtype float32"),
        ({"x_train": np.full((40, 28, 28), 300, np.int32)}, r"\(x_train\): values outside"),
        ({"y_train": np.full(40, 10, np.uint8)}, r"\(y_train\): label 10 is beyond"),
        ({"y_test": np.array([None] * 12, dtype=object)}, r"refused .*pickle"),
    ],
    ids=["counts", "dims", "label-dims", "float", "range", "classes", "object-array"],
)
def test_damaged_npz_is_named(tmp_path: Path, change: dict, expected: str) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, **{**keras_arrays(), **change})
    with pytest.raises(DatasetError, match=expected) as caught:
        load_dataset(str(path))
    assert str(path) in str(caught.value)


def test_npz_missing_arrays_or_not_a_zip(tmp_path: Path) -> None:
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="missing y_train, x_test, y_test"):
        load_dataset(str(partial))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DatasetError, match=r"not a readable \.npz file") as caught:
        load_dataset(str(garbage))
    assert str(garbage) in str(caught.value)


def test_debian_fashion_directory_is_found(places: tuple[Path, Path]) -> None:
    _, system = places
    make_idx_dir(system / "fashion-mnist", n_train=20, n_test=5)
    dataset = load_dataset("fashion-mnist")
    assert dataset.name == "fashion-mnist" and dataset.class_names == FASHION_NAMES
    assert dataset.train_images.shape == (20, 28, 28)
    assert dataset.source == str(system / "fashion-mnist")


def test_cache_comes_before_the_system_directory(places: tuple[Path, Path]) -> None:
    cache, system = places
    make_idx_dir(system / "fashion-mnist", n_train=20, n_test=5)
    make_idx_dir(cache / "fashion-mnist", n_train=25, n_test=5, gz=False)
    dataset = load_dataset("fashion-mnist")
    assert len(dataset.train_labels) == 25
    assert dataset.source == str(cache / "fashion-mnist")


def test_named_dataset_not_cached_says_how_to_get_it(places: tuple[Path, Path]) -> None:
    with pytest.raises(DatasetError, match="run 'mnist-live data fetch mnist'") as caught:
        load_dataset("mnist")
    assert "\n" not in str(caught.value)


def test_auto_uses_cached_mnist(places: tuple[Path, Path], caplog) -> None:
    cache, _ = places
    make_idx_dir(cache / "mnist", n_train=30, n_test=10)
    with caplog.at_level("INFO"):
        dataset = load_dataset("auto")
    assert dataset.name == "mnist" and not dataset.synthetic
    assert dataset.train_images.shape == (30, 28, 28)
    assert dataset.source == str(cache / "mnist")
    assert "auto: using MNIST from" in caplog.text


def test_auto_without_mnist_uses_synthetic_digits(places: tuple[Path, Path], caplog) -> None:
    with caplog.at_level("INFO"):
        dataset = load_dataset("auto", seed=4, synthetic_train=50, synthetic_test=20)
    assert dataset.synthetic and dataset.name == "synthetic"
    assert dataset.source == "generated (seed 4)"
    assert len(dataset.train_labels) == 50 and len(dataset.test_labels) == 20
    assert "using the generated synthetic digits" in caplog.text


def test_synthetic_sizes_and_seed() -> None:
    a = load_dataset("synthetic", seed=3, synthetic_train=30, synthetic_test=7)
    b = load_dataset("synthetic", seed=3, synthetic_train=30, synthetic_test=7)
    c = load_dataset("synthetic", seed=4, synthetic_train=30, synthetic_test=7)
    assert a.train_images.shape == (30, 28, 28) and a.test_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.train_images, c.train_images)
    with pytest.raises(DatasetError, match="at least one image"):
        load_dataset("synthetic", synthetic_test=0)


def _indexed_directory(tmp_path: Path, n_train: int = 100) -> Path:
    """A dataset whose training image i holds the number i in its first two pixels."""
    directory = make_idx_dir(tmp_path / "indexed", n_train=n_train, n_test=10)
    dataset = load_idx_directory(directory)
    images = dataset.train_images.copy()
    images[:, 0, 0], images[:, 0, 1] = np.arange(n_train) // 256, np.arange(n_train) % 256
    write_idx(directory / "train-images-idx3-ubyte.gz", images)
    return directory


def _index(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0].astype(int) * 256 + images[:, 0, 1]


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    spec = str(_indexed_directory(tmp_path))
    a = load_dataset(spec, seed=1, validation=20)
    b = load_dataset(spec, seed=1, validation=20)
    c = load_dataset(spec, seed=2, validation=20)
    assert len(a.train_labels) == 80 and len(a.validation_labels) == 20
    assert a.validation_images.shape == (20, 28, 28)
    held, kept = _index(a.validation_images), _index(a.train_images)
    np.testing.assert_array_equal(held, _index(b.validation_images))
    assert not np.array_equal(held, _index(c.validation_images))
    assert sorted([*held, *kept]) == list(range(100))  # every example exactly once
    assert np.all(np.diff(kept) > 0)  # the rest keep their order
    full = load_dataset(spec)
    np.testing.assert_array_equal(a.train_labels, full.train_labels[kept])
    np.testing.assert_array_equal(a.validation_labels, full.train_labels[held])
    assert "/ 20 validation" in a.description


def test_validation_split_must_leave_training_data() -> None:
    dataset = load_dataset("synthetic", synthetic_train=10, synthetic_test=5)
    with pytest.raises(DatasetError, match="0 <= N < 10"):
        split_validation(dataset, 10, seed=0)
    with pytest.raises(DatasetError, match="0 <= N < 10"):
        load_dataset("synthetic", synthetic_train=10, synthetic_test=5, validation=-1)


def test_real_mnist_10k_loads() -> None:
    dataset = load_dataset(str(shared_dataset("mnist-10k")))
    assert dataset.train_images.shape == (8000, 28, 28)
    assert dataset.test_images.shape == (2000, 28, 28)
    assert dataset.class_names == DIGIT_NAMES and not dataset.synthetic
    held_out = split_validation(dataset, 1000, seed=0)
    assert held_out.train_images.shape == (7000, 28, 28)
    assert held_out.validation_images.shape == (1000, 28, 28)
    counts = np.bincount(dataset.test_labels, minlength=10)
    assert counts.tolist() == [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]


def test_real_fashion_mnist_as_a_system_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The shared folder has Debian's layout (``<root>/fashion-mnist/*.gz``)."""
    root = shared_dataset("fashion-mnist").parent
    monkeypatch.setenv("MNIST_LIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("MNIST_LIVE_SYSTEM_DATA", str(root))
    started = time.perf_counter()
    dataset = load_dataset("fashion-mnist")
    seconds = time.perf_counter() - started
    assert dataset.train_images.shape == (60_000, 28, 28)
    assert dataset.test_images.shape == (10_000, 28, 28)
    assert dataset.class_names == FASHION_NAMES and dataset.class_names[9] == "Ankle boot"
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    print(f"fashion-mnist loaded in {seconds:.2f} s")


def _npz_member(archive: zipfile.ZipFile, name: str, shape: tuple, fill_bytes: int) -> None:
    """An .npy member declaring ``shape`` (uint8), followed by ``fill_bytes`` zeros."""
    with archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(  # the magic string, then the header
            member, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )
        chunk = bytes(1 << 20)
        for start in range(0, fill_bytes, len(chunk)):
            member.write(chunk[: min(len(chunk), fill_bytes - start)])


@pytest.mark.parametrize(
    ("name", "shape", "fill", "complaint"),
    [
        ("x_train.npy", (10**9, 28, 28), 0, "would take over 512 MB"),  # far more than it holds
        ("x_train.npy", (800_000, 28, 28), 0, "would take over 512 MB"),
        ("x_train", (800_000, 28, 28), 0, "would take over 512 MB"),  # np.load finds it too
        ("x_train.npy", (10, 28, 28), 50 * 2**20, "where its header says"),  # a zip bomb
    ],
    ids=["declared-huge", "too-large", "without-suffix", "bomb"],
)
def test_an_npz_too_large_to_hold_is_refused_before_it_is_read(
    tmp_path: Path, name: str, shape: tuple, fill: int, complaint: str
) -> None:
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _npz_member(archive, name, shape, fill)
    assert path.stat().st_size < 2**20, "small on disk"
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=complaint):
            load_npz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"refused in {peak >> 20} MB, not after inflating it"
