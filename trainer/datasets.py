"""Find, load and describe the data a run trains on.

A dataset is four uint8 arrays and the names of its classes. Where it came from (a directory
of IDX files, the generated synthetic digits) is resolved here once, so the training loop never
needs to know, and every run says honestly which one it used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.idx import IMAGES_MAGIC, LABELS_MAGIC, DatasetError, read_idx

log = logging.getLogger(__name__)

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", IMAGES_MAGIC),
    "train_labels": ("train-labels-idx1-ubyte", LABELS_MAGIC),
    "test_images": ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
    "test_labels": ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
}
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 10_000, 2_000


@dataclass(frozen=True)
class Dataset:
    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    synthetic: bool = False
    source: str = ""
    validation_images: np.ndarray = field(default_factory=lambda: np.empty((0, 28, 28), np.uint8))
    validation_labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))

    @property
    def description(self) -> str:
        kind = "SYNTHETIC generated digits" if self.synthetic else self.name
        return f"{kind} ({len(self.train_labels)} train / {len(self.test_labels)} test)"


def cache_dir() -> Path:
    """Per-user directory for downloaded datasets (``$MNIST_LIVE_CACHE`` overrides it)."""
    if override := os.environ.get("MNIST_LIVE_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-live"


def load_dataset(spec: str, seed: int = 0) -> Dataset:
    """Resolve ``spec`` (``auto``, ``synthetic`` or a directory of IDX files) to a dataset."""
    if spec == "synthetic":
        return synthetic_dataset(seed)
    if spec == "auto":
        cached = cache_dir() / "mnist"
        if _has_idx_files(cached):
            return load_idx_directory(cached, name="mnist")
        log.info("no MNIST in %s; using the generated synthetic digits", cached)
        return synthetic_dataset(seed)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_idx_directory(path)
    raise DatasetError(
        f"unknown dataset {spec!r}: give 'auto', 'synthetic' or a directory holding the four "
        "MNIST IDX files (train-images-idx3-ubyte[.gz] ...)"
    )


def synthetic_dataset(seed: int) -> Dataset:
    from trainer.synthetic import make_digits

    train_x, train_y = make_digits(SYNTHETIC_TRAIN, seed)
    test_x, test_y = make_digits(SYNTHETIC_TEST, seed + 1_000_003)
    return Dataset("synthetic", train_x, train_y, test_x, test_y, DIGIT_NAMES, synthetic=True)


def load_idx_directory(path: Path, name: str | None = None) -> Dataset:
    """Read the four MNIST-format files from ``path``, raw or gzipped."""
    arrays = {key: read_idx(_find(path, stem), magic) for key, (stem, magic) in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DatasetError(
                f"{path}: {split} set has {len(images)} images but {len(labels)} labels"
            )
    name = name or path.resolve().name
    fashion = "fashion" in name.lower()
    class_names = FASHION_NAMES if fashion else DIGIT_NAMES
    if max(arrays["train_labels"].max(), arrays["test_labels"].max()) >= len(class_names):
        raise DatasetError(f"{path}: labels go beyond the {len(class_names)} known classes")
    return Dataset(
        name,
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        class_names,
    )


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{directory}: missing {stem}[.gz]; a dataset directory needs all four")


def _has_idx_files(directory: Path) -> bool:
    return all(
        (directory / f"{stem}.gz").is_file() or (directory / stem).is_file()
        for stem, _ in IDX_FILES.values()
    )
