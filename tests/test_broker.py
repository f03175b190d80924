"""The broker validates, remembers and forwards between real sockets, and answers requests."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
import zmq.utils.monitor

from broker.clients.publisher import Publisher
from broker.forwarder import Forwarder
from broker.history import LISTENING_SECONDS, LIVE_SECONDS, NEW_RUN_BURST, SEQ_WINDOW, History
from protocol import (
    PROTOCOL_VERSION,
    RunFinished,
    RunStarted,
    SamplePrediction,
    decode,
    encode,
    tokens,
)
from protocol.runlog import RunLog, SeqSet
from tests.conftest import assert_one_line_error, run_cli, wait_until
from tests.recordings import Feed
from tests.test_presenter import run_started_fields
from tests.wire import ask, dealer, metrics, sample


def subscriber(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def receive_all(socket: zmq.Socket, count: int, timeout: float = 5.0) -> list:
    received: list = []
    wait_until(
        lambda: (
            (socket.poll(50) and received.append(decode(socket.recv_multipart())))
            or len(received) >= count
        ),
        timeout=timeout,
        interval=0,
        message=f"{count} messages",
    )
    return received


def join(publisher: Publisher, sub: zmq.Socket) -> None:
    """Publish warm-up messages until the subscriber gets one (ZeroMQ's slow joiner), then
    discard the warm-up so the test starts from a clean stream."""
    for _ in range(100):
        metrics(publisher, 0)
        if sub.poll(50):
            break
    while sub.poll(200):
        sub.recv_multipart()


def raw_publisher(address: str) -> zmq.Socket:
    """A socket that can send any frames at all, once the broker has subscribed to it."""
    socket = zmq.Context.instance().socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    assert socket.poll(5000), "broker never subscribed"
    socket.recv()
    return socket


def publishing(broker: Forwarder, steps: int, timeout: float = 5) -> Publisher:
    """A publisher whose first ``steps`` metrics the broker has accepted."""
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    for step in range(steps):
        metrics(publisher, step)
    wait_until(
        lambda: broker.stats.accepted["metrics"] == steps, timeout, message="metrics accepted"
    )
    return publisher


def test_valid_messages_are_forwarded_in_order(broker: Forwarder) -> None:
    in_address, out_address = broker.endpoints
    publisher, sub = Publisher(in_address), subscriber(out_address)
    join(publisher, sub)
    first = publisher.seq
    for step in range(500):
        metrics(publisher, step)
    received = receive_all(sub, 500)
    assert [m.seq for m in received] == list(range(first, first + 500))
    assert [m.step for m in received] == list(range(500))
    assert broker.stats.forwarded["metrics"] >= 500
    publisher.close()
    sub.close()


def test_invalid_input_is_dropped_and_counted_while_valid_traffic_flows(broker) -> None:
    in_address, out_address = broker.endpoints
    publisher, sub = Publisher(in_address), subscriber(out_address)
    join(publisher, sub)
    rogue = raw_publisher(in_address)
    good = encode(
        SamplePrediction(
            run_id="r",
            seq=0,
            step=0,
            index=0,
            label=1,
            image=np.zeros((28, 28), np.uint8),
            probabilities=[0.1] * 10,
        )
    )
    garbage = {
        "frames": [b"metrics"],
        "unknown_kind": [b"gossip", b"{}"],
        "bad_json": [b"metrics", b"{oops"],
        "version": [good[0], good[1].replace(b'"protocol":%d' % PROTOCOL_VERSION, b'"protocol":7')],
        "bad_array": [good[0], good[1], b"\x00" * 10],
        "too_large": [b"metrics", b" " * (broker.max_message_bytes - 10), b"x" * 20],
        "kind_mismatch": [b"metrics", good[1]],
        "invalid": [good[0], good[1].replace(b'"label":1', b'"label":-1'), good[2]],
        "duplicate": good,  # the first copy below is accepted, this second one is not
    }
    rogue.send_multipart(good)
    expected_steps = []
    for step, frames in enumerate(garbage.values()):
        rogue.send_multipart(frames)
        metrics(publisher, step)
        expected_steps.append(step)
    received = receive_all(sub, len(expected_steps) + 1)
    assert [m.kind for m in received].count("sample") == 1
    assert [m.step for m in received if m.kind == "metrics"] == expected_steps
    wait_until(
        lambda: sum(broker.stats.dropped.values()) == len(garbage),
        5,
        message="every bad message counted",
    )
    assert dict(broker.stats.dropped) == dict.fromkeys(garbage, 1)
    assert not sub.poll(200), "nothing invalid may reach a subscriber"
    for socket in (rogue, sub):
        socket.close()
    publisher.close()


def test_random_frames_never_crash_the_broker(broker) -> None:
    in_address, out_address = broker.endpoints
    publisher, sub = Publisher(in_address), subscriber(out_address)
    join(publisher, sub)
    rogue = raw_publisher(in_address)
    rng = random.Random(4)
    image = np.zeros((28, 28), np.uint8)
    valid = encode(SamplePrediction(run_id="fuzz", seq=0, step=0, index=0, label=1, image=image,
                                    probabilities=[0.5, 0.5]))  # fmt: skip
    for _ in range(300):
        frames = [bytearray(f) for f in valid[: rng.randint(1, 4)]]
        for _ in range(rng.randint(1, 6)):  # mutate bytes, or replace a frame by noise
            frame = rng.choice(frames)
            if frame and rng.random() < 0.7:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            else:
                frame[:] = rng.randbytes(rng.randint(0, 64))
        rogue.send_multipart([bytes(f) for f in frames])
    rogue.send_multipart([b"metrics", b"[" * 100_000 + b"]" * 100_000])  # deep nesting
    wait_until(lambda: broker.stats.received >= 301, 10, message="all fuzz received")
    for step in range(10):
        metrics(publisher, step)
    ours = [m for m in receive_all(sub, 10, timeout=10) if m.run_id == publisher.run_id]
    while len(ours) < 10 and sub.poll(1000):  # mutations that stayed valid came first
        ours.append(decode(sub.recv_multipart()))
    assert [m.step for m in ours if m.run_id == publisher.run_id] == list(range(10))
    assert sum(broker.stats.dropped.values()) >= 250
    assert broker.stats.dropped["invalid"] >= 1  # the deeply nested one among them
    rogue.close()
    sub.close()
    publisher.close()


def test_snapshot_keeps_every_curve_point_and_only_the_latest_state(broker) -> None:
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    for step in range(50):
        metrics(publisher, step)
        sample(publisher, step)
    wait_until(lambda: broker.stats.accepted["sample"] == 50, 5, message="all accepted")
    client = dealer(broker.snapshot_endpoint)
    messages, end = ask(client, {"type": "snapshot", "run": "latest", "id": "a"})
    assert [m.kind for m in messages] == ["metrics"] * 50 + ["sample"]
    assert messages[-1].seq == 99 and messages[-1].step == 49
    assert end["id"] == "a" and end["run"] == publisher.run_id and end["known"]
    assert (end["to_seq"], end["last_seq"], end["sent"], end["gone"]) == (99, 99, 51, 49)
    assert end["unseen"] == []

    messages, end = ask(client, {"type": "snapshot", "run": publisher.run_id, "from_seq": 10,
                                 "to_seq": 19})  # fmt: skip
    assert [m.seq for m in messages] == [10, 12, 14, 16, 18] and end["gone"] == 5

    _, runs = ask(client, {"type": "runs"})
    assert [r["run_id"] for r in runs["runs"]] == [publisher.run_id]
    _, unknown = ask(client, {"type": "snapshot", "run": "nope"})
    assert not unknown["known"] and unknown["sent"] == 0
    for bad in (b"{oops", b'{"type":"snapshot","from_seq":-1}', b'{"type":"dance"}', b"[]"):
        _, reply = ask(client, bad)
        assert reply["type"] == "error", bad
    assert broker.service.counts["invalid"] == 4
    client.close()
    publisher.close()


def test_control_command_reaches_the_publisher_through_the_broker(broker) -> None:
    client = dealer(broker.snapshot_endpoint)
    token = tokens.presenter_token()[0]
    _, unheard = ask(client, {"type": "control", "command": {"command": "start"}, "token": token})
    assert unheard["type"] == "error" and "no trainer is listening" in unheard["message"]
    assert broker.service.counts["control_unheard"] == 1
    publisher = publishing(broker, 1)  # a run heard from: a trainer to obey
    command = {"command": "pace", "steps_per_second": 12.5}
    _, anonymous = ask(client, {"type": "control", "command": command})
    _, forged = ask(client, {"type": "control", "command": command, "token": "x" * 24})
    assert anonymous["type"] == forged["type"] == "error" and "token" in forged["message"]
    assert broker.service.counts["control_refused"] == 2 and publisher.poll_commands() == []
    _, reply = ask(client, {"type": "control", "command": command, "token": token})
    assert reply["ok"]
    commands = wait_until(publisher.poll_commands, 5, message="the command upstream")
    assert [(c.command, c.steps_per_second, c.run_id) for c in commands] == [("pace", 12.5, "*")]
    _, refused = ask(client, {"type": "control", "command": {"command": "explode"}, "token": token})
    assert refused["type"] == "error" and "command" in refused["message"]
    assert broker.service.counts["control"] == 1
    client.close()
    publisher.close()


def test_seq_set_tracks_gaps_and_refuses_repeats() -> None:
    seen = SeqSet(max_intervals=3)
    assert all(seen.add(s) for s in (0, 1, 2, 5, 6, 9))
    assert not seen.add(1) and not seen.add(9)
    assert seen.gaps(0, 10) == [[3, 4], [7, 8], [10, 10]]
    assert seen.count(0, 10) == 6 and seen.max == 9
    assert seen.add(4) and seen.gaps(0, 9) == [[3, 3], [7, 8]]
    assert seen.add(3) and seen.starts == [0, 9] and seen.ends == [7, 10]
    for s in (12, 14, 16):  # past the bound the lowest gap is given up as seen
        seen.add(s)
    assert len(seen.starts) <= 3 and 7 in seen


def test_seq_set_ranges_agree_with_a_plain_set() -> None:
    rng = random.Random(3)
    for _ in range(200):
        seen, plain = SeqSet(max_intervals=10_000), set()
        for _ in range(rng.randint(1, 12)):
            lo = rng.randint(0, 60)
            if rng.random() < 0.5:
                hi = lo + rng.randint(0, 15)
                assert seen.add_range(lo, hi) == len(set(range(lo, hi)) - plain)
                plain |= set(range(lo, hi))
            else:
                assert seen.add(lo) == (lo not in plain)
                plain.add(lo)
            assert [s for s in range(80) if s in seen] == sorted(plain)
            assert all(e < s2 for e, s2 in zip(seen.ends, seen.starts[1:], strict=False))


def test_a_replay_gap_of_twenty_million_costs_nothing() -> None:
    """A publisher's re-publish that jumps seqs marks the gap seen in one step: seq 2e7 then
    2e7 - 1 once stalled the broker for seconds, a step per seq in between."""
    log = RunLog("r")
    started = time.perf_counter()
    assert log.add(20_000_000, "metrics", [b"metrics", b"{}"])
    assert log.add(19_999_999, "metrics", [b"metrics", b"{}"])
    assert time.perf_counter() - started < 0.5
    assert log.superseded == 19_999_999 and log.seen.count(0, 20_000_000) == 20_000_001


def test_run_log_evicts_oldest_curve_points_but_keeps_the_run_start() -> None:
    frames = [b"metrics", b"x" * 800]
    log = RunLog("r", limit=10_000)
    log.add(0, "run_started", [b"run_started", b"{}"])
    for seq in range(1, 101):
        assert log.add(seq, "metrics", frames)
    assert log.held_bytes <= 10_000 and log.evicted > 80
    held = log.select(0, 100)
    assert held[0].kind == "run_started" and held[-1].seq == 100
    assert [h.seq for h in held[1:]] == list(range(101 - len(held) + 1, 101))
    assert not log.add(50, "metrics", frames), "an evicted seq is still a repeat"


def test_status_and_control_commands_talk_to_a_real_broker(broker) -> None:
    publisher = publishing(broker, 5, timeout=5)
    done = run_cli("status", "--broker", broker.snapshot_endpoint)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["in_by_kind"] == {"metrics": 5} and stats["runs"][0]["held"] == 5
    assert stats["bytes_held"] > 0 and stats["uptime"] > 0 and "dropped" in stats

    done = run_cli("control", "pause", "--broker", broker.snapshot_endpoint)
    assert done.returncode == 0, done.stderr
    commands = wait_until(publisher.poll_commands, 5, message="pause upstream")
    assert [c.command for c in commands] == ["pause"]
    publisher.close()


def test_a_command_with_no_trainer_listening_says_so(broker) -> None:
    publisher = publishing(broker, 3)
    done = run_cli("control", "pause", "--broker", broker.snapshot_endpoint, "--run", "nope")
    assert_one_line_error(done, "no trainer of run nope is listening")
    publisher.send(RunFinished, status="stopped", step=3, epoch=0)
    wait_until(lambda: broker.stats.accepted["run_finished"] == 1, 5, message="the finish")
    time.sleep(LISTENING_SECONDS + 0.2)  # a run that just finished may still be listening
    assert_one_line_error(
        run_cli("control", "start", "--broker", broker.snapshot_endpoint),
        "no trainer is listening",
    )
    publisher.close()


def test_status_without_a_broker_is_one_line_and_fails(endpoint) -> None:
    done = run_cli("status", "--broker", endpoint(), "--timeout", "0.5", timeout=10)
    assert_one_line_error(done, "no answer from a broker")


def test_protocol_schema_names_every_message_kind() -> None:
    done = run_cli("protocol", "schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    kinds = {schema["$defs"][ref["$ref"].split("/")[-1]]["properties"]["kind"]["const"]
             for ref in schema["oneOf"]}  # fmt: skip
    assert kinds == {"run_started", "metrics", "evaluation", "sample", "weights", "model",
                     "status", "tuned", "run_finished"}  # fmt: skip


def test_a_republish_tells_the_broker_which_seqs_were_superseded() -> None:
    """A fresh broker that hears a re-publish (ascending, latest state only) knows the gaps
    between re-sent seqs will never come, so snapshots report them gone, not unseen."""
    log = RunLog("r")
    frames = [b"metrics", b"{}"]
    for seq in (10, 11):  # live messages queued while the broker was down arrive first
        log.add(seq, "metrics", frames)
    for seq in (0, 1, 3, 4, 7, 8, 9, 10):  # the re-publish: 2, 5 and 6 were superseded
        log.add(seq, "metrics", frames)
    assert log.seen.gaps(0, 11) == [] and log.superseded == 3
    assert [h.seq for h in log.select(0, 11)] == [0, 1, 3, 4, 7, 8, 9, 10, 11]


def test_a_flood_of_made_up_runs_cannot_push_the_real_run_out(broker, tmp_path) -> None:
    """2,000 tiny messages, each naming a new run, once retired the live run's history (its
    run_started lost) and would have made a recording file each; now a few new runs are let in
    and then one per ten seconds, and a live run is never retired for them."""
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    publisher.send(RunStarted, **run_started_fields())
    for step in range(5):
        metrics(publisher, step)
    rogue = raw_publisher(broker.endpoints[0])
    forged = Feed("forged")
    for i in range(2_000):
        message = forged.metrics(1).model_copy(update={"run_id": f"forged-{i}", "seq": 0})
        rogue.send_multipart(encode(message))
    wait_until(lambda: broker.stats.received >= 2_006, 10, message="the flood through the broker")
    assert broker.stats.dropped["new_run_refused"] >= 2_000 - 8
    held = [run.run_id for run in broker.history]
    assert publisher.run_id in held and len(held) <= 4
    real = broker.history.find(publisher.run_id)
    assert real is not None and 0 in real.structural, "its run_started is still held"
    client = dealer(broker.snapshot_endpoint)
    messages, end = ask(client, {"type": "snapshot", "run": publisher.run_id})
    assert [m.kind for m in messages][:1] == ["run_started"] and end["sent"] == 6
    client.close()
    rogue.close()
    publisher.close()


def test_new_runs_come_in_at_a_bounded_rate_and_retire_only_quiet_ones() -> None:
    now = [0.0]
    history = History(runs_kept=2, clock=lambda: now[0])
    frames = [b"metrics", b"{}"]
    assert history.add("a", 0, "metrics", frames) is None
    assert history.add("b", 0, "metrics", frames) is None
    assert history.add("c", 0, "metrics", frames) == "new_run_refused", "a and b are live"
    now[0] += LIVE_SECONDS + 1
    history.add("b", 1, "metrics", frames)  # b still sends
    assert history.add("c", 1, "metrics", frames) == "new_run_refused", "c stays refused"
    assert history.add("d", 0, "metrics", frames) is None, "a was quiet: it is retired"
    assert [r.run_id for r in history] == ["b", "d"] and history.retired == 1
    history.add("d", 1, "run_finished", [b"run_finished", b"{}"])
    refused = 0
    for i in range(NEW_RUN_BURST + 5):
        now[0] += LIVE_SECONDS + 1  # every run quiet: only the credit limits
        refused += history.add(f"n{i}", 0, "metrics", frames) is not None
    assert refused == 0, "one new run per NEW_RUN_SECONDS is always let in"
    for i in range(NEW_RUN_BURST + 5):  # all at once: the burst, then nothing
        refused += history.add(f"burst{i}", 0, "metrics", frames) is not None
    assert refused >= 5
    late = f"burst{NEW_RUN_BURST + 4}"
    now[0] += 1_000  # credit and quiet runs again, yet a refused run stays refused: it would
    assert history.add(late, 1, "metrics", frames) == "new_run_refused"  # lack its start


def test_what_binds_off_loopback_is_told_apart() -> None:
    """The broker warns, naming the risk, for each endpoint other machines can reach."""
    from protocol.endpoints import reachable_from_network

    loopback = ["tcp://127.0.0.1:5555", "tcp://127.0.0.2:1", "tcp://localhost:9", "tcp://[::1]:5"]
    network = ["tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://10.0.0.10:5556", "tcp://[::]:5"]
    assert not any(reachable_from_network(e) for e in [*loopback, "ipc:///tmp/x"])
    assert all(reachable_from_network(e) for e in network)


def test_a_forged_seq_far_ahead_changes_nothing(broker) -> None:
    """A forged metrics with seq 10^12 once left every page waiting for the gap to fill."""
    publisher = publishing(broker, 3, timeout=5)
    forged = Feed(publisher.run_id).metrics(9)
    rogue = raw_publisher(broker.endpoints[0])
    for seq in (10**12, 2 * SEQ_WINDOW):
        rogue.send_multipart(encode(forged.model_copy(update={"seq": seq})))
    rogue.close()
    wait_until(lambda: broker.stats.dropped["seq_out_of_window"] == 2, 5, message="dropped")
    run = broker.history.find(publisher.run_id)
    assert run is not None and run.last_seq == 2
    metrics(publisher, 3)
    wait_until(lambda: broker.stats.accepted["metrics"] == 4, 5, message="the run goes on")
    publisher.close()


def test_a_client_that_asks_and_never_reads_fills_only_its_own_share(broker) -> None:
    """64 snapshot requests never read once made every other client's snapshot "busy"."""
    publisher = publishing(broker, 6_000, timeout=20)
    hoarder = dealer(broker.snapshot_endpoint)
    hoarder.setsockopt(zmq.RCVHWM, 10)
    for i in range(64):
        hoarder.send(json.dumps({"type": "snapshot", "run": "latest", "id": i}).encode())
    wait_until(lambda: broker.service.counts["snapshot"] == 64, 10, message="all asked")
    assert len(broker.service.pending) <= 4, "the hoarder's share, not the whole service"
    honest = dealer(broker.snapshot_endpoint)
    messages, end = ask(honest, {"type": "snapshot", "run": "latest", "id": "mine"})
    assert end["type"] == "end" and len(messages) == end["sent"] == 6_000
    hoarder.close()
    honest.close()
    publisher.close()


@pytest.mark.slow
def test_a_publisher_that_stops_answering_is_dropped_by_heartbeat(broker) -> None:
    """ZMTP heartbeats: a stopped process's connection is closed in seconds, not held
    half-open until TCP gives up."""
    monitor = broker.frontend.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
    script = (
        "import sys, time; from broker.clients.publisher import Publisher; "
        f"p = Publisher({broker.endpoints[0]!r}); p.wait_for_subscriber(5); "
        "print('up', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        child.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        events = []
        while time.monotonic() - stopped < 12:
            if not monitor.poll(200):
                continue
            event = zmq.utils.monitor.recv_monitor_message(monitor)
            events.append(event["event"])
            if event["event"] == zmq.EVENT_DISCONNECTED:
                break
        assert zmq.EVENT_DISCONNECTED in events, events
        assert time.monotonic() - stopped < 8, "within the heartbeat timeout, not minutes"
    finally:
        child.send_signal(signal.SIGCONT)
        child.kill()
        child.wait(5)
        broker.frontend.disable_monitor()
        monitor.close()
