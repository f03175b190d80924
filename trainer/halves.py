"""Elementwise work over a long vector, done in two halves on two cores at once.

An optimizer's update is a chain of elementwise passes over every parameter, and NumPy runs
each pass on one core while the machine's other core waits for the next matrix product. NumPy's
ufuncs and the ctypes BLAS calls release the GIL, so a helper thread can run the same chain over
the upper half of the vector while the caller runs the lower half; each core then also keeps
its half of the arrays in its own cache. The arithmetic per element is unchanged, so the result
is the same as one pass over the whole vector.

Used only where BLAS itself may use two or more threads (so ``--threads 1`` in a benchmark
means one core throughout) and for vectors long enough to pay for the hand-over (~10 us).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from trainer import blas

MIN_LENGTH = 32_768
"""Shorter vectors are updated in one piece: the hand-over would cost more than it saves."""

_ALIGN = 64  # the cut falls on a cache-line (and SIMD-width) boundary


class Halves:
    """One helper thread that takes the upper half of each piece of work it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._job: tuple[Callable[[int, int], None], int, int] | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def run(self, work: Callable[[int, int], None], n: int) -> None:
        """``work(lo, hi)`` for the two halves of ``range(n)``, the upper one on the helper."""
        cut = n // 2 // _ALIGN * _ALIGN
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="halves", daemon=True)
                self._thread.start()
            self._job = (work, cut, n)
            self._go.release()
            try:
                work(0, cut)
            finally:
                self._done.acquire()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            assert self._job is not None
            work, lo, hi = self._job
            try:
                work(lo, hi)
            except BaseException as error:  # handed to the caller, who raises it
                self._error = error
            finally:
                self._done.release()

    def _forget_thread(self) -> None:
        """A forked child has no helper thread; it starts its own when first needed."""
        self.__init__()  # type: ignore[misc]


_HALVES = Halves()
os.register_at_fork(after_in_child=_HALVES._forget_thread)


def worth_splitting(n: int) -> bool:
    """Whether an elementwise pass over ``n`` elements should run as two halves."""
    return n >= MIN_LENGTH and blas.threads() >= 2


def run(work: Callable[[int, int], None], n: int) -> None:
    """``work(lo, hi)`` over ``range(n)``: in two halves on two cores when that pays, else whole."""
    if worth_splitting(n):
        _HALVES.run(work, n)
    else:
        work(0, n)
