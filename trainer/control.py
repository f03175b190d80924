"""A presenter's commands applied between training steps: :class:`RunControl` with a pace and
a tuning.

The rules are the ones every publisher obeys (:mod:`broker.clients.run_control`); a trainer
adds that Pace changes its :class:`~trainer.loop.Pacer` and Set its
:class:`~trainer.tuning.Tuning`, and that it announces each state with its pace, and each
change of tuning, through its reporter.
"""

from __future__ import annotations

import logging
from typing import Protocol

from broker.clients.run_control import CommandSource, RunControl
from protocol import ControlCommand
from trainer.tuning import Tuned, Tuning

log = logging.getLogger("trainer")


class Pace(Protocol):
    rate: float | None


class StatusSink(Protocol):
    def status(
        self, step: int, state: str, steps_per_second: float | None = None, message: str = ""
    ) -> None: ...

    def tuned(self, step: int, change: Tuned) -> None: ...


class Controls(RunControl):
    def __init__(
        self,
        source: CommandSource,
        pacer: Pace,
        announce: StatusSink | None = None,
        *,
        tuning: Tuning | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.pacer = pacer
        self.tuning = tuning
        self.sink = announce
        super().__init__(
            source,
            self._announce,
            on_pace=self._set_pace,
            on_set=self._tune if tuning is not None else None,
            poll_interval=poll_interval,
            logger=log,
        )

    def _set_pace(self, rate: float | None) -> None:
        self.pacer.rate = rate

    def _tune(self, command: ControlCommand, step: int) -> None:
        assert self.tuning is not None
        change = self.tuning.apply(command)
        if change is None:
            log.info("tuning unchanged: lr %g", self.tuning.learning_rate)
            return
        momentum = "" if change.momentum is None else f", momentum {change.momentum:g}"
        log.info("from step %d on: lr %g%s", step + 1, change.learning_rate, momentum)
        if self.sink is not None:
            self.sink.tuned(step, change)

    def _announce(self, step: int, state: str, message: str) -> None:
        if self.sink is not None:
            self.sink.status(step, state, self.pacer.rate, message)
