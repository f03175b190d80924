"""The hand-over between the broker and its recording process: batches of messages as bytes.

The broker sends each message's frames behind a small head (seq, send time, run id), so the
writer rebuilds nothing, and gathers many messages into one ZeroMQ message. The layout is
plain length-prefixed frames rather than pickle, so the writer process never runs what it
receives; :func:`unpack_batch` refuses anything :func:`pack_batch` would not have made.
"""

from __future__ import annotations

import struct

from protocol import Envelope

QUEUE_BATCHES = 32
"""Batches waiting on each side of the hand-over before the recording drops: a bound on memory
(at most ~2 x 32 x 4 MB) and minutes of a normal run."""
CLOSE = b"close"
"""The broker's last word to the writer: close every file whole and exit."""

_HEAD = struct.Struct("<qd")


def head(message: Envelope) -> bytes:
    """The envelope fields the writer needs, as a frame sent ahead of the message's own."""
    return _HEAD.pack(message.seq, message.sent_at) + message.run_id.encode()


def read_head(frame: bytes) -> tuple[int, float, str]:
    """``(seq, sent_at, run_id)`` from :func:`head`'s frame; ValueError if it is not one."""
    if len(frame) <= _HEAD.size:
        raise ValueError("a message head without a run id")
    seq, sent_at = _HEAD.unpack_from(frame)
    return seq, sent_at, frame[_HEAD.size :].decode()


_COUNT = struct.Struct("<I")


def pack_batch(batch: list[list[bytes]]) -> bytes:
    """Messages' frames as one byte string: per message a frame count, per frame its length.

    A plain layout rather than pickle, so the writer process never runs what it receives.
    """
    parts: list[bytes] = []
    pack = _COUNT.pack
    for frames in batch:
        parts.append(pack(len(frames)))
        for frame in frames:
            parts.append(pack(len(frame)))
            parts.append(frame)
    return b"".join(parts)


def unpack_batch(body: bytes) -> list[list[bytes]]:
    """The inverse of :func:`pack_batch`; ValueError for anything it would not have made."""
    view, at, out = memoryview(body), 0, []
    unpack = _COUNT.unpack_from
    try:
        while at < len(view):
            (count,) = unpack(view, at)
            at += 4
            if not 2 <= count <= 17:
                raise ValueError(f"a message of {count} frames")
            frames = []
            for _ in range(count):
                (length,) = unpack(view, at)
                at += 4
                if at + length > len(view):
                    raise ValueError("a frame runs past the end of the batch")
                frames.append(bytes(view[at : at + length]))
                at += length
            out.append(frames)
    except struct.error as exc:
        raise ValueError(f"cut short: {exc}") from None
    return out
