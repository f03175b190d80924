"""Faults during a talk, with the real programs: each is survived, and shown.

A broker, a viewer and a trainer paced at :data:`PACE` steps/s run as separate processes; a
probe (a Clone client in this process) records every metrics message, which is the run as
the trainer made it (its gaps are repaired; the test checks none was given up). Then one
fault: kill -9 and restart of the broker, of the viewer, of the trainer; SIGSTOP of the viewer
and of a recorder for 5 s; a recording's disk filling up. After each:

- the trainer's step rate, measured from its own ``sent_at`` stamps across the fault, stays
  within 5% of its rate before it;
- a page (a Bokeh session, as a browser's) is whole again within 2 s: its loss curve holds
  every step the trainer had published;
- a recording holds every message up to the fault and says where it ends.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from bokeh.client import ClientSession, pull_session

from broker.clients.clone import CloneClient
from broker.clients.publisher import Publisher
from broker.recording.reader import RecordingReader
from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import Programs, collect, run_cli, wait_until
from tests.documents import header, receive

pytestmark = pytest.mark.slow

PACE = 40.0
"""Steps per second: slow enough that two cores never hold the trainer back, fast enough that
a 5% slowdown over a few seconds is many steps."""
WHOLE_WITHIN = 2.0
RATE_TOLERANCE = 0.05


class Probe:
    """Every metrics message of the talk, as (run, step, sent_at), read on a thread."""

    def __init__(self, out: str, snapshot: str) -> None:
        self.client = CloneClient(out, snapshot, gap_timeout=30)
        self.lock = threading.Lock()
        self.metrics: list[tuple[str, int, float]] = []
        self.messages: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.client.start()
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            for message in self.client.poll(0.05):
                with self.lock:
                    self.messages[message.run_id] = self.messages.get(message.run_id, 0) + 1
                    if message.kind == "metrics":
                        self.metrics.append((message.run_id, message.step, message.sent_at))

    def steps(self, run: str | None = None, until: float = float("inf")) -> list[int]:
        """The run's metrics steps sent up to ``until`` (the trainer's clock)."""
        with self.lock:
            return [s for r, s, t in self.metrics if (run is None or r == run) and t <= until]

    @property
    def run(self) -> str:
        with self.lock:
            return self.metrics[-1][0]

    def rate(self, start: float, end: float, run: str | None = None) -> float:
        """Steps per second between two wall-clock times, from the trainer's own stamps."""
        with self.lock:
            points = [(t, s) for r, s, t in self.metrics
                      if start <= t <= end and (run is None or r == run)]  # fmt: skip
        assert len(points) >= 10, f"too few metrics between {start} and {end}: {len(points)}"
        (t0, s0), (t1, s1) = points[0], points[-1]
        return (s1 - s0) / (t1 - t0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.close()
        assert self.client.counts["unrepairable"] == 0, "the probe lost messages for good"


@dataclass
class Talk:
    programs: Programs
    tmp_path: Path
    broker_in: str = ""
    broker_out: str = ""
    port: int = 0
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    running: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def snapshot(self) -> str:
        host, port = self.broker_out.rsplit(":", 1)
        return f"{host}:{int(port) + 1}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, name: str) -> subprocess.Popen:
        process = self.programs.start(*self.args[name])
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.running[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def output(self, name: str) -> str:
        return self.programs.output(self.running[name])

    def session(self) -> ClientSession:
        return pull_session(url=self.url)


@pytest.fixture
def talk(programs: Programs, tmp_path: Path) -> Iterator[tuple[Talk, Probe]]:
    talk = Talk(programs, tmp_path)
    talk.broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    talk.broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    talk.port = free_tcp_port()
    trainer = ("--dataset", "synthetic", "--epochs", "100", "--steps-per-second", str(PACE))
    talk.args = {
        "broker": ("broker", "--in", talk.broker_in, "--out", talk.broker_out),
        "viewer": ("view", "--connect", talk.broker_out, "--port", str(talk.port)),
        "trainer": ("train", "--connect", talk.broker_in, *trainer, "--quiet"),
    }
    for name in ("broker", "viewer", "trainer"):
        talk.start(name)
    wait_until(lambda: "dashboard at" in talk.output("viewer"), 30, message="the viewer")
    probe = Probe(talk.broker_out, talk.snapshot)
    try:
        wait_until(lambda: len(probe.steps()) > 60, 30, message="three seconds of training")
        yield talk, probe
    finally:
        probe.close()
    for name, process in talk.running.items():
        if name != "trainer" or process.poll() is None:
            assert "Traceback" not in programs.output(process), name


def loss_steps(session: ClientSession) -> set[int]:
    source = session.document.get_model_by_name("loss")
    assert source is not None
    return set(source.data["step"])  # type: ignore[attr-defined]


def whole_after(session: ClientSession, wanted: list[int], since: float, limit: float) -> float:
    """Seconds from ``since`` until ``session`` shows every step in ``wanted``; fails after
    ``limit`` seconds, saying how many are missing."""
    assert wanted
    target, deadline = set(wanted), since + limit
    while time.monotonic() < deadline:
        receive([session], 0.05)
        if target <= loss_steps(session):
            return time.monotonic() - since
    missing = target - loss_steps(session)
    raise AssertionError(f"not whole after {limit} s: {len(missing)} of {len(target)} missing")


def assert_unslowed(probe: Probe, fault: float, after: float, run: str | None = None) -> None:
    """The trainer's rate across the fault (until ``after`` seconds past it, waited for) is
    within 5% of its rate before it."""
    time.sleep(max(0.0, fault + after - time.time()))
    before = probe.rate(fault - 3, fault, run)
    across = probe.rate(fault, fault + after, run)
    print(f"trainer: {before:.2f} steps/s before, {across:.2f} across the fault")
    assert abs(across - before) <= RATE_TOLERANCE * before
    assert abs(before - PACE) <= RATE_TOLERANCE * PACE


def test_kill_9_and_restart_of_the_broker(talk) -> None:
    talk, probe = talk
    session = talk.session()
    try:
        receive([session], 0.5)
        fault = time.time()
        talk.kill("broker")
        wait_until(lambda: receive([session], 0.1) or "broker unreachable" in header(
            session.document), 6, message="'broker unreachable' on the page")  # fmt: skip
        print(f"'broker unreachable' on the page {time.time() - fault:.2f} s after kill -9")
        restarted, restarted_at = talk.start("broker"), time.time()
        wait_until(lambda: "broker up" in talk.programs.output(restarted), 20, message="up")
        up = time.monotonic()
        wait_until(lambda: probe.steps(until=restarted_at + 1), 10, message="probe back")
        took = whole_after(session, probe.steps(until=restarted_at), up, 10)
        print(f"page whole {took:.2f} s after the broker came back")
        assert took <= WHOLE_WITHIN
        wait_until(lambda: receive([session], 0.05) or "broker unreachable" not in header(
            session.document), 2, message="the alarm gone")  # fmt: skip
        assert_unslowed(probe, fault, 8)
    finally:
        session.close()


def test_kill_9_and_restart_of_the_viewer(talk) -> None:
    talk, probe = talk
    fault = time.time()
    talk.kill("viewer")
    restarted = talk.start("viewer")
    wait_until(lambda: "dashboard at" in talk.programs.output(restarted), 30, message="viewer")
    up = time.monotonic()
    session = talk.session()
    try:
        took = whole_after(session, probe.steps(until=time.time()), up, 10)
        print(f"a new page whole {took:.2f} s after the restarted viewer served")
        assert took <= WHOLE_WITHIN
    finally:
        session.close()
    assert_unslowed(probe, fault, 8)


def test_kill_9_and_restart_of_the_trainer(talk) -> None:
    talk, probe = talk
    session = talk.session()
    try:
        receive([session], 0.5)
        first = probe.run
        talk.kill("trainer")
        killed = time.monotonic()
        wait_until(lambda: receive([session], 0.05) or "trainer silent" in header(
            session.document), 5, message="'trainer silent'")  # fmt: skip
        print(f"'trainer silent' on the page {time.monotonic() - killed:.2f} s after kill -9")
        assert time.monotonic() - killed <= 3.2
        talk.start("trainer")
        wait_until(lambda: probe.run != first, 30, message="the new run")
        started = time.time()
        second = probe.run
        wait_until(lambda: len(probe.steps(second)) > 100, 20, message="the new run training")
        took = whole_after(session, probe.steps(second, until=started + 1), time.monotonic(), 10)
        print(f"the new run's page whole {took:.2f} s after its first second")
        assert "trainer silent" not in header(session.document)
        rate = probe.rate(started + 1, time.time(), second)
        assert abs(rate - PACE) <= RATE_TOLERANCE * PACE, rate
    finally:
        session.close()


def test_sigstop_of_the_viewer_for_5_s(talk) -> None:
    talk, probe = talk
    session = talk.session()
    try:
        receive([session], 0.5)
        fault = time.time()
        viewer = talk.running["viewer"]
        viewer.send_signal(signal.SIGSTOP)
        time.sleep(5)
        viewer.send_signal(signal.SIGCONT)
        resumed, resumed_at = time.monotonic(), time.time()
        took = whole_after(session, probe.steps(until=resumed_at), resumed, 10)
        print(f"page whole {took:.2f} s after the viewer was let go")
        assert took <= WHOLE_WITHIN
        assert_unslowed(probe, fault, 8)
    finally:
        session.close()


def test_sigstop_of_a_recorder_for_5_s(talk) -> None:
    talk, probe = talk
    out = talk.tmp_path / "talk.mcap"
    recorder = talk.programs.start("record", "--connect", talk.broker_out, "--out", str(out))
    wait_until(lambda: "recording" in talk.programs.output(recorder), 20, message="recording")
    time.sleep(1)
    fault = time.time()
    recorder.send_signal(signal.SIGSTOP)
    time.sleep(5)
    recorder.send_signal(signal.SIGCONT)
    time.sleep(3)
    assert_unslowed(probe, fault, 8)
    stopped = time.time()
    assert talk.programs.stop(recorder, signal.SIGINT) == 0
    run = probe.run
    recorded = [r.message.step for r in RecordingReader(out).messages(["metrics"])
                if r.message.run_id == run]  # fmt: skip
    assert recorded == sorted(recorded)
    assert set(probe.steps(run, until=stopped - 1)) <= set(recorded), "every message of the run"


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")


def test_a_full_disk_under_a_recording(talk) -> None:
    talk, probe = talk
    disk = talk.tmp_path / "small-disk"
    mount_tmpfs(disk, "2m")
    try:
        out = disk / "talk.mcap"
        recorder = talk.programs.start("record", "--connect", talk.broker_out, "--out", str(out))
        fault = time.time()
        recorder.wait(60)
        output = talk.programs.output(recorder)
        print(output.strip().splitlines()[-1])
        assert recorder.returncode == 2 and "Traceback" not in output
        assert "No space left on device; the recording stopped after" in output
        assert_unslowed(probe, fault, 4)
        reader = RecordingReader(out)
        recorded = [r.message for r in reader.messages() if r.message.run_id == probe.run]
        assert not reader.whole and recorded, "what reached the disk reads, up to the cut"
        steps = [m.step for m in recorded if m.kind == "metrics"]
        assert steps == [s for s in probe.steps(probe.run) if s <= steps[-1]]
        inspected = run_cli("inspect", str(out))
        assert "not closed" in inspected.stdout, inspected.stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


STOPPED_SUBSCRIBER = """
import sys, time, zmq
socket = zmq.Context.instance().socket(zmq.SUB)
socket.subscribe(b"")
socket.connect(sys.argv[2])  # argv[1] names the log
time.sleep(120)
"""


def test_a_stopped_subscriber_pins_large_messages_only_for_a_while(programs, endpoint) -> None:
    """The attack: a subscriber that stops reading while 25 models of 14 MB pass. The broker
    cuts it off once its window has been shut for ``SUBSCRIBER_STALL_MS``, its memory goes
    back to the system, and a reading subscriber gets the whole run meanwhile."""
    from broker.forwarder import SUBSCRIBER_STALL_MS
    from protocol import ModelWeights, RunStarted
    from tests.test_presenter import run_started_fields

    in_, out, snap = endpoint(), endpoint(), endpoint()
    broker = programs.start("broker", "--in", in_, "--out", out, "--snapshot", snap)
    publisher = Publisher(in_)
    assert publisher.wait_for_subscriber(20)
    stopped = programs.start("subscriber", out, python_args=("-c", STOPPED_SUBSCRIBER))
    reader = CloneClient(out, snap)
    reader.start()
    try:
        time.sleep(1)
        stopped.send_signal(signal.SIGSTOP)
        before = rss_mb(broker.pid)
        fields = run_started_fields()
        sizes = [784, 2048, 1024, 10]
        architecture = fields["architecture"].model_copy(update={"layer_sizes": sizes})
        publisher.send(RunStarted, **fields)
        count = sum(a * b + b for a, b in itertools.pairwise(sizes))
        for step in range(25):
            parameters = np.full(count, step, np.float32)
            publisher.send(ModelWeights, step=step, epoch=0, architecture=architecture,
                           parameters=parameters)  # fmt: skip
            collect(reader, 2 if step == 0 else 1, timeout=10)
        peak = rss_mb(broker.pid)
        cut = time.monotonic()
        wait_until(lambda: rss_mb(broker.pid) < before + 64, SUBSCRIBER_STALL_MS / 1000 + 10,
                   message="the stopped subscriber's queue freed")  # fmt: skip
        after = rss_mb(broker.pid)
        print(
            f"broker RSS {before:.0f} MB before, {peak:.0f} MB with the subscriber stopped, "
            f"{after:.0f} MB {time.monotonic() - cut:.1f} s later"
        )
        assert peak > before + 200, "the attack did pin memory (else the test proves nothing)"
        assert broker.poll() is None and reader.counts["unrepairable"] == 0
    finally:
        reader.close()
        publisher.close(0)
        stopped.send_signal(signal.SIGCONT)
    assert "subscriber left" in programs.output(broker)
