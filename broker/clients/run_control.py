"""A presenter's commands (start, pause, resume, stop, pace, set) as every publisher obeys them.

Commands come upstream from the viewer's presenter page (or ``mnist-live control``) through the
broker to a publisher's socket (see ``docs/protocol.md``). A trainer and a replay obey them the
same way, through :class:`RunControl`: commands for another run are ignored; Pause holds the
caller between two steps until Resume (or Start); Stop sets the caller's stop event; Pace goes
to the caller (a trainer changes its pace, a replay keeps its ``--speed``), and so does Set
(a trainer changes its learning rate or momentum; a replay plays the recorded run's). Every
change of state is announced, so the room's pages say what the run is doing. Commands are read
at most every ``poll_interval`` seconds, so an unpaused run pays one clock read per step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from protocol import ControlCommand

log = logging.getLogger("broker.control")

Announce = Callable[[int, str, str], object]
"""Tells the room the run's state: ``(step, state, message)``."""


class CommandSource(Protocol):
    run_id: str

    def poll_commands(self) -> list[ControlCommand]: ...


HEARTBEAT_SECONDS = 1.0
"""How often a run that is not stepping says it is alive (viewers call it silent after 2.5 s)."""


class RunControl:
    """One run's obedience to the presenter; ``on_pace`` None ignores Pace (saying
    ``pace_ignored`` in the caller's ``logger``), ``on_set`` None ignores Set (saying
    ``set_ignored``). ``on_set`` gets the command and the last step taken."""

    def __init__(
        self,
        source: CommandSource,
        announce: Announce | None = None,
        *,
        on_pace: Callable[[float | None], None] | None = None,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
        pace_ignored: str = "this run keeps its own pace; 'pace' ignored",
        on_set: Callable[[ControlCommand, int], None] | None = None,
        set_ignored: str = "this run keeps its own hyperparameters; 'set' ignored",
    ) -> None:
        self.source = source
        self.log = logger
        self.pace_ignored = pace_ignored
        self.announce = announce
        self.on_pace = on_pace
        self.on_set = on_set
        self.set_ignored = set_ignored
        self.poll_interval = poll_interval
        self.clock = clock
        self.paused = False
        self.state = "training"
        self._next_poll = 0.0
        self._announced_at = -HEARTBEAT_SECONDS
        self._message = ""

    def wait_for_start(self, step: int, stop: threading.Event) -> None:
        """Hold the run until a presenter presses Start (or the run is stopped)."""
        self.log.info("waiting for a start command (the presenter's Start button)")
        self._status(step, "waiting", "waiting for the presenter to start")
        started = False
        while not (started or stop.is_set()):
            for command in self._commands():
                if command.command in ("start", "resume"):
                    started = True
                else:
                    self._apply(command, step, stop)
            stop.wait(self.poll_interval)
            self.heartbeat(step)
        if started and not stop.is_set():
            self.log.info("start command received")
            self._status(step, "training")

    def between_steps(self, step: int, stop: threading.Event) -> float:
        """Apply any new commands; while paused, hold here until resumed or stopped.

        Returns the seconds held (a replay's timeline moves that much later).
        """
        now = self.clock()
        if now < self._next_poll:
            return 0.0
        self._next_poll = now + self.poll_interval
        for command in self._commands():
            self._apply(command, step, stop)
        if not self.paused or stop.is_set():  # a Stop ends a pause that came with it
            return 0.0
        self._status(step, "paused")
        while self.paused and not stop.is_set():
            stop.wait(self.poll_interval)
            for command in self._commands():
                self._apply(command, step, stop)
            self.heartbeat(step)
        if not stop.is_set():
            self._status(step, "training")
        return self.clock() - now

    def _commands(self) -> list[ControlCommand]:
        run_id = self.source.run_id
        return [c for c in self.source.poll_commands() if c.run_id in ("*", run_id)]

    def _apply(self, command: ControlCommand, step: int, stop: threading.Event) -> None:
        self.log.info("presenter command: %s", command.command)
        match command.command:
            case "pause":
                self.paused = True
            case "resume" | "start":
                self.paused = False
            case "stop":
                stop.set()
            case "pace" if self.on_pace is None:
                self.log.info("%s", self.pace_ignored)
            case "pace":
                rate = command.steps_per_second
                self.on_pace(rate)  # type: ignore[misc]
                self.log.info("pace now %s", f"{rate:g} steps/s" if rate else "unlimited")
                self._status(step, self.state)
            case "set" if self.on_set is None:
                self.log.info("%s", self.set_ignored)
            case "set":
                self.on_set(command, step)  # type: ignore[misc]

    def heartbeat(self, step: int) -> None:
        """While the run sends nothing else (waiting, paused, a slow pace), say its state again
        each :data:`HEARTBEAT_SECONDS`, so viewers can tell a quiet run from a dead one."""
        if self.clock() - self._announced_at >= HEARTBEAT_SECONDS:
            self._status(step, self.state, self._message)

    def _status(self, step: int, state: str, message: str = "") -> None:
        self.state = state
        self._message = message
        self._announced_at = self.clock()
        if self.announce is not None:
            self.announce(step, state, message)
