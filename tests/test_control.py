"""Presenter commands travel upstream over a real socket and hold, pace or stop the trainer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from broker.clients.publisher import Publisher
from broker.clients.run_control import RunControl
from protocol import ControlCommand, RunStatus
from tests.conftest import Collector, assert_one_line_error, blob_dataset, run_cli, wait_until
from trainer.control import Controls
from trainer.loop import Pacer
from trainer.reporter import Reporter


@pytest.fixture
def wired(collector_and_publisher) -> Iterator[tuple[Collector, Publisher, Controls]]:
    collector, publisher = collector_and_publisher
    controls = Controls(publisher, Pacer(None), Reporter(publisher, blob_dataset(50, 20)))
    yield collector, publisher, controls


class Steps:
    """A loop of empty steps with the controls between them, as the training loop has."""

    def __init__(self, controls: Controls) -> None:
        self.controls, self.count, self.stop = controls, 0, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.count += 1
            self.controls.between_steps(self.count, self.stop)
            time.sleep(0.002)

    def advancing(self, seconds: float = 0.3) -> bool:
        before = self.count
        time.sleep(seconds)
        return self.count > before

    def end(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_pause_holds_the_loop_until_resume(wired) -> None:
    upstream, _, controls = wired
    steps = Steps(controls)
    try:
        assert steps.advancing()
        upstream.command("pause")
        (paused,) = upstream.take(RunStatus)
        assert paused.state == "paused"
        assert not steps.advancing(), "a paused trainer must not take another step"
        assert steps.count == paused.step
        upstream.command("resume")
        (resumed,) = upstream.take(RunStatus)
        assert (resumed.state, resumed.step) == ("training", paused.step)
        assert steps.advancing()
        assert not steps.stop.is_set()
    finally:
        steps.end()


def test_stop_while_paused_ends_the_run(wired) -> None:
    upstream, _, controls = wired
    steps = Steps(controls)
    upstream.command("pause")
    assert [s.state for s in upstream.take(RunStatus)] == ["paused"]
    upstream.command("stop")
    steps.thread.join(5)
    assert not steps.thread.is_alive() and steps.stop.is_set()


def test_pace_changes_the_rate_and_tells_the_room(wired) -> None:
    upstream, _, controls = wired
    steps = Steps(controls)
    try:
        upstream.command("pace", steps_per_second=2.5)
        (status,) = upstream.take(RunStatus)
        assert (status.state, status.steps_per_second) == ("training", 2.5)
        assert controls.pacer.rate == 2.5
        upstream.command("pace")
        (status,) = upstream.take(RunStatus)
        assert status.steps_per_second is None and controls.pacer.rate is None
    finally:
        steps.end()


def test_wait_for_start_holds_until_start_and_ignores_other_runs(wired) -> None:
    upstream, publisher, controls = wired
    stop = threading.Event()
    thread = threading.Thread(target=controls.wait_for_start, args=(0, stop), daemon=True)
    thread.start()
    assert [s.state for s in upstream.take(RunStatus)] == ["waiting"]
    upstream.command("start", run_id="some-other-run")
    upstream.socket.send(b"{not json")
    thread.join(0.5)
    assert thread.is_alive(), "a command for another run must not start this one"
    wait_until(lambda: publisher.ignored, timeout=5, message="the garbage frame to be counted")
    upstream.command("start", run_id=publisher.run_id)
    thread.join(5)
    assert not thread.is_alive() and not stop.is_set()
    assert [s.state for s in upstream.take(RunStatus)] == ["training"]


def test_paced_pacer_holds_the_step_rate() -> None:
    pacer, stop = Pacer(50.0), threading.Event()
    started = time.monotonic()
    for _ in range(26):
        pacer.wait(stop)
    elapsed = time.monotonic() - started
    assert 0.45 < elapsed < 1.0, f"26 steps at 50 steps/s took {elapsed:.2f} s"


class Commands:
    """A command source that hands over what it was given, all at once."""

    run_id = "run-a"

    def __init__(self, *commands: str) -> None:
        self.pending = [ControlCommand(command=c) for c in commands]  # type: ignore[arg-type]

    def poll_commands(self) -> list[ControlCommand]:
        commands, self.pending = self.pending, []
        return commands


def test_a_stop_that_comes_with_a_pause_ends_the_run_without_pausing_it() -> None:
    said: list[str] = []
    control = RunControl(Commands("stop", "pause"), lambda step, state, _: said.append(state))
    stop = threading.Event()
    assert control.between_steps(7, stop) == 0.0
    assert stop.is_set() and said == [], "no PAUSED on the page of a run that is ending"


def test_pace_is_ignored_where_the_run_keeps_its_own(caplog) -> None:
    said: list[str] = []
    control = RunControl(
        Commands("pace"), lambda step, state, _: said.append(state), pace_ignored="kept"
    )
    caplog.set_level("INFO", logger="broker.control")
    control.between_steps(1, threading.Event())
    assert said == [] and "kept" in caplog.text


def test_a_paused_trainer_says_it_is_alive_each_second(wired) -> None:
    upstream, _, controls = wired
    steps = Steps(controls)
    try:
        upstream.command("pause")
        time.sleep(2.6)
        states = [s.state for s in upstream.take(RunStatus, count=10, timeout=0.5)]
        assert states[0] == "paused" and len(states) >= 3, states
        assert set(states) == {"paused"}, "a heartbeat repeats the state"
        assert not steps.advancing(0.1)
    finally:
        steps.end()


def test_a_slow_pace_still_reads_commands_while_it_waits() -> None:
    pacer, stop = Pacer(0.1), threading.Event()  # ten seconds a step
    looks: list[float] = []

    def meanwhile() -> None:
        looks.append(time.monotonic())
        if len(looks) == 3:
            stop.set()  # what a Stop command read during the wait does

    started = time.monotonic()
    pacer.wait(stop, meanwhile)
    assert time.monotonic() - started < 1.0 and len(looks) == 3

    faster, stop = Pacer(0.1), threading.Event()
    faster._next = time.monotonic() - 10.0  # as if the last step were ten seconds ago
    faster.wait(stop)  # so this one goes at once
    started = time.monotonic()
    faster.wait(stop, lambda: setattr(faster, "rate", 50.0))  # a faster pace arrives
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("value", ["1e-9", "0", "-3", "1e6", "fast"])
def test_a_pace_outside_the_sane_range_is_one_line(value: str) -> None:
    done = run_cli("control", "pace", "--steps-per-second", value, "--broker", "tcp://127.0.0.1:1")
    assert_one_line_error(done, "--steps-per-second")
    assert "pydantic" not in done.stderr
    with pytest.raises(ValueError):
        ControlCommand(command="pace", steps_per_second=1e-9)
