"""The Clone dance against a real broker: late joiners, slow subscribers, broker restarts."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import zmq

from broker.clients.clone import CloneClient, Phase
from broker.clients.publisher import Publisher
from broker.forwarder import Forwarder
from protocol import Evaluation, TrainingMetrics, encode
from protocol.endpoints import free_tcp_port
from tests.conftest import collect, wait_until
from tests.wire import ask, dealer, metrics, progress
from viewer.sources.live import Hub


def evaluation(publisher: Publisher, step: int) -> None:
    """A large-ish message (~6 KB with its mistake images), to fill queues quickly."""
    publisher.send(
        Evaluation,
        step=step,
        epoch=0,
        accuracy=0.5,
        loss=1.0,
        examples=8,
        misclassified_images=np.full((8, 28, 28), step % 256, np.uint8),
        misclassified_index=list(range(8)),
        misclassified_label=[1] * 8,
        misclassified_predicted=[2] * 8,
    )


def published_run(make_broker, steps: int) -> tuple[Forwarder, Publisher]:
    """A broker holding a run of ``steps`` metrics (a sample every 50), and its publisher."""
    broker = make_broker()
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    progress(publisher, range(steps), sample_every=50)
    accepted = broker.stats.accepted
    wait_until(lambda: accepted["metrics"] == steps, 5, message="all accepted")
    return broker, publisher


def bare_publisher(endpoint: str) -> zmq.Socket:
    """A PUB socket bound where a broker's --out would be, with no snapshot service behind it."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    return pub


def metrics_frames(count: int) -> list[list[bytes]]:
    """Run "r"'s first ``count`` metrics messages, as wire frames."""
    return [
        encode(TrainingMetrics(run_id="r", seq=seq, step=seq, epoch=0, samples_seen=0, loss=1,
                               batch_accuracy=0, learning_rate=0.1, samples_per_second=0))
        for seq in range(count)
    ]  # fmt: skip


def test_late_subscriber_gets_all_thousand_messages_in_order(make_broker) -> None:
    broker = make_broker()
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    for step in range(1000):
        metrics(publisher, step)
    wait_until(lambda: broker.stats.accepted["metrics"] == 1000, 5, message="all accepted")

    client = CloneClient(broker.endpoints[1], broker.snapshot_endpoint)
    client.start()
    for step in range(1000, 1100):  # live traffic while the snapshot is being fetched
        metrics(publisher, step)
    received = collect(client, 1100)
    assert [m.seq for m in received] == list(range(1100))
    assert [m.step for m in received] == list(range(1100))
    assert client.counts["from_snapshot"] >= 1000 and client.counts["duplicates"] >= 0
    assert not client.poll(0.3), "nothing delivered twice"
    client.close()
    publisher.close()


def test_paused_subscriber_over_its_high_water_mark_is_repaired(make_broker) -> None:
    broker = make_broker(subscriber_hwm=20)
    publisher = Publisher(broker.endpoints[0])
    assert publisher.wait_for_subscriber(5)
    client = CloneClient(
        broker.endpoints[1], broker.snapshot_endpoint, receive_hwm=20, receive_buffer=4096
    )
    client.start()
    metrics(publisher, 0)
    collect(client, 1)  # live and caught up

    for step in range(1, 3001):  # the client is not polled: a sleeping laptop
        metrics(publisher, step)
        if step % 5 == 0:
            evaluation(publisher, step)
    wait_until(lambda: broker.stats.accepted["metrics"] == 3001, 10, message="all accepted")
    received = collect(client, lambda got: sum(m.kind == "metrics" for m in got) >= 3000)
    steps = [m.step for m in received if isinstance(m, TrainingMetrics)]
    assert steps == list(range(1, 3001))
    assert [m.seq for m in received] == sorted({m.seq for m in received})
    assert client.counts["repaired"] > 0, "the high-water mark should have dropped something"
    assert client.counts["unrepairable"] == 0
    assert broker.service.counts["repair"] > 0
    client.close()
    publisher.close()


def test_client_gives_up_on_a_gap_when_the_broker_is_gone(endpoint) -> None:
    """Without a snapshot service the client still delivers, after ``gap_timeout``."""
    out = endpoint()
    pub = bare_publisher(out)
    client = CloneClient(out, endpoint(), request_timeout=0.3, gap_timeout=0.5)
    client.start()
    frames = metrics_frames(6)
    got: list = []
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        for seq in (0, 1, 4, 5):
            pub.send_multipart(frames[seq])
        got.extend(client.poll(0.1))
    assert [m.seq for m in got][:4] == [0, 1, 4, 5]
    assert client.counts["unrepairable"] == 2
    client.close()
    pub.close()


