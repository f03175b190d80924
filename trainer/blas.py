"""``c = beta * c + alpha * a.T @ b`` in one BLAS call, where NumPy needs two passes more.

A dense layer's weight gradient is ``inputs.T @ delta``. NumPy can only write that product to
an array, which SGD then reads back to update the weights: for the 784x1000 first layer that
is 3 MB written and read again every step, as long as the product itself takes at batch 16.
BLAS's ``sgemm`` accumulates into its output (``beta``), so the update happens inside the
product. NumPy's wheels bundle OpenBLAS with its CBLAS interface, and that is the library used
here; where it cannot be found (NumPy built against another BLAS), the NumPy expression gives
the same result at the old speed.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _bundled_sgemm() -> Callable[..., None] | None:
    """``cblas_sgemm`` from the OpenBLAS inside NumPy's wheel, if this NumPy has one."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("libscipy_openblas*.so*")):
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        for name, index in (
            ("scipy_cblas_sgemm64_", ctypes.c_int64),
            ("cblas_sgemm", ctypes.c_int),
        ):
            function = getattr(library, name, None)
            if function is None:
                continue
            int_ = ctypes.c_int
            pointer, real = ctypes.c_void_p, ctypes.c_float
            function.argtypes = [int_, int_, int_, index, index, index, real, pointer, index]
            function.argtypes += [pointer, index, real, pointer, index]
            function.restype = None
            return function
    log.debug("no bundled OpenBLAS found; weight updates use plain NumPy")
    return None


_SGEMM = _bundled_sgemm()


@dataclass(frozen=True)
class Product:
    """The gradient ``a.T @ b``, left unevaluated so an optimizer can fuse it into its update."""

    a: np.ndarray
    b: np.ndarray

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        product = self.a.T @ self.b
        return product if dtype is None else product.astype(dtype)


def fused() -> bool:
    """Whether :func:`add_product` runs as one BLAS call here."""
    return _SGEMM is not None


def add_product(
    c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float = 1.0
) -> None:
    """``c = beta * c + alpha * (a.T @ b)``, in place; ``a`` is ``[k, m]``, ``b`` ``[k, n]``."""
    k, m = a.shape
    n = b.shape[1]
    if (
        _SGEMM is None
        or c.shape != (m, n)
        or b.shape[0] != k
        or not all(x.dtype == np.float32 and x.flags.c_contiguous for x in (a, b, c))
    ):
        if beta != 1.0:
            c *= beta
        c += np.float32(alpha) * (a.T @ b)
        return
    _SGEMM(
        _ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, a.ctypes.data, m, b.ctypes.data, n,
        beta, c.ctypes.data, n,
    )  # fmt: skip
