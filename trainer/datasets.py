"""Find, load and describe the data a run trains on.

A dataset is four uint8 arrays and the names of its classes. Where it came from (the per-user
cache, Debian's dataset packages, a directory of IDX files, a Keras-style ``.npz``, the
generated synthetic digits) is resolved here once, so the training loop never needs to know,
and every run says honestly which one it used.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from trainer.idx import IMAGES_MAGIC, LABELS_MAGIC, DatasetError, check_array, read_idx

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
# Keras-style .npz names for the same four arrays.
NPZ_KEYS = {
    "train_images": "x_train",
    "train_labels": "y_train",
    "test_images": "x_test",
    "test_labels": "y_test",
}
KNOWN = ("mnist", "fashion-mnist")
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 10_000, 2_000
# Debian's dataset packages install here (dataset-fashion-mnist: fashion-mnist/*-ubyte.gz).
SYSTEM_DATA = Path("/usr/share/datasets")


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
        validation = (
            f" / {len(self.validation_labels)} validation" if len(self.validation_labels) else ""
        )
        return f"{kind} ({len(self.train_labels)} train{validation} / {len(self.test_labels)} test)"


def cache_dir() -> Path:
    """Per-user directory for downloaded datasets (``$MNIST_LIVE_CACHE`` overrides it)."""
    if override := os.environ.get("MNIST_LIVE_CACHE"):
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-live"


def system_data_dir() -> Path:
    """Where system packages put datasets (``$MNIST_LIVE_SYSTEM_DATA`` overrides it)."""
    return Path(os.environ.get("MNIST_LIVE_SYSTEM_DATA") or SYSTEM_DATA)


def places(name: str) -> tuple[Path, Path]:
    """Where a known dataset may be, in the order they are searched: the cache, then Debian's."""
    return cache_dir() / name, system_data_dir() / name


def find_named(name: str) -> Path | None:
    """The first of ``places(name)`` that holds all four files."""
    return next((directory for directory in places(name) if has_idx_files(directory)), None)


def load_dataset(
    spec: str = "auto",
    *,
    seed: int = 0,
    synthetic_train: int = SYNTHETIC_TRAIN,
    synthetic_test: int = SYNTHETIC_TEST,
    validation: int = 0,
    download: bool = False,
) -> Dataset:
    """Resolve ``spec`` to a dataset, then hold out ``validation`` training examples.

    ``spec`` is ``auto`` (cached MNIST, else synthetic), ``synthetic``, ``mnist`` or
    ``fashion-mnist`` (cached or found on the system; fetched first when ``download``), a
    directory of IDX files, or a Keras-style ``.npz`` file.
    """
    dataset = _resolve(spec, seed, synthetic_train, synthetic_test, download)
    return split_validation(dataset, validation, seed) if validation else dataset


def _resolve(spec: str, seed: int, n_train: int, n_test: int, download: bool) -> Dataset:
    if spec == "synthetic":
        return synthetic_dataset(seed, n_train, n_test)
    if spec == "auto":
        cached = cache_dir() / "mnist"
        if has_idx_files(cached):
            log.info("auto: using MNIST from %s", _display(cached))
            return load_idx_directory(cached, name="mnist")
        log.info("auto: no MNIST in %s; using the generated synthetic digits", _display(cached))
        return synthetic_dataset(seed, n_train, n_test)
    if spec in KNOWN:
        return _load_named(spec, download)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_idx_directory(path)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path)
    problem = "is not a .npz file" if path.is_file() else "does not exist"
    raise DatasetError(
        f"unknown dataset {spec!r}: {problem}; give 'auto', 'synthetic', 'mnist', "
        "'fashion-mnist', a directory holding the four MNIST IDX files "
        "(train-images-idx3-ubyte[.gz] ...) or a Keras-style .npz file"
    )


def _load_named(name: str, download: bool) -> Dataset:
    directory = find_named(name)
    if directory is None and download:
        from trainer.download import fetch

        directory = fetch(name)
    if directory is None:
        raise DatasetError(
            f"{name} is not downloaded (looked in {_display(cache_dir() / name)}): run "
            f"'mnist-live data fetch {name}' while online, or pass a directory of its four "
            "IDX files with --dataset"
        )
    log.info("%s: reading %s", name, _display(directory))
    return load_idx_directory(directory, name=name)


def synthetic_dataset(
    seed: int, n_train: int = SYNTHETIC_TRAIN, n_test: int = SYNTHETIC_TEST
) -> Dataset:
    """The generated digits; the test set comes from a seed no training set uses."""
    from trainer.synthetic import make_digits

    if n_train < 1 or n_test < 1:
        raise DatasetError(f"synthetic set needs at least one image each, got {n_train}/{n_test}")
    train_x, train_y = make_digits(n_train, seed)
    test_x, test_y = make_digits(n_test, seed + 1_000_003)
    return Dataset(
        "synthetic",
        train_x,
        train_y,
        test_x,
        test_y,
        DIGIT_NAMES,
        synthetic=True,
        source=f"generated (seed {seed})",
    )


