"""End to end: record a real run, replay it into a fresh broker, record that, compare.

Every part is the real program in its own process: trainer, two brokers, two recorders and
the replay, talking ZeroMQ over loopback.
"""

from __future__ import annotations

from collections import Counter

import pytest

from broker.recording.reader import RecordingReader
from tests.conftest import wait_until
from tests.recordings import contents, small_run, write_recording


def record_until_finished(programs, broker: tuple[str, str, str], path, wait: bool = True):
    """A recorder, once it is subscribed and has asked the broker what it holds.

    A recorder that joins mid-run gets the run's curves from the broker's history but only
    the latest sample and weights, so these tests start it first, as a talk would.
    """
    _, outbound, snapshot = broker
    recorder = programs.start(
        "record", "--connect", outbound, "--snapshot", snapshot, "--out", str(path),
        "--until-finished",
    )  # fmt: skip
    if wait:
        wait_for_recorder(programs, recorder)
    return recorder


def wait_for_recorder(programs, recorder) -> None:
    wait_until(lambda: "broker holds" in programs.output(recorder), 30, message="the recorder")


def start_broker(programs, endpoint) -> tuple[str, str, str]:
    """A broker process on fresh ports: its (in, out, snapshot) endpoints."""
    ports = endpoint(), endpoint(), endpoint()
    programs.start("broker", "--in", ports[0], "--out", ports[1], "--snapshot", ports[2])
    return ports


@pytest.mark.slow
def test_a_replayed_recording_records_the_same_messages(programs, endpoint, tmp_path) -> None:
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    broker = start_broker(programs, endpoint)
    recorder = record_until_finished(programs, broker, first)
    trainer = programs.start(
        "train", "--dataset", "synthetic", "--synthetic-size", "2000,500", "--hidden", "16",
        "--max-steps", "240", "--steps-per-second", "120", "--quiet", "--connect", broker[0],
    )  # fmt: skip
    assert trainer.wait(60) == 0, programs.output(trainer)
    assert recorder.wait(30) == 0, programs.output(recorder)

    broker = start_broker(programs, endpoint)
    recorder = record_until_finished(programs, broker, second)
    replay = programs.start("replay", str(first), "--connect", broker[0], "--speed", "max")
    assert replay.wait(60) == 0, programs.output(replay)
    assert recorder.wait(30) == 0, programs.output(recorder)

    original = [r.message for r in RecordingReader(first).messages()]
    replayed = [r.message for r in RecordingReader(second).messages()]
    kinds = {m.kind for m in original}
    assert {"run_started", "metrics", "evaluation", "sample", "weights", "run_finished"} <= kinds
    assert len(original) > 40
    assert [m.kind for m in replayed] == [m.kind for m in original]
    assert [contents(m) for m in replayed] == [contents(m) for m in original]
    assert [m.seq for m in replayed] == [m.seq for m in original]
    assert all(m.replayed for m in replayed) and not any(m.replayed for m in original)
    (original_run,) = {m.run_id for m in original}
    (replay_run,) = {m.run_id for m in replayed}
    assert replay_run != original_run and original_run in replay_run
    outputs = "".join(programs.output(p) for _, p in programs.started)
    assert "Traceback" not in outputs


@pytest.mark.slow
def test_replay_waits_for_a_broker_started_after_it(programs, endpoint, tmp_path) -> None:
    """Any order: a replay started before its broker still delivers the whole run."""
    from broker.clients.request import ask
    from tests.wire import STATS

    messages = small_run("r1", metrics=50)
    path = write_recording(tmp_path / "run.mcap", messages)

    broker = endpoint(), endpoint(), endpoint()
    replay = programs.start("replay", str(path), "--connect", broker[0], "--speed", "max")
    wait_until(lambda: "waiting" in programs.output(replay), 20, message="replay waiting")
    programs.start("broker", "--in", broker[0], "--out", broker[1], "--snapshot", broker[2])
    assert replay.wait(60) == 0, programs.output(replay)
    stats = ask(broker[2], STATS, timeout=10)
    assert stats["in_by_kind"] == dict(Counter(m.kind for m in messages))
    assert stats["dropped"] == {}
