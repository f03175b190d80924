"""What the forwarder hands every accepted message to besides its subscribers: a tap.

The broker's recording (:class:`broker.recording.recorder.RunRecorder`) is one; the forwarder
knows it only through these calls, so recording can change without touching forwarding.
Every call is made on the forwarding thread and must never raise; none but :meth:`Tap.close`,
at the end, may wait.
"""

from __future__ import annotations

from typing import Any, Protocol

from protocol import Envelope


class Tap(Protocol):
    def submit(self, message: Envelope, frames: list[bytes]) -> None:
        """Take one validated message (``frames``: its wire form, immutable)."""

    def tick(self) -> float:
        """Do what is due; return the longest the forwarder may wait before the next tick."""

    def stats(self) -> dict[str, Any]:
        """Figures for ``mnist-live status``."""

    def close(self) -> None:
        """Finish: everything submitted is handled (or counted as lost) when this returns."""
