"""The presenter's command to the trainers: the one message that travels upstream."""

from __future__ import annotations

import time
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Name

MIN_PACE: Final = 0.1
"""Slowest pace a command may set (steps/s): slower shows nothing moving in a talk."""
MAX_PACE: Final = 100_000.0


class ControlCommand(BaseModel):
    """A presenter's command to a trainer, travelling upstream (viewer -> broker -> trainer).

    On the wire it is a single frame of UTF-8 JSON (it starts with ``{``, so ZeroMQ's XSUB and
    XPUB sockets pass it through instead of reading it as a subscription). ``run_id`` ``*``
    addresses every trainer connected to the broker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Literal["start", "pause", "resume", "stop", "pace"]
    run_id: Name = "*"
    steps_per_second: float | None = Field(
        default=None,
        ge=MIN_PACE,
        le=MAX_PACE,
        description="for 'pace': the new limit; null lifts it",
    )
    sent_at: float = Field(default_factory=time.time)
