"""The presenter's command to the trainers: the one message that travels upstream."""

from __future__ import annotations

import time
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.messages import MAX_LEARNING_RATE, Name

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

    command: Literal["start", "pause", "resume", "stop", "pace", "set"]
    run_id: Name = "*"
    steps_per_second: float | None = Field(
        default=None,
        ge=MIN_PACE,
        le=MAX_PACE,
        description="for 'pace': the new limit; null lifts it",
    )
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LEARNING_RATE,
        description="for 'set': the new base learning rate (a schedule scales it)",
    )
    momentum: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="for 'set': the new momentum (Adam's beta1), where the optimizer has one",
    )
    sent_at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _values_go_with_their_command(self) -> ControlCommand:
        tuning = self.learning_rate is not None or self.momentum is not None
        if self.command == "set" and not tuning:
            raise ValueError("'set' needs a learning_rate or a momentum")
        if self.command != "set" and tuning:
            raise ValueError("learning_rate and momentum go with the 'set' command only")
        if self.command != "pace" and self.steps_per_second is not None:
            raise ValueError("steps_per_second goes with the 'pace' command only")
        return self
