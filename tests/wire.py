"""Helpers for tests that talk to a real broker: a snapshot client's requests, a little training."""

from __future__ import annotations

import json

import numpy as np
import zmq

from broker.clients.publisher import Publisher
from protocol import SamplePrediction, TrainingMetrics, decode
from protocol.snapshot import StatsRequest

STATS = StatsRequest(type="stats")
"""The broker's figures, as ``mnist-live status`` asks for them."""


def dealer(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def ask(socket: zmq.Socket, body: dict | bytes) -> tuple[list, dict]:
    """One request; the decoded ``msg`` replies and the final JSON reply."""
    socket.send(body if isinstance(body, bytes) else json.dumps(body).encode())
    messages = []
    while socket.poll(5000):
        frames = socket.recv_multipart()
        if frames[0] == b"msg":
            messages.append(decode(frames[1:]))
        else:
            assert frames[0] == b"reply"
            return messages, json.loads(frames[1])
    raise AssertionError("no reply from the snapshot service")


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


def sample(publisher: Publisher, step: int) -> None:
    publisher.send(
        SamplePrediction,
        step=step,
        index=step,
        label=1,
        image=np.full((28, 28), step % 256, np.uint8),
        probabilities=[0.5, 0.5],
    )


def progress(publisher: Publisher, steps: range, sample_every: int = 10) -> None:
    """Training as the viewer sees it: metrics every step, a sample every ``sample_every``."""
    for step in steps:
        metrics(publisher, step)
        if step % sample_every == 0:
            sample(publisher, step)
