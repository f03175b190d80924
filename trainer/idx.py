"""Read MNIST's IDX files (raw or gzip) without trusting them.

The format is a big-endian header (two zero bytes, a type code, the number of dimensions, one
uint32 per dimension) followed by the data. MNIST images use magic 2051 (uint8, 3-D) and
labels 2049 (uint8, 1-D). Every check names the file, so a user with a truncated download
knows which one to fetch again.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_ITEMS = 10_000_000
MAX_FILE_BYTES = 256 * 2**20  # MNIST's largest file is 47 MB uncompressed


class DatasetError(ValueError):
    """A dataset file or directory that cannot be used; the message says which and why."""


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Return the array stored in an IDX file whose magic number must be ``expected_magic``."""
    path = Path(path)
    raw = _read_bounded(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise DatasetError(
            f"{path}: bad magic number {magic} (expected {expected_magic}); "
            "this is not an MNIST-format "
            f"{'image' if expected_magic == IMAGES_MAGIC else 'label'} file"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: header truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    _check_shape(str(path), shape, expected_magic)
    count = int(np.prod(shape))
    if len(raw) - header_size != count:
        raise DatasetError(
            f"{path}: truncated or padded: header promises {count} bytes of data, "
            f"file holds {len(raw) - header_size}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def check_array(where: str, array: np.ndarray, kind: int) -> np.ndarray:
    """``array`` as MNIST's uint8 images or labels (``kind`` is their IDX magic), or an error
    naming ``where``: the one definition of a valid array, whichever file format it came in."""
    _check_shape(where, array.shape, kind)
    if array.dtype != np.uint8:
        if array.dtype.kind not in "ui":
            raise DatasetError(f"{where}: dtype {array.dtype}, expected integers 0..255 (uint8)")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DatasetError(f"{where}: values outside 0..255")
    return array.astype(np.uint8, copy=False)


def _check_shape(where: str, shape: tuple[int, ...], kind: int) -> None:
    if kind == IMAGES_MAGIC and (len(shape) != 3 or shape[1:] != (28, 28)):
        raise DatasetError(
            f"{where}: images have shape {shape}, expected 28x28 images: (n, 28, 28)"
        )
    if kind == LABELS_MAGIC and len(shape) != 1:
        raise DatasetError(f"{where}: labels have shape {shape}, expected (n,)")
    if shape and shape[0] > _MAX_ITEMS:
        raise DatasetError(f"{where}: claims {shape[0]} items, more than any known dataset")


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic, at most MAX_FILE_BYTES."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DatasetError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MB; not an MNIST file")
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except EOFError:
        raise DatasetError(f"{path}: the gzip stream is truncated; download it again") from None
    except (OSError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: corrupt gzip data ({exc}); download it again") from None
    if len(data) > MAX_FILE_BYTES:
        raise DatasetError(f"{path}: unpacks to more than {MAX_FILE_BYTES >> 20} MB")
    return data
