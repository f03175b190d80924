"""The hyperparameters a presenter may change while a run trains: learning rate and momentum.

Like the :class:`~trainer.loop.Pacer`, a :class:`Tuning` is shared by the loop, which reads it
at every step, and the presenter's commands (:mod:`trainer.control`), which change it between
two steps; so a change applies from the next step on. The learning rate here is the *base*
rate: a schedule goes on scaling it, so a cosine run tuned to 0.01 halfway continues its
cosine from 0.01 x the schedule's factor at that step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protocol import ControlCommand
from trainer.config import TrainConfig

log = logging.getLogger("trainer")


@dataclass
class Tuned:
    """One change as the room is told it (the ``tuned`` message's fields)."""

    learning_rate: float
    momentum: float | None
    previous_learning_rate: float
    previous_momentum: float | None


@dataclass
class Tuning:
    """The base learning rate and the momentum now; ``momentum`` None: the optimizer has none."""

    learning_rate: float
    momentum: float | None

    @classmethod
    def of(cls, config: TrainConfig) -> Tuning:
        return cls(config.learning_rate, config.momentum if config.optimizer != "sgd" else None)

    def apply(self, command: ControlCommand) -> Tuned | None:
        """Take the command's new values; what changed, or None when nothing did (a momentum
        for an optimizer without one is refused in the log, the learning rate still taken)."""
        before = (self.learning_rate, self.momentum)
        if command.learning_rate is not None:
            self.learning_rate = command.learning_rate
        if command.momentum is not None:
            if self.momentum is None:
                log.warning("this run's optimizer (sgd) has no momentum; --momentum ignored")
            else:
                self.momentum = command.momentum
        if (self.learning_rate, self.momentum) == before:
            return None
        return Tuned(self.learning_rate, self.momentum, *before)

    def restore(self, saved: dict[str, float | None]) -> Tuned | None:
        """Take the values a checkpoint kept (a resumed run goes on as it was tuned)."""
        command = ControlCommand(
            command="set", learning_rate=saved.get("learning_rate"), momentum=saved.get("momentum")
        )
        return self.apply(command)

    def saved(self) -> dict[str, float | None]:
        return {"learning_rate": self.learning_rate, "momentum": self.momentum}
