"""Hostile input at the doors: whatever arrives, a clear refusal, never a crash.

Hypothesis sends the decoder, a real broker's ingress and its request service random,
truncated and oversized frames, wrong types, NaN and huge numbers, deep JSON and unicode. The
decoder and the request parser must answer with a :class:`ProtocolError` (a reason the broker
counts) or a valid message; the broker must count a drop and go on forwarding.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.forwarder import Forwarder
from protocol import MESSAGE_TYPES, ProtocolError, decode, encode
from protocol.snapshot import parse_request
from tests.recordings import Feed

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)
FIELDS = st.sampled_from(
    ["kind", "protocol", "run_id", "seq", "sent_at", "step", "loss", "label", "image", "tiles",
     "probabilities", "confusion", "units", "scale", "state", "status", "epoch"]
)  # fmt: skip


_feed = Feed("fuzz")
BASES = [
    encode(m)
    for m in (_feed.metrics(1), _feed.sample(2), _feed.evaluation(3), _feed.weights(4, tiles=3))
]
"""Real messages to bend, made once (each run of a test must draw from the same ones)."""


@st.composite
def messages(draw: st.DrawFn) -> list[bytes]:
    """Frames shaped like a message: a real message's JSON with fields replaced, removed or
    added, its array references bent, the frames cut or padded."""
    frames = draw(st.sampled_from(BASES))
    payload: dict[str, Any] = json.loads(frames[1])
    for _ in range(draw(st.integers(0, 3))):
        name = draw(FIELDS)
        if draw(st.booleans()):
            payload[name] = draw(JSON)
        else:
            payload.pop(name, None)
    text = json.dumps(payload, allow_nan=True)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    topic = draw(st.sampled_from([*MESSAGE_TYPES, "", "metrics\x00", "ünïcode"])).encode()
    binary = [bytes(f) for f in frames[2:]]
    if binary and draw(st.booleans()):
        binary[0] = binary[0][: draw(st.integers(0, len(binary[0])))]
    extra = draw(st.lists(st.binary(max_size=64), max_size=2))
    return [topic, text.encode(), *binary, *extra]


DEEP = ("[" * 100_000).encode()
HUGE = b'{"kind": "metrics", "loss": 1' + b"0" * 5_000 + b"}"


def decoded_or_refused(frames: list[bytes]) -> None:
    try:
        message = decode(frames)
    except ProtocolError as exc:
        assert exc.reason and str(exc)
    else:
        assert message.kind in MESSAGE_TYPES
        assert np.isfinite(message.sent_at)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_the_decoder_refuses_bent_messages_with_a_reason(frames: list[bytes]) -> None:
    decoded_or_refused(frames)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_the_decoder_refuses_random_frames_with_a_reason(frames: list[bytes]) -> None:
    decoded_or_refused(frames)


def test_deep_huge_and_oversized_frames_are_refused() -> None:
    for body in (DEEP, HUGE, b"\xff\xfe" * 10, b"NaN", b'{"kind":"metrics","seq":NaN}'):
        decoded_or_refused([b"metrics", body])
    decoded_or_refused([b"weights", b"{}", bytes(20 * 2**20)])  # over the size limit


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), JSON.map(lambda v: json.dumps(v).encode())))
def test_a_snapshot_request_is_parsed_or_refused_with_a_reason(body: bytes) -> None:
    try:
        parse_request(body)
    except ProtocolError as exc:
        assert exc.reason in ("too_large", "invalid")


def test_the_brokers_ingress_counts_every_bad_message_and_goes_on(endpoint) -> None:
    broker = Forwarder(endpoint(), endpoint(), endpoint())
    try:

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(messages(), st.lists(st.binary(max_size=200), max_size=5)))
        def feed(frames: list[bytes]) -> None:
            broker.handle(frames)

        feed()
        for body in (DEEP, HUGE):
            broker.handle([b"metrics", body])
        handled = broker.stats.received
        dropped = sum(broker.stats.dropped.values())
        assert handled >= 202 and dropped > handled / 2
        assert sum(broker.stats.accepted.values()) + dropped == handled, "each one counted"
        good = Feed("after-the-storm").metrics(1)
        broker.handle(encode(good))
        assert broker.history.find("after-the-storm") is not None
    finally:
        broker.close()
