"""A presenter's commands (start, pause, resume, stop, pace), applied between training steps.

Commands come upstream from the viewer's presenter page through the broker to the trainer's
publishing socket (see ``docs/protocol.md``). They are read at most every ``poll_interval``
seconds, so an unpaused run pays one clock read per step; every change of state is announced
to the room as a ``status`` message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from protocol import ControlCommand

log = logging.getLogger("trainer")


class CommandSource(Protocol):
    run_id: str

    def poll_commands(self) -> list[ControlCommand]: ...


class Pace(Protocol):
    rate: float | None


class StatusSink(Protocol):
    def status(
        self, step: int, state: str, steps_per_second: float | None = None, message: str = ""
    ) -> None: ...


class Controls:
    def __init__(
        self,
        source: CommandSource,
        pacer: Pace,
        announce: StatusSink | None = None,
        *,
        poll_interval: float = 0.05,
    ) -> None:
        self.source = source
        self.pacer = pacer
        self.announce = announce
        self.poll_interval = poll_interval
        self.paused = False
        self.state = "training"
        self._next_poll = 0.0

    def wait_for_start(self, step: int, stop: threading.Event) -> None:
        """Hold the run until a presenter presses Start (or the run is stopped)."""
        log.info("waiting for a start command (the presenter's Start button)")
        self._status(step, "waiting", "waiting for the presenter to start")
        started = False
        while not (started or stop.is_set()):
            for command in self._commands():
                if command.command in ("start", "resume"):
                    started = True
                else:
                    self._apply(command, step, stop)
            stop.wait(self.poll_interval)
        if started and not stop.is_set():
            log.info("start command received")
            self._status(step, "training")

    def between_steps(self, step: int, stop: threading.Event) -> None:
        """Apply any new commands; while paused, hold here until resumed or stopped."""
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + self.poll_interval
        for command in self._commands():
            self._apply(command, step, stop)
        if not self.paused:
            return
        self._status(step, "paused")
        while self.paused and not stop.is_set():
            stop.wait(self.poll_interval)
            for command in self._commands():
                self._apply(command, step, stop)
        if not stop.is_set():
            self._status(step, "training")

    def _commands(self) -> list[ControlCommand]:
        run_id = self.source.run_id
        return [c for c in self.source.poll_commands() if c.run_id in ("*", run_id)]

    def _apply(self, command: ControlCommand, step: int, stop: threading.Event) -> None:
        log.info("presenter command: %s", command.command)
        match command.command:
            case "pause":
                self.paused = True
            case "resume" | "start":
                self.paused = False
            case "stop":
                stop.set()
            case "pace":
                self.pacer.rate = command.steps_per_second
                log.info(
                    "pace now %s",
                    f"{command.steps_per_second:g} steps/s"
                    if command.steps_per_second
                    else "unlimited",
                )
                self._status(step, self.state)

    def _status(self, step: int, state: str, message: str = "") -> None:
        self.state = state
        if self.announce:
            self.announce.status(step, state, self.pacer.rate, message)
