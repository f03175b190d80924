"""The one encode/decode pair every program uses for the wire.

A message is a ZeroMQ multipart: ``[topic, json]`` plus one binary frame per array field.
The topic is the message ``kind`` so subscribers can filter by prefix without decoding. In the
JSON, an array field holds a reference ``{"frame": N, "dtype": "uint8", "shape": [...]}`` to
frame N. Decoding trusts nothing: sizes, frame counts, dtypes and shapes are checked before a
byte is interpreted, and the result is validated by the pydantic model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from pydantic import TypeAdapter, ValidationError

from protocol.control import ControlCommand
from protocol.messages import (
    ARRAY_FIELDS,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    READABLE_VERSIONS,
    Envelope,
    Message,
)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest multipart (all frames) a receiver accepts by default: room for a 4M-parameter model."""

MAX_CONTROL_BYTES = 4096

_ALLOWED_DTYPES = {"uint8", "float32"}
_MESSAGE_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(Message)
_ON_THE_WIRE = frozenset({"kind", "protocol", "sent_at"})
"""Fields with defaults in the models that a message on the wire must still carry."""


class ProtocolError(ValueError):
    """A frame sequence that is not a valid message; ``reason`` is a short stable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def encode(message: Envelope) -> list[bytes]:
    """Turn a message into the frames to send: ``[topic, json, *array_frames]``."""
    payload = message.model_dump(mode="python", exclude=set(ARRAY_FIELDS[message.kind]))
    frames: list[bytes] = []
    for name in ARRAY_FIELDS[message.kind]:
        array = np.ascontiguousarray(getattr(message, name))
        payload[name] = {
            "frame": 2 + len(frames),
            "dtype": str(array.dtype),
            "shape": list(array.shape),
        }
        frames.append(array.tobytes())
    header = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return [message.kind.encode(), header, *frames]


def decode(frames: Sequence[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Validate and rebuild a message from received frames, or raise :class:`ProtocolError`."""
    if len(frames) < 2:
        raise ProtocolError("frames", f"expected [topic, json, ...], got {len(frames)} frame(s)")
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        raise ProtocolError("too_large", f"{size} bytes exceeds the limit of {max_bytes}")
    topic = bytes(frames[0]).decode("utf-8", "replace")
    if topic not in MESSAGE_TYPES:
        raise ProtocolError("unknown_kind", f"unknown message kind {topic[:40]!r}")
    if len(frames) == 2 and not ARRAY_FIELDS[topic]:
        # The common small messages: pydantic parses the JSON bytes straight into the one model
        # the topic names (half the time of json.loads plus the union below), with the same
        # checks. Anything it refuses goes the long way round, which says precisely why.
        try:
            message = MESSAGE_TYPES[topic].model_validate_json(frames[1])
        except ValidationError:
            pass
        else:
            if message.model_fields_set >= _ON_THE_WIRE:  # defaults don't count: sent or not
                return message
    try:
        payload = json.loads(frames[1])
    except ValueError as exc:  # bad JSON, bad UTF-8, or a number of thousands of digits
        raise ProtocolError("bad_json", str(exc)[:200]) from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(payload, dict):
        raise ProtocolError("bad_json", "the JSON frame must hold an object")
    if payload.get("kind") != topic:
        raise ProtocolError("kind_mismatch", f"topic {topic!r} but kind {payload.get('kind')!r}")
    if payload.get("protocol") not in READABLE_VERSIONS:
        raise ProtocolError(
            "version",
            f"protocol version {payload.get('protocol')!r} is not supported "
            f"(this program reads {', '.join(map(str, sorted(READABLE_VERSIONS)))} "
            f"and writes {PROTOCOL_VERSION})",
        )
    missing = sorted(_ON_THE_WIRE - payload.keys())
    if missing:
        raise ProtocolError("invalid", f"{topic}: {', '.join(missing)} missing")
    array_fields = ARRAY_FIELDS[topic]
    if len(frames) != 2 + len(array_fields):
        raise ProtocolError(
            "frames", f"{topic} takes {2 + len(array_fields)} frames, got {len(frames)}"
        )
    for name in array_fields:
        payload[name] = _array_from_reference(payload.get(name), frames, name)
    try:
        return _MESSAGE_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        raise ProtocolError("invalid", first_error(exc, topic)) from None


def first_error(exc: ValidationError, within: str = "", depth: int | None = None) -> str:
    """pydantic's first complaint as one short line, ``within.where: what``: a user reads one
    line, not pydantic's report with its links. ``depth`` cuts the field path."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"][:depth])
    place = f"{within}.{where}" if within else where
    what = first["msg"].removeprefix("Value error, ")  # a validator's own words need no label
    return f"{place}: {what}" if place else what


def _array_from_reference(ref: object, frames: Sequence[bytes], name: str) -> np.ndarray:
    if not isinstance(ref, dict) or set(ref) != {"frame", "dtype", "shape"}:
        raise ProtocolError("bad_array", f"{name} must be an array reference")
    index, dtype, shape = ref["frame"], ref["dtype"], ref["shape"]
    if not isinstance(index, int) or not 2 <= index < len(frames):
        raise ProtocolError("bad_array", f"{name} points at missing frame {index!r}")
    if dtype not in _ALLOWED_DTYPES:
        raise ProtocolError("bad_array", f"{name} has unsupported dtype {dtype!r}")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 4
        or not all(isinstance(d, int) and 0 <= d <= 16_000_000 for d in shape)
    ):
        raise ProtocolError("bad_array", f"{name} has an invalid shape {shape!r}")
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    data = frames[index]
    if len(data) != expected:
        raise ProtocolError(
            "bad_array", f"{name} frame holds {len(data)} bytes, shape needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def encode_control(command: ControlCommand) -> bytes:
    """A presenter command as the one JSON frame that travels upstream to trainers. Fields at
    their default (null) stay out: a receiver that predates one of them still reads it."""
    return command.model_dump_json(exclude_none=True).encode()


def decode_control(frame: bytes) -> ControlCommand:
    """Validate an upstream control frame, or raise :class:`ProtocolError`."""
    if len(frame) > MAX_CONTROL_BYTES:
        raise ProtocolError("too_large", f"control frame of {len(frame)} bytes")
    if frame[:1] != b"{":
        raise ProtocolError("bad_json", "a control frame is one JSON object")
    try:
        return ControlCommand.model_validate_json(frame)
    except ValidationError as exc:
        raise ProtocolError("invalid", first_error(exc, "control")) from None


def message_json_schema() -> dict:
    """The JSON Schema of every message, as a program in another language would need it:
    JSON Schema 2020-12, strict (:func:`protocol.schema.strict`)."""
    from protocol.schema import strict

    return strict(_MESSAGE_ADAPTER.json_schema(mode="validation"), required=_ON_THE_WIRE)
