"""The broker forwards valid messages between real sockets and drops everything else."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from broker.forwarder import Forwarder
from protocol import SamplePrediction, TrainingMetrics, decode, encode
from tests.conftest import wait_until
from trainer.publisher import Publisher


@pytest.fixture
def broker(endpoint):
    forwarder = Forwarder(endpoint(), endpoint())
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop, 20))
    thread.start()
    yield forwarder
    stop.set()
    thread.join(5)
    forwarder.close()


def subscriber(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def metrics(publisher: Publisher, step: int) -> None:
    publisher.send(
        TrainingMetrics,
        step=step,
        epoch=0,
        samples_seen=step,
        loss=1.0,
        batch_accuracy=0.5,
        learning_rate=0.1,
        samples_per_second=1.0,
    )


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
        "version": [good[0], good[1].replace(b'"protocol":1', b'"protocol":7')],
        "bad_array": [good[0], good[1], b"\x00" * 10],
        "too_large": [b"metrics", b" " * (broker.max_message_bytes - 10), b"x" * 20],
    }
    expected_steps = []
    for step, frames in enumerate(garbage.values()):
        rogue.send_multipart(frames)
        metrics(publisher, step)
        expected_steps.append(step)
    received = receive_all(sub, len(expected_steps))
    assert [m.step for m in received] == expected_steps
    assert all(m.kind == "metrics" for m in received)
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
