"""How every program treats SIGTERM and Ctrl-C: one shutdown path, and none mid-close."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C so every program shuts down through the same path, and make
    Ctrl-C stop it even when it was started with SIGINT ignored (as a shell starts a
    background job), where Python would otherwise leave it ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while files are being closed: a second, impatient Ctrl-C
    must not leave a recording without its index. Main thread only (Python's rule)."""
    names = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(name, signal.SIG_IGN) for name in names]
    try:
        yield
    finally:
        for name, handler in zip(names, previous, strict=True):
            signal.signal(name, handler)
