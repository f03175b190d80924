"""Play a recorded run back into a broker, as a trainer would, at any speed, from any point.

What to send, and in which order, is :mod:`broker.recording.replay_plan`'s (two passes over
the file, a bounded reorder window). Each message goes out under a run id of the replay's own
that names the recorded run, with ``seq`` renumbered from 0 without gaps, ``sent_at`` the time
of sending and ``replayed`` set; every other field is the recorded one. Timing follows the
recording's log times (the original send times) scaled by the speed, each message sent at its
due time counted from one fixed start, so sleeping errors never add up.

The presenter's commands reach a replay as they reach a trainer
(:mod:`broker.clients.run_control`): Pause holds it (announced as a ``status`` message of its
own, not marked replayed, so the page says PAUSED) until Resume, and the rest of the run
follows that much later; Stop ends it; Pace is ignored, ``--speed`` sets the pace.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import zmq

from broker.clients.publisher import Publisher
from broker.clients.run_control import RunControl
from broker.curve.keys import ClientKeys
from broker.recording.reader import RecordingReader, pick_run
from broker.recording.replay_plan import in_seq_order, plan, replay_run_id, scan
from protocol import RunFinished, RunStatus
from protocol.cli.durations import format_duration
from protocol.cli.progress import Progress
from protocol.errors import CommandError

log = logging.getLogger("broker.replay")

LINGER_MS = 10_000
"""How long queued messages may take to leave once the replay is done."""
WAIT_SLICE = 0.05
"""Longest single sleep while waiting for a message's due time: upstream traffic (a restarted
broker's subscription) is served between slices."""


class Position:
    """Where the replay is in the run, on one terminal line (a log line every 10 s otherwise)."""

    def __init__(self, duration: float, *, enabled: bool = True) -> None:
        self.duration = duration
        self.line = Progress(round(duration, 3), unit="s", enabled=enabled, logger=log)

    def update(self, sent: int, position: float) -> None:
        if self.line.due():
            self.line.show(
                min(round(position, 3), self.duration),
                f"replaying {format_duration(position)} / {format_duration(self.duration)}, "
                f"{sent} messages sent",
            )

    def close(self) -> None:
        self.line.close()


