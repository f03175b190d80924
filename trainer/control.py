"""A presenter's commands applied between training steps: :class:`RunControl` with a pace.

The rules are the ones every publisher obeys (:mod:`broker.clients.run_control`); a trainer
adds that Pace changes its :class:`~trainer.loop.Pacer`, and announces each state with that
pace through its reporter.
"""

from __future__ import annotations

import logging
from typing import Protocol

from broker.clients.run_control import CommandSource, RunControl


class Pace(Protocol):
    rate: float | None


class StatusSink(Protocol):
    def status(
        self, step: int, state: str, steps_per_second: float | None = None, message: str = ""
    ) -> None: ...


class Controls(RunControl):
    def __init__(
        self,
        source: CommandSource,
        pacer: Pace,
        announce: StatusSink | None = None,
        *,
        poll_interval: float = 0.05,
    ) -> None:
        self.pacer = pacer
        self.sink = announce
        super().__init__(
            source,
            self._announce,
            on_pace=self._set_pace,
            poll_interval=poll_interval,
            logger=logging.getLogger("trainer"),
        )

    def _set_pace(self, rate: float | None) -> None:
        self.pacer.rate = rate

    def _announce(self, step: int, state: str, message: str) -> None:
        if self.sink is not None:
            self.sink.status(step, state, self.pacer.rate, message)
