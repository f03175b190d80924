"""Fused BLAS updates: ``c = beta * c + alpha * a.T @ b`` and ``y = beta * y + alpha * x``.

A dense layer's weight gradient is ``inputs.T @ delta``. NumPy can only write that product to
an array, which SGD then reads back to update the weights: for the 784x1000 first layer that
is 3 MB written and read again every step, as long as the product itself takes at batch 16.
BLAS's ``sgemm`` accumulates into its output (``beta``), so the update happens inside the
product. NumPy's wheels bundle OpenBLAS with its CBLAS interface, and that is the library used
here; where it cannot be found (NumPy built against another BLAS), the NumPy expression gives
the same result at the old speed. Optimizers use ``saxpby`` the same way: a moment estimate's
decay-and-add, or a scaled step with weight decay folded in, is one pass instead of two or three.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def limit_threads(requested: int | None, paced: bool) -> int | None:
    """Set BLAS's thread count for this process (threadpoolctl, which knows every BLAS's own
    call for it); returns the count set, or None where BLAS keeps its own.

    A paced run gets one thread unless ``requested`` says otherwise: its steps are short and
    far apart, and OpenBLAS's worker threads spin between calls for a while before they
    sleep, so at 40 steps/s a second thread kept a whole core busy doing nothing (1.13 cores
    for the trainer), the core a presenter's laptop needs for the viewer and the browser.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    count = requested if requested is not None else (1 if paced else None)
    if count is not None:
        threadpool_limits(limits=count, user_api="blas")
        log.debug("BLAS threads: %d", count)
    return count


_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


NUMPY_LIBS = Path(np.__file__).resolve().parent.parent / "numpy.libs"
"""Where NumPy's Linux wheels put the libraries they bundle (auditwheel's layout)."""


def bundled_openblas(libs: Path = NUMPY_LIBS) -> ctypes.CDLL | None:
    """The OpenBLAS inside NumPy's wheel in ``libs``, or None (another build of NumPy, another
    platform): then every function here computes the same with NumPy, at NumPy's speed."""
    for path in sorted(libs.glob("libscipy_openblas*.so*")):
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    log.debug("no bundled OpenBLAS found; weight updates use plain NumPy")
    return None


def _function(name: str, *argtypes: type) -> Callable[..., None] | None:
    """CBLAS routine ``cblas_<name>`` (64-bit integers as scipy-openblas names it, or 32-bit).

    In ``argtypes`` ``int`` stands for the library's integer type.
    """
    if _OPENBLAS is None:
        return None
    for symbol, index in (
        (f"scipy_cblas_{name}64_", ctypes.c_int64),
        (f"cblas_{name}", ctypes.c_int),
    ):
        function = getattr(_OPENBLAS, symbol, None)
        if function is not None:
            function.argtypes = [index if t is int else t for t in argtypes]
            function.restype = None
            return function
    return None


_OPENBLAS = bundled_openblas()
_int, _pointer, _real = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
# sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
_SGEMM = _function(
    "sgemm", _int, _int, _int, int, int, int, _real, _pointer, int, _pointer, int, _real,
    _pointer, int,
)  # fmt: skip
# saxpby(n, alpha, x, incx, beta, y, incy): y = alpha * x + beta * y
_SAXPBY = _function("saxpby", int, _real, _pointer, int, _real, _pointer, int)
# saxpy(n, alpha, x, incx, y, incy): y += alpha * x; OpenBLAS splits it across its threads
_SAXPY = _function("saxpy", int, _real, _pointer, int, _pointer, int)


def _float32_rows(*arrays: np.ndarray) -> bool:
    """Whether BLAS can take every one of ``arrays`` as it is: float32, C-contiguous."""
    return all(x.dtype == np.float32 and x.flags.c_contiguous for x in arrays)


def _address(x: np.ndarray) -> object:
    """``x``'s first element as a pointer argument.

    ``x.ctypes.data`` builds a helper object and costs a microsecond; a training step passes a
    dozen pointers, so a writable array (every buffer the step writes, and most it reads) is
    passed as a reference to a ctypes view of its buffer instead, a few times cheaper.
    """
    try:
        return ctypes.byref(ctypes.c_char.from_buffer(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # read-only or empty
        return x.ctypes.data


@dataclass(frozen=True)
class Product:
    """The gradient ``alpha * a.T @ b``, left unevaluated so an optimizer can fuse it into its
    update."""

    a: np.ndarray
    b: np.ndarray
    alpha: float = 1.0

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        product = self.a.T @ self.b
        if self.alpha != 1.0:
            product *= self.alpha
        return product if dtype is None else product.astype(dtype)


def fused() -> bool:
    """Whether :func:`add_product` runs as one BLAS call here."""
    return _SGEMM is not None


def add_product(
    c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float = 1.0
) -> None:
    """``c = beta * c + alpha * (a.T @ b)``, in place; ``a`` is ``[k, m]``, ``b`` ``[k, n]``.

    With ``beta`` 0 what ``c`` held is not read, so it may be uninitialised.
    """
    k, m = a.shape
    n = b.shape[1]
    if _SGEMM is None or c.shape != (m, n) or b.shape[0] != k or not _float32_rows(a, b, c):
        _numpy_update(c, a.T, b, alpha, beta)
        return
    _SGEMM(
        _ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, _address(a), m, _address(b), n,
        beta, _address(c), n,
    )  # fmt: skip


def scale_add(y: np.ndarray, x: np.ndarray, alpha: float, beta: float = 1.0) -> None:
    """``y = beta * y + alpha * x``, in place, in one pass (``saxpby``) where NumPy needs two.

    Optimizers are a chain of such updates over every parameter; each pass saved is one fewer
    trip through memory for arrays too big for the core's cache.
    """
    if _SAXPBY is None or x.shape != y.shape or not _float32_rows(x, y):
        if beta != 1.0:
            y *= beta
        y += alpha * x
        return
    if beta == 1.0 and _SAXPY is not None:  # the common case, on all of BLAS's threads
        _SAXPY(y.size, alpha, _address(x), 1, _address(y), 1)
        return
    _SAXPBY(y.size, alpha, _address(x), 1, beta, _address(y), 1)


def add_matmul(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float = 1.0) -> None:
    """``c += alpha * (a @ b)`` in place: a layer's bias, put in ``c`` first, rides on its
    product, and so does a scale on its input (``alpha``)."""
    m, k = a.shape
    n = b.shape[1]
    if _SGEMM is None or c.shape != (m, n) or b.shape[0] != k or not _float32_rows(a, b, c):
        _numpy_update(c, a, b, alpha)
        return
    _SGEMM(
        _ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, alpha, _address(a), k, _address(b), n,
        1.0, _address(c), n,
    )  # fmt: skip


def _numpy_update(
    c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float = 1.0
) -> None:
    """``c = beta * c + alpha * (a @ b)`` as NumPy computes it: where BLAS cannot be called."""
    product = a @ b
    if alpha != 1.0:
        product *= alpha
    if beta == 0.0:
        c[...] = product
        return
    if beta != 1.0:
        c *= beta
    c += product