def test_hub_renders_history_from_a_snapshot(make_broker) -> None:
    broker, publisher = published_run(make_broker, 200)
    hub = Hub(broker.endpoints[1], broker.snapshot_endpoint)
    hub.start()
    try:
        run = wait_until(lambda: hub.current, 5, message="a run in the hub")
        wait_until(lambda: len(run.metrics["step"]) == 200, 5, message="the whole curve")
        assert run.metrics["step"] == list(range(200)) and run.sample.step == 150
    finally:
        hub.stop()
        publisher.close()


def test_kill_9_and_restart_of_the_broker_restores_the_history(programs) -> None:
    """The trainer side re-publishes to the fresh broker; a late subscriber sees it all."""
    ports = [free_tcp_port() for _ in range(3)]
    in_, out, snap = (f"tcp://127.0.0.1:{p}" for p in ports)
    args = ("broker", "--in", in_, "--out", out, "--snapshot", snap)
    broker = programs.start(*args)
    publisher = Publisher(in_)
    assert publisher.wait_for_subscriber(20)
    progress(publisher, range(400))
    watcher = CloneClient(out, snap)
    watcher.start()
    collect(watcher, 400, timeout=10)
    watcher.close()

    os.killpg(broker.pid, signal.SIGKILL)
    broker.wait()
    for step in range(400, 500):  # training goes on while the broker is down
        metrics(publisher, step)
    programs.start(*args)
    restarted = None
    deadline = time.monotonic() + 20
    while restarted is None and time.monotonic() < deadline:
        publisher.poll_commands()  # what the trainer does between steps
        if publisher.subscriptions >= 2:
            restarted = time.monotonic()
        time.sleep(0.01)
    assert restarted is not None, "the restarted broker never subscribed"
    probe, whole_after = dealer(snap), None
    while whole_after is None and time.monotonic() < restarted + 2:
        publisher.poll_commands()  # the trainer between steps: the re-publish advances here
        _, end = ask(probe, {"type": "snapshot", "from_seq": 0, "to_seq": 0})
        if end["last_seq"] == publisher.seq - 1 and end["run"] == publisher.run_id:
            full = ask(probe, {"type": "snapshot"})[1]
            if not full["unseen"]:
                whole_after = time.monotonic() - restarted
    probe.close()
    assert whole_after is not None, "the history was not whole within 2 s of the restart"
    print(f"history whole {whole_after:.3f} s after the restarted broker subscribed")

    late = CloneClient(out, snap, gap_timeout=5)
    late.start()
    received = collect(late, lambda got: got and got[-1].seq == publisher.seq - 1, timeout=5)
    steps = [m.step for m in received if m.kind == "metrics"]
    assert steps == list(range(500))
    assert [m.kind for m in received].count("sample") == 1
    assert late.counts["unrepairable"] == 0
    late.close()
    publisher.close()


def test_the_client_moves_through_its_named_states(make_broker, endpoint) -> None:
    """asking -> syncing -> live against a broker; live -> repairing -> live around a gap."""
    broker, publisher = published_run(make_broker, 300)
    client = CloneClient(broker.endpoints[1], broker.snapshot_endpoint)
    assert client.state is Phase.ASKING
    client.start()
    seen = {client.state}
    received: list = []
    deadline = time.monotonic() + 10
    while len(received) < 301 and time.monotonic() < deadline:  # 300 metrics, the last sample
        received += client.poll(0.005)
        seen.add(client.state)
    assert len(received) == 301 and client.state is Phase.LIVE
    assert {Phase.ASKING, Phase.LIVE} <= seen
    client.close()
    publisher.close()

    out = endpoint()
    pub = bare_publisher(out)
    lone = CloneClient(out, endpoint(), request_timeout=0.2, gap_timeout=0.6)
    lone.start()
    frames = metrics_frames(5)
    states, got = [], []
    deadline = time.monotonic() + 5
    while not any(m.seq == 4 for m in got) and time.monotonic() < deadline:
        for seq in (0, 1) if not got else (4,):
            pub.send_multipart(frames[seq])
        got += lone.poll(0.05)
        states.append(lone.state)
    assert Phase.REPAIRING in states, states  # seq 4 waited behind the gap 2..3
    assert states[-1] is Phase.LIVE and lone.counts["unrepairable"] == 2
    lone.close()
    pub.close()