class Replay:
    """Replays one run of a recording into the broker at ``endpoint`` (its ``--in``).

    ``speed`` is a factor of the original timing (``math.inf``: no waiting). ``from_seconds``
    (since the run's first message) or ``from_step`` picks the starting point. ``loop`` plays
    again after the end, each pass under a new run id. The file is read when constructed, so
    a bad file, run or starting point raises :class:`CommandError` before anything is sent.
    """

    def __init__(
        self,
        path: str | Path,
        endpoint: str,
        *,
        speed: float = 1.0,
        from_seconds: float | None = None,
        from_step: int | None = None,
        run_id: str | None = None,
        loop: bool = False,
        wait_for_broker: float = 10.0,
        progress: bool = True,
        curve: ClientKeys | None = None,
    ) -> None:
        self.curve = curve
        if not speed > 0:
            raise CommandError(f"the speed must be positive, got {speed}")
        self.path = Path(path)
        self.endpoint = endpoint
        self.speed = speed
        self.loop = loop
        self.wait_for_broker = wait_for_broker
        self.progress_enabled = progress
        self.reader = RecordingReader(self.path)
        self.runs = scan(self.reader)
        self.damage = None if self.reader.whole else self.reader.describe_damage()
        chosen = pick_run(self.runs, run_id, self.path, lambda run: run.messages)
        self.plan = plan(chosen, from_seconds, from_step)
        self.run_ids: list[str] = []
        self.sent = 0
        self.dropped = 0
        self.stopped = False
        self.stop = threading.Event()
        self.control: RunControl | None = None

    def run(self) -> int:
        """Play (and loop) until done or interrupted; returns the messages sent in all."""
        plan, run = self.plan, self.plan.run
        if self.damage:
            log.warning("%s: %s", self.path, self.damage)
        speed = "max" if math.isinf(self.speed) else f"{self.speed:g}x"
        start = ""
        if plan.point_seq != plan.order[0]:
            start = (
                f", from {format_duration(plan.point_time - run.first_time)} "
                f"({plan.catch_up} messages sent at once first)"
            )
        log.info(
            "replaying %s: run %s, %d messages (+ model snapshots), %s long, speed %s%s",
            self.path,
            run.run_id,
            plan.messages,
            format_duration(run.duration),
            speed,
            start,
        )
        if not run.finished:
            log.info(
                "run %s has no run_finished in the recording (its recorder stopped early): "
                "the replay ends it as stopped",
                run.run_id,
            )
        context = zmq.Context()
        linger: int | None = LINGER_MS
        began = time.monotonic()
        publisher: Publisher | None = None
        try:
            # One connection for every pass: the broker, and the presenter's commands through
            # it, reach the replay between passes too.
            publisher = self._connect(context)
            self.control = self._obey(publisher)
            while True:
                self._play_once(publisher)
                if self.stop.is_set():
                    self.stopped = True
                    log.info("stopped by the presenter")
                if not self.loop or self.stop.is_set():
                    break
        except KeyboardInterrupt:
            self.stopped = True
            linger = 1000  # Ctrl-C: wait for a broker only briefly
        finally:
            if publisher is not None:
                self.dropped = publisher.dropped
                publisher.close(linger)
            context.setsockopt(zmq.LINGER, linger)
            context.term()  # waits (up to the linger) until everything queued has left
        if self.loop or self.stopped or self.dropped:
            log.info(
                "replay %s: %d messages sent in %.2f s over %d pass(es)%s",
                "stopped" if self.stopped else "done",
                self.sent,
                time.monotonic() - began,
                len(self.run_ids),
                f", {self.dropped} dropped (the broker took none for 10 s)" if self.dropped else "",
            )
        return self.sent

    def _connect(self, context: zmq.Context) -> Publisher:
        """A publisher for the first pass, once a broker has subscribed to it."""
        publisher = Publisher(
            self.endpoint,
            replay_run_id(self.plan.run.run_id),
            linger_ms=LINGER_MS,
            blocking=True,
            context=context,
            curve=self.curve,
        )
        waited = time.monotonic()
        first_look = min(0.5, self.wait_for_broker)
        if not publisher.wait_for_subscriber(first_look):
            log.info(
                "waiting up to %g s for a broker to subscribe at %s",
                self.wait_for_broker,
                self.endpoint,
            )
        if not publisher.wait_for_subscriber(self.wait_for_broker - first_look):
            publisher.close(0)
            raise CommandError(
                f"no broker subscribed at {self.endpoint} within {self.wait_for_broker:g} s; "
                "start 'mnist-live broker' and point --connect at its --in endpoint"
            )
        log.info("broker at %s subscribed after %.2f s", self.endpoint, time.monotonic() - waited)
        return publisher

    def _play_once(self, publisher: Publisher) -> None:
        plan = self.plan
        if self.run_ids:  # a later pass of --loop: a new run on the same connection
            publisher.begin_run(replay_run_id(plan.run.run_id))
        run_id = publisher.run_id
        log.info("replaying as run %s", run_id)
        self.run_ids.append(run_id)
        progress = Position(plan.run.duration, enabled=self.progress_enabled)
        try:
            sent = self._send_all(publisher, progress)
        finally:
            progress.close()
        timed = plan.timed_duration
        effective = timed / sent[1] if sent[1] > 0 else math.inf
        log.info(
            "run %s done: %d messages sent, %.2f s of original timing in %.2f s "
            "(effective speed %s)",
            run_id,
            sent[0],
            timed,
            sent[1],
            "max" if math.isinf(effective) else f"{effective:.2f}x",
        )

    def _send_all(self, publisher: Publisher, progress: Position) -> tuple[int, float]:
        """Send one pass; returns the messages sent and the wall time of the timed part."""
        plan = self.plan
        first_time = plan.run.first_time
        sent = 0
        start: float | None = None
        step = epoch = 0
        finished = False
        for recorded in in_seq_order(self.reader, plan):
            if recorded.message.seq >= plan.point_seq:
                if start is None:
                    start = time.monotonic()
                due = start  # at --speed max every message is due at once
                if not math.isinf(self.speed):
                    due += (recorded.log_time - plan.point_time) / self.speed
                # The presenter is heard at any speed; a pause moves the timeline on.
                start += self._wait(publisher, due, step)
                if self.stop.is_set():
                    break
            step = getattr(recorded.message, "step", step)
            epoch = getattr(recorded.message, "epoch", epoch)
            finished = finished or recorded.message.kind == "run_finished"
            publisher.publish(recorded.message, replayed=True)
            sent += 1
            self.sent += 1
            progress.update(sent, recorded.log_time - first_time)
        if not finished:  # stopped, or a recording cut short: end the run as a trainer would
            why = "stopped by the presenter" if self.stop.is_set() else "the recording ends here"
            publisher.send(RunFinished, status="stopped", step=step, epoch=epoch, message=why)
        return sent, (time.monotonic() - start) if start is not None else 0.0

    def _wait(self, publisher: Publisher, due: float, step: int) -> float:
        """Sleep until ``due`` (monotonic), serving the broker and the presenter meanwhile.

        The presenter's commands are obeyed as a trainer obeys them
        (:class:`~broker.clients.run_control.RunControl`): Pause holds the replay here until
        Resume, Stop ends it, and each change is announced as a ``status`` message. Returns the
        seconds spent paused, by which the rest of the replay moves later.
        """
        control = self.control
        assert control is not None, "made with the publisher, in run()"
        held = 0.0
        while True:
            held += control.between_steps(step, self.stop)
            remaining = due + held - time.monotonic()
            if self.stop.is_set() or remaining <= 0:
                return held
            self.stop.wait(min(remaining, WAIT_SLICE))

    def _obey(self, publisher: Publisher) -> RunControl:
        """The presenter's commands, as a trainer obeys them, announced by ``publisher``."""
        return RunControl(
            publisher,
            lambda step, state, _message: publisher.send(RunStatus, step=step, state=state),
            poll_interval=WAIT_SLICE,
            logger=log,
            pace_ignored="a replay keeps its --speed; 'pace' ignored",
            set_ignored="a replay plays the recorded run's hyperparameters; 'set' ignored",
        )