def load_idx_directory(path: Path, name: str | None = None) -> Dataset:
    """Read the four MNIST-format files from ``path``, raw or gzipped."""
    path = Path(path)
    files = idx_files(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such directory")
    if missing := [f"{stem}[.gz]" for key, (stem, _) in IDX_FILES.items() if key not in files]:
        raise DatasetError(
            f"{path}: missing {', '.join(missing)}; a dataset directory needs all four"
        )
    arrays = {key: read_idx(files[key], magic) for key, (_, magic) in IDX_FILES.items()}
    where = {key: str(file) for key, file in files.items()}
    return _checked(name or path.resolve().name, path, arrays, where)


MAX_NPZ_BYTES = 512 * 2**20
"""Most the four arrays of an .npz may hold together: ten times Fashion-MNIST's 55 MB."""


def _npz_sizes_checked(path: Path) -> None:
    """Refuse an .npz whose arrays would be too large, before any is read: each member's
    .npy header says its shape and dtype (a zip bomb or a declared (10^9, 28, 28) is refused
    here, not after gigabytes are inflated), and the zip must not hold more than they say."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():  # every member: np.load finds "x" and "x.npy" alike
            key = info.filename.removesuffix(".npy")
            with archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
                header = stream.tell()
            if dtype.hasobject:
                raise DatasetError(
                    f"{path} ({key}): refused (Python objects need pickle, which stays off); "
                    "only plain numeric arrays load"
                )
            size = math.prod(shape) * dtype.itemsize
            total += size
            if total > MAX_NPZ_BYTES:
                raise DatasetError(
                    f"{path} ({key}): its arrays would take over {MAX_NPZ_BYTES >> 20} MB "
                    f"({key} declares shape {tuple(shape)}); not an MNIST-sized dataset"
                )
            if info.file_size > header + size:
                raise DatasetError(
                    f"{path} ({key}): holds {info.file_size} bytes where its header says "
                    f"{header + size}; a damaged or crafted file"
                )


def load_npz(path: Path, name: str | None = None) -> Dataset:
    """Read a Keras-style ``mnist.npz`` (x_train, y_train, x_test, y_test), never unpickling,
    in bounded memory (:func:`_npz_sizes_checked`)."""
    path = Path(path)
    try:
        _npz_sizes_checked(path)
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DatasetError(f"{path}: holds one array, not {', '.join(NPZ_KEYS.values())}")
        with loaded as npz:
            raw = {key: npz[npz_key] for key, npz_key in NPZ_KEYS.items() if npz_key in npz.files}
    except DatasetError:
        raise
    except ValueError as exc:  # object arrays need pickle, which stays off
        raise DatasetError(f"{path}: refused ({exc}); only plain numeric arrays load") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    if missing := [npz_key for key, npz_key in NPZ_KEYS.items() if key not in raw]:
        raise DatasetError(
            f"{path}: missing {', '.join(missing)}; a Keras-style .npz holds "
            f"{', '.join(NPZ_KEYS.values())}"
        )
    where = {key: f"{path} ({npz_key})" for key, npz_key in NPZ_KEYS.items()}
    arrays = {}
    for key, array in raw.items():
        if key.endswith("images") and array.ndim == 2 and array.shape[1] == 28 * 28:
            array = array.reshape(-1, 28, 28)  # some copies store each image as one row
        arrays[key] = check_array(where[key], array, IDX_FILES[key][1])
    return _checked(name or path.stem, path, arrays, where)


def _checked(
    name: str, path: Path, arrays: dict[str, np.ndarray], where: dict[str, str]
) -> Dataset:
    """Check what only the four arrays together can show, then build the dataset."""
    name = name[:100] or "dataset"  # the protocol bounds names
    class_names = FASHION_NAMES if "fashion" in name.lower() else DIGIT_NAMES
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DatasetError(
                f"{where[f'{split}_labels']}: {len(labels)} labels but "
                f"{len(images)} images in {where[f'{split}_images']}"
            )
        if len(labels) == 0:
            raise DatasetError(f"{where[f'{split}_images']}: the {split} set is empty")
        if labels.max() >= len(class_names):
            raise DatasetError(
                f"{where[f'{split}_labels']}: label {labels.max()} is beyond the "
                f"{len(class_names)} classes (0..{len(class_names) - 1})"
            )
    return Dataset(
        name,
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        class_names,
        source=_display(path),
    )


def split_validation(dataset: Dataset, count: int, seed: int) -> Dataset:
    """Hold out ``count`` training examples, chosen by a shuffle from ``seed``.

    The rest keep their original order, so a run with a validation split sees the same data as
    one without, less the held-out examples.
    """
    n = len(dataset.train_labels)
    if not 0 <= count < n:
        raise DatasetError(
            f"validation split of {count} needs 0 <= N < {n} (the training set's size)"
        )
    order = np.random.default_rng([seed, 0x5A11D]).permutation(n)
    held, kept = order[n - count :], np.sort(order[: n - count])
    return replace(
        dataset,
        train_images=dataset.train_images[kept],
        train_labels=dataset.train_labels[kept],
        validation_images=dataset.train_images[held],
        validation_labels=dataset.train_labels[held],
    )


def idx_files(directory: Path) -> dict[str, Path]:
    """Which of the four IDX files ``directory`` holds, by ``IDX_FILES`` key; gzip first."""
    found = {}
    for key, (stem, _) in IDX_FILES.items():
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                found[key] = candidate
                break
    return found


def has_idx_files(directory: Path) -> bool:
    return len(idx_files(directory)) == len(IDX_FILES)


def _display(path: Path) -> str:
    """The path as a person would type it: under the home directory it starts with ``~``."""
    path = Path(path).absolute()
    try:
        text = f"~/{path.relative_to(Path.home())}"
    except ValueError:
        text = str(path)
    return text if len(text) <= 500 else f"...{text[-497:]}"
