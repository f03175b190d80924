"""IDX files written by the test itself: good ones load, each kind of damage is named."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_idx_dir, write_idx
from trainer.datasets import load_dataset, load_idx_directory
from trainer.idx import IMAGES_MAGIC, LABELS_MAGIC, DatasetError, read_idx


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_directory_of_idx_files_loads(tmp_path: Path, gz: bool) -> None:
    dataset = load_dataset(str(make_idx_dir(tmp_path / "digits", gz=gz)))
    assert dataset.train_images.shape == (30, 28, 28)
    assert dataset.test_labels.shape == (10,)
    assert dataset.train_images.dtype == np.uint8
    assert not dataset.synthetic
    assert dataset.class_names[3] == "3"


def test_fashion_directory_gets_fashion_class_names(tmp_path: Path) -> None:
    dataset = load_idx_directory(make_idx_dir(tmp_path / "fashion-mnist"))
    assert dataset.class_names[0] == "T-shirt/top"


def test_roundtrip_preserves_pixels(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz", IMAGES_MAGIC), array)


def _images_file(tmp_path: Path, header: bytes, body: bytes, gz: bool = False) -> Path:
    path = tmp_path / "train-images-idx3-ubyte"
    data = header + body
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        (struct.pack(">IIII", 2049, 1, 28, 28), bytes(784), "bad magic number 2049"),
        (struct.pack(">IIII", 2051, 2, 28, 28), bytes(784), "truncated or padded"),
        (struct.pack(">IIII", 2051, 1, 28, 28), bytes(900), "truncated or padded"),
        (struct.pack(">IIII", 2051, 1, 32, 32), bytes(1024), "expected 28x28"),
        (struct.pack(">II", 2051, 1), b"", "header truncated"),
        (b"\x00", b"", "too short"),
    ],
)
def test_corrupt_file_errors_name_the_file_and_problem(tmp_path, header, body, expected) -> None:
    path = _images_file(tmp_path, header, body)
    with pytest.raises(DatasetError, match=expected) as caught:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(caught.value)


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(struct.pack(">II", LABELS_MAGIC, 100) + bytes(100))[:-20])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path, LABELS_MAGIC)


def test_image_and_label_counts_must_match(tmp_path: Path) -> None:
    directory = make_idx_dir(tmp_path / "d")
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DatasetError, match="29 labels but 30 images") as caught:
        load_idx_directory(directory)
    assert str(directory / "train-labels-idx1-ubyte.gz") in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    directory = make_idx_dir(tmp_path / "d")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        load_idx_directory(directory)


def test_unknown_dataset_name_says_what_is_accepted() -> None:
    with pytest.raises(DatasetError, match="does not exist; give 'auto', 'synthetic', 'mnist'"):
        load_dataset("/no/such/place")


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    packed = bytearray(gzip.compress(struct.pack(">II", LABELS_MAGIC, 100) + bytes(100)))
    packed[12:20] = b"\xff" * 8  # inside the deflate stream
    path.write_bytes(bytes(packed))
    with pytest.raises(DatasetError, match="corrupt gzip data") as caught:
        read_idx(path, LABELS_MAGIC)
    assert str(path) in str(caught.value)


def test_labels_beyond_the_classes_are_named(tmp_path: Path) -> None:
    directory = make_idx_dir(tmp_path / "d")
    labels = np.zeros(10, dtype=np.uint8)
    labels[3] = 10
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetError, match="label 10 is beyond the 10 classes") as caught:
        load_idx_directory(directory)
    assert str(directory / "t10k-labels-idx1-ubyte.gz") in str(caught.value)


def test_labels_file_with_image_dimensions_is_refused(tmp_path: Path) -> None:
    directory = make_idx_dir(tmp_path / "d")
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros((30, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="bad magic number 2051 \\(expected 2049\\)"):
        load_idx_directory(directory)
