"""``mnist-live replay`` against a real broker: order, contents, timing, starting points, loops,
several runs in one file, damaged files and the errors a user can make."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from broker.clients.clone import CloneClient
from broker.clients.publisher import Publisher
from broker.forwarder import Forwarder
from broker.recording.replay import Replay
from broker.recording.replay_plan import parse_offset, parse_speed, replay_run_id
from broker.recording.writer import RecordingWriter
from protocol import Envelope, Evaluation, TrainingMetrics
from protocol.errors import CommandError
from protocol.runlog import LATEST_ONLY
from tests.conftest import assert_one_line_error, collect, run_cli, wait_until
from tests.recordings import START, make_run, piece, same_contents, write_recording
from viewer.panels.pictures import decode
from viewer.runs.state import RunHistory
from viewer.sources.live import Hub


@pytest.fixture
def client(broker):
    client = CloneClient(broker.endpoints[1], broker.snapshot_endpoint)
    client.start()
    yield client
    client.close()


def by_run(messages: list[Envelope]) -> dict[str, list[Envelope]]:
    runs: dict[str, list[Envelope]] = {}
    for message in messages:
        runs.setdefault(message.run_id, []).append(message)
    return runs


def test_replay_at_max_speed_sends_the_same_messages_in_the_same_order(
    tmp_path, broker, client
) -> None:
    original = make_run("20250101-120000-abcdef", seconds=3.0)
    path = write_recording(tmp_path / "run.mcap", original)
    replay = Replay(path, broker.endpoints[0], speed=math.inf, progress=False)
    began = time.monotonic()
    assert replay.run() == len(original)
    assert time.monotonic() - began < 3.0  # far faster than the 3 s the run took
    received = collect(client, len(original))
    assert len(received) == len(original)
    [run_id] = replay.run_ids
    assert run_id.startswith("20250101-120000-abcdef-replay-") and len(run_id) <= 200
    assert {m.run_id for m in received} == {run_id}
    assert [m.seq for m in received] == list(range(len(original)))
    assert all(m.replayed for m in received)
    assert [m.kind for m in received] == [m.kind for m in original]
    assert all(same_contents(r, o) for r, o in zip(received, original, strict=True))
    assert all(abs(m.sent_at - time.time()) < 30 for m in received)  # stamped now, not then
    assert broker.stats.dropped.total() == 0


@pytest.mark.slow
def test_speed_4_takes_a_quarter_of_the_original_time(tmp_path, broker, client) -> None:
    original = make_run("four-seconds", seconds=4.0)
    duration = original[-1].sent_at - original[0].sent_at
    path = write_recording(tmp_path / "run.mcap", original)
    Replay(path, broker.endpoints[0], speed=4, progress=False).run()
    received = collect(client, len(original))
    took = received[-1].sent_at - received[0].sent_at
    assert duration / 4 * 0.9 < took < duration / 4 * 1.1, (duration, took)
    # the pacing holds all along, not only on average: each message at its scaled time
    lag = [
        (r.sent_at - received[0].sent_at) - (o.sent_at - original[0].sent_at) / 4
        for r, o in zip(received, original, strict=True)
    ]
    assert max(map(abs, lag)) < 0.05, max(lag, key=abs)


def test_from_step_sends_the_page_as_it_was_at_that_step_first(tmp_path, broker, client) -> None:
    original = make_run("from-step", seconds=3.0)
    path = write_recording(tmp_path / "run.mcap", original)
    from_step = 450
    point = next(i for i, m in enumerate(original) if getattr(m, "step", -1) >= from_step)
    before = original[:point]
    latest = {m.kind: m for m in before if m.kind in LATEST_ONLY}
    indexed = [
        m
        for m in before
        if m.kind not in LATEST_ONLY or (latest[m.kind] is m and m.kind != "model")
    ]
    expected = [*indexed, latest["model"]]  # the last model goes out at the catch-up's end
    assert len(expected) < len(before)  # the run has superseded pictures to leave out
    assert sum(m.kind == "model" for m in before) > 1

    replay = Replay(path, broker.endpoints[0], speed=math.inf, from_step=from_step, progress=False)
    assert replay.plan.catch_up == len(indexed)
    replay.run()
    received = collect(client, len(expected) + 1)
    assert [m.seq for m in received] == list(range(len(received)))
    catch_up, first_timed = received[: len(expected)], received[len(expected)]
    assert all(same_contents(r, o) for r, o in zip(catch_up, expected, strict=True))
    assert same_contents(first_timed, original[point])

    hub = Hub(broker.endpoints[1], broker.snapshot_endpoint)  # folded by hand, not started
    for message in catch_up:
        hub.apply(message)
    page = hub.current
    assert page is not None and page.run_id == replay.run_ids[0]
    assert page.metrics["step"] == [m.step for m in before if isinstance(m, TrainingMetrics)]
    assert page.curves["accuracy"].data["step"] == [
        m.step for m in before if isinstance(m, Evaluation)
    ]
    assert page.sample is not None and same_contents(page.sample, latest["sample"])
    assert page.versions["weights"] == 1  # one mosaic, the last one before the step
    alone = RunHistory("the last weights alone")
    alone.apply(latest["weights"])
    shown, last = piece(page, "weights")["weights"], piece(alone, "weights")
    assert np.array_equal(decode(shown), decode(last["weights"]))
    assert page.status == "replay"
    assert page.step < from_step


def test_from_time_picks_the_first_message_at_that_time(tmp_path, endpoint) -> None:
    original = make_run("from-time", seconds=3.0)
    path = write_recording(tmp_path / "run.mcap", original)
    replay = Replay(path, endpoint(), from_seconds=1.5, progress=False)
    point = next(m for m in original if m.sent_at >= START + 1.5)
    assert replay.plan.point_seq == point.seq
    assert replay.plan.point_time == point.sent_at
    assert math.isclose(replay.plan.timed_duration, original[-1].sent_at - point.sent_at)
    from_zero = Replay(path, endpoint(), from_step=0, progress=False).plan
    assert from_zero.point_seq == 1 and from_zero.catch_up == 1  # run_started, then step 0+


def test_run_picks_one_run_of_several_and_the_default_is_the_longest(
    tmp_path, broker, client
) -> None:
    short, long = make_run("short-run", seconds=0.5), make_run("long-run", seconds=1.0)
    path = write_recording(tmp_path / "two.mcap", short, long)
    assert Replay(path, broker.endpoints[0]).plan.run.run_id == "long-run"
    replay = Replay(path, broker.endpoints[0], speed=math.inf, run_id="short-run", progress=False)
    replay.run()
    received = collect(client, len(short))
    assert replay.run_ids[0].startswith("short-run-replay-")
    assert all(same_contents(r, o) for r, o in zip(received, short, strict=True))


def test_out_of_order_and_duplicate_seqs_go_out_once_in_seq_order(tmp_path, broker, client) -> None:
    original = make_run("shuffled", seconds=1.0)
    shuffled = original[:10] + original[14:18] + original[10:14] + original[5:8] + original[18:]
    path = write_recording(tmp_path / "run.mcap", shuffled)
    Replay(path, broker.endpoints[0], speed=math.inf, progress=False).run()
    received = collect(client, len(original))
    assert [m.kind for m in received] == [m.kind for m in original]
    assert all(same_contents(r, o) for r, o in zip(received, original, strict=True))


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_recording_replays_every_whole_message_before_the_damage(
    tmp_path, broker, client, caplog, damage
) -> None:
    original = make_run("killed", seconds=2.0)
    half = len(original) // 2
    writer = RecordingWriter(tmp_path / "whole.mcap", "test")
    for message in original[:half]:
        writer.write(message)
    writer.flush()
    kept = writer.size()
    for message in original[half:]:
        writer.write(message)
    writer.close()
    damaged = tmp_path / "damaged.mcap"
    data = bytearray((tmp_path / "whole.mcap").read_bytes())
    if damage == "truncated":  # as a recorder killed mid-chunk leaves it
        data = data[: kept + 100]
    else:  # garbage in the middle of the next chunk
        data[kept + 100 : kept + 400] = bytes(300)
    damaged.write_bytes(bytes(data))

    caplog.set_level(logging.INFO, logger="broker.replay")
    replay = Replay(damaged, broker.endpoints[0], speed=math.inf, progress=False)
    assert replay.run() == half
    *received, closing = collect(client, half + 1)
    assert all(same_contents(r, o) for r, o in zip(received, original[:half], strict=True))
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"damaged after {half} messages" in w or f"all {half} messages" in w for w in warnings
    )
    assert any("ends it as stopped" in r.message for r in caplog.records)  # no run_finished
    # ...so the replay ends the run itself, as a trainer would: the page does not wait forever
    assert closing.kind == "run_finished" and closing.status == "stopped"
    assert not closing.replayed and closing.message == "the recording ends here"
    assert closing.seq == half and closing.run_id == received[0].run_id


def test_without_a_broker_it_gives_up_after_the_wait(tmp_path, endpoint) -> None:
    path = write_recording(tmp_path / "run.mcap", make_run("lonely", seconds=0.2))
    replay = Replay(path, endpoint(), wait_for_broker=0.3, progress=False)
    with pytest.raises(CommandError, match="no broker subscribed"):
        replay.run()


def test_speed_and_offset_parsing() -> None:
    assert parse_speed("max") == math.inf and parse_speed("4") == 4 and parse_speed("0.5x") == 0.5
    assert parse_offset("90") == 90 and parse_offset("1:30") == 90
    assert parse_offset("1:02:03.5") == 3723.5
    for bad in ("0", "-2", "nan", "inf", "fast"):
        with pytest.raises(CommandError, match="--speed"):
            parse_speed(bad)
    for bad in ("-1", "1:75", "1:60:00", "soon", "1::2"):
        with pytest.raises(CommandError, match="--from"):
            parse_offset(bad)
    long_id = "x" * 200
    assert len(replay_run_id(long_id)) == 200 and replay_run_id("a") != replay_run_id("a")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["run.mcap", "--run", "nope"], "no run 'nope'; its runs: one-run ("),
        (["run.mcap", "--speed", "0"], "--speed must be a positive number"),
        (["run.mcap", "--speed", "fast"], "--speed must be a positive number"),
        (["run.mcap", "--from", "1:99"], "seconds must be below 60"),
        (["run.mcap", "--from", "later"], "--from must be a time"),
        (["run.mcap", "--from", "9:00"], "is past the end of run one-run"),
        (["run.mcap", "--from-step", "99999"], "--from-step 99999 is past the end"),
        (["run.mcap", "--from-step", "x"], "--from-step must be a step number"),
        (["run.mcap", "--from", "1", "--from-step", "2"], "not both"),
        (["missing.mcap"], "no such recording"),
        (["notes.txt"], "is not an MCAP recording (it begins b'not a re', not MCAP's magic)"),
        (["run.mcap", "--connect", "nowhere"], "is not a ZeroMQ endpoint"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, complaint) -> None:
    write_recording(tmp_path / "run.mcap", make_run("one-run", seconds=0.5))
    (tmp_path / "notes.txt").write_text("not a recording\n")
    assert_one_line_error(run_cli("replay", *args, cwd=tmp_path), complaint)


def test_loop_replays_again_as_a_new_run_until_stopped(tmp_path, broker, client, programs) -> None:
    original = make_run("looped", seconds=0.5)
    write_recording(tmp_path / "run.mcap", original)
    process = programs.start(
        "replay", "run.mcap", "--connect", broker.endpoints[0], "--speed", "2", "--loop"
    )
    received: list[Envelope] = []

    def passes() -> int:
        received.extend(client.poll(0.05))
        finished = [m for m in received if m.kind == "run_finished"]
        return len(finished) >= 2

    wait_until(passes, 20, message="two passes")
    assert programs.stop(process, signal.SIGTERM) == 0
    runs = by_run(received)
    assert len(runs) >= 2 and all(r.startswith("looped-replay-") for r in runs)
    for messages in list(runs.values())[:2]:
        assert all(same_contents(r, o) for r, o in zip(messages, original, strict=True))
        assert [m.seq for m in messages] == list(range(len(messages))), "each pass from seq 0"
    output = programs.output(process)
    assert "replaying run.mcap: run looped" in output and "replay stopped" in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_real_trainer_run_replays_whole(tmp_path, broker, client, programs) -> None:
    """Record a real synthetic run (through this broker), then replay it at full speed."""
    train = programs.start(
        "train",
        "--dataset",
        "synthetic",
        "--max-steps",
        "60",
        "--hidden",
        "32",
        "--quiet",
        "--connect",
        broker.endpoints[0],
    )
    live: list[Envelope] = []
    wait_until(
        lambda: live.extend(client.poll(0.05)) or any(m.kind == "run_finished" for m in live),
        60,
        message="the trainer's run",
    )
    assert train.wait(30) == 0
    path = write_recording(tmp_path / "trained.mcap", live)
    replay = Replay(path, broker.endpoints[0], speed=math.inf, progress=False)
    replay.run()
    received = [m for m in collect(client, len(live)) if m.run_id == replay.run_ids[0]]
    assert [m.kind for m in received] == [m.kind for m in live]
    assert all(same_contents(r, o) for r, o in zip(received, live, strict=True))
    assert replay.damage is None


@pytest.mark.parametrize("blocking", [True, False])
def test_a_blocking_publisher_waits_at_the_high_water_mark_where_a_trainer_drops(
    endpoint, blocking
) -> None:
    address = endpoint()
    receiver = zmq.Context.instance().socket(zmq.XSUB)
    receiver.setsockopt(zmq.RCVHWM, 10)
    receiver.setsockopt(zmq.RCVBUF, 8192)
    receiver.setsockopt(zmq.LINGER, 0)
    receiver.bind(address)
    receiver.send(b"\x01")
    publisher = Publisher(address, "hwm", blocking=blocking, send_timeout=5, send_hwm=10)
    wait_until(
        lambda: receiver.poll(0) or publisher.wait_for_subscriber(0.05), 5, message="subscribed"
    )
    big = next(m for m in make_run("hwm", seconds=0.5) if isinstance(m, Evaluation))  # ~5 KB
    count = 2000
    received: list[list[bytes]] = []

    sent = threading.Event()

    def read_slowly() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if receiver.poll(300):
                received.append(receiver.recv_multipart())
                if len(received) % 100 == 0:
                    time.sleep(0.01)
            elif sent.is_set():
                return

    reader = threading.Thread(target=read_slowly)
    reader.start()
    try:
        for _ in range(count):
            publisher.publish(big)
        sent.set()
        reader.join(30)
    finally:
        publisher.close(0)
        receiver.close()
    if blocking:
        assert publisher.dropped == 0 and len(received) == count
    else:  # a trainer's XPUB drops silently at the mark: it never waits
        assert len(received) < count


def until_state(client: CloneClient, state: str, timeout: float = 5.0) -> list[Envelope]:
    """Messages received until a ``status`` saying ``state`` is among them (all of them)."""
    got: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += client.poll(0.05)
        if any(m.kind == "status" and getattr(m, "state", None) == state for m in got):
            return got
    raise AssertionError(f"no status {state!r} within {timeout} s: {[m.kind for m in got]}")


def present(broker: Forwarder, name: str) -> None:
    """Send the presenter's command ``name`` through the broker, as the viewer does."""
    from broker.clients.request import ask
    from protocol import ControlCommand, tokens
    from protocol.snapshot import ControlRequest

    body = ControlCommand(command=name).model_dump()  # type: ignore[arg-type]
    token = tokens.presenter_token()[0]
    ask(broker.snapshot_endpoint, ControlRequest(type="control", command=body, token=token), 5.0)


def test_the_presenter_stops_a_looping_replay_at_full_speed(tmp_path, broker, client) -> None:
    path = write_recording(tmp_path / "talk.mcap", make_run("talk", seconds=4.0))
    replay = Replay(path, broker.endpoints[0], speed=math.inf, loop=True, progress=False)
    thread = threading.Thread(target=replay.run)
    thread.start()
    try:
        collect(client, 20)  # it is playing, pass after pass
        present(broker, "stop")
        thread.join(10)
        assert not thread.is_alive() and replay.stopped, "Stop is heard at --speed max too"
    finally:
        replay.stop.set()
        thread.join(10)


def test_the_presenter_pauses_resumes_and_stops_a_replay(tmp_path, broker, client) -> None:
    from viewer.runs.state import RunHistory

    def command(name: str) -> None:
        present(broker, name)

    original = make_run("talk", seconds=4.0)
    path = write_recording(tmp_path / "talk.mcap", original)
    replay = Replay(path, broker.endpoints[0], speed=1, progress=False)
    thread = threading.Thread(target=replay.run)
    thread.start()
    try:
        received = collect(client, 20)
        page = RunHistory(received[0].run_id)
        for message in received:
            page.apply(message)
        assert page.status == "replay"

        command("pause")
        received += until_state(client, "paused")
        (paused,) = [m for m in received if getattr(m, "state", None) == "paused"]
        for message in received[20:]:
            page.apply(message)
        assert page.status == "paused"
        time.sleep(0.8)
        held = client.poll(0.1)
        assert held == [], f"{len(held)} messages sent while paused"

        command("resume")
        after = until_state(client, "training")
        resumed = next(m for m in after if getattr(m, "state", None) == "training")
        assert not resumed.replayed, "the replay's own announcement, not a recorded one"
        page.apply(resumed)
        assert page.status == "replay"
        after += collect(client, 5)
        # the rest of the run keeps its timing, moved later by the pause
        gap = after[-5].sent_at - paused.sent_at
        assert gap >= 0.8, gap

        command("stop")
        thread.join(10)
        assert not thread.is_alive() and replay.stopped
        rest: list[Envelope] = []  # what was in flight, up to the end the replay sent
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(m.kind == "run_finished" for m in rest):
            rest += client.poll(0.1)
        rest += client.poll(0.2)
        sent = received + after + rest
        assert len(sent) < len(original), "stopped before the end"
        # No recorded end was sent; the replay ended the run itself, so the page says so.
        ends = [(m.status, m.replayed, m.message) for m in sent if m.kind == "run_finished"]
        assert ends == [("stopped", False, "stopped by the presenter")]
        assert sent[-1].kind == "run_finished"
        assert [m.seq for m in sent] == list(range(len(sent))), "gapless, statuses included"
    finally:
        replay.stop.set()
        thread.join(10)
