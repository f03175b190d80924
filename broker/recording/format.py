"""Runs on disk: the MCAP recording format, from wire frames to records and back.

A recording is an MCAP file (https://mcap.dev) that any MCAP tool can open without MNIST
Live's code: one channel per message kind (the topic is the kind), each carrying the JSON
Schema of its pydantic model (schema encoding ``jsonschema``, message encoding ``json``).
A message is the wire protocol's JSON object, except that an array field holds the array
itself, ``{"dtype": "uint8", "shape": [28, 28], "data": "<base64>"}``, instead of a reference
to a binary frame: compact (raw bytes, then zstd over the chunk) and still plain JSON, as
Foxglove expects of bytes in JSON messages. Log and publish time are the trainer's send time;
the MCAP sequence is the message's ``seq``. Every ``run_started`` also goes into a metadata
record named :data:`RUN_METADATA` (dataset, architecture, hyperparameters, versions).

:mod:`broker.recording.writer` writes files in this format, :mod:`broker.recording.reader`
reads them back.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import platform
from typing import Any, Final

import numpy as np

from protocol import MESSAGE_TYPES, RunStarted
from protocol.codec import ProtocolError
from protocol.messages import ARRAY_FIELDS

log = logging.getLogger("broker.recording")

PROFILE: Final = "mnist-live"
SCHEMA_ENCODING: Final = "jsonschema"
MESSAGE_ENCODING: Final = "json"
RUN_METADATA: Final = "mnist-live.run"
"""Name of the metadata record written for each run that starts in a recording."""
RECORDING_METADATA: Final = "mnist-live.recording"
"""Name of the metadata record at the start of every file: who wrote it, when, from where."""


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist-live")
    except PackageNotFoundError:
        return "unknown"


def record_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a recorded ``kind`` message: the model's, with arrays held inline."""
    schema = MESSAGE_TYPES[kind].model_json_schema()
    for name in ARRAY_FIELDS[kind]:
        wire = schema["properties"][name]
        inline = copy.deepcopy(wire)
        inline["description"] = wire["description"].split(" On the wire:")[0] + (
            " In a recording: the array inline, its bytes base64-encoded (little-endian, C order)."
        )
        properties = inline["properties"]
        del properties["frame"]
        properties["data"] = {"type": "string", "contentEncoding": "base64"}
        inline["required"] = ["dtype", "shape", "data"]
        inline["additionalProperties"] = False
        schema["properties"][name] = inline
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def to_record(frames: list[bytes]) -> bytes:
    """Wire frames ``[topic, json, *arrays]`` as the JSON a recording holds.

    The common case splices each array's base64 into the JSON text where its reference opens,
    ``{"frame":N,`` becoming ``{"data":"...",``: a quote in a JSON string is escaped, so that
    text, found exactly once, is the reference itself. Parsing and re-serialising a weight
    mosaic's JSON instead costs ten times as much. Anything else takes the long way.
    """
    if len(frames) == 2:
        return bytes(frames[1])  # no arrays: the wire JSON is already the recorded form
    text = bytes(frames[1])
    for index in range(2, len(frames)):
        reference = b'{"frame":%d,' % index
        if text.count(reference) != 1:
            return _to_record_parsed(frames)
        inline = b'{"data":"' + base64.b64encode(frames[index]) + b'",'
        text = text.replace(reference, inline)
    return text


def _to_record_parsed(frames: list[bytes]) -> bytes:
    payload = json.loads(frames[1])
    kind = payload["kind"]
    for name in ARRAY_FIELDS[kind]:
        ref = payload[name]
        payload[name] = {
            "dtype": ref["dtype"],
            "shape": ref["shape"],
            "data": base64.b64encode(frames[ref["frame"]]).decode("ascii"),
        }
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def to_frames(kind: str, data: bytes) -> list[bytes]:
    """A recorded message back as wire frames, for :func:`protocol.decode` to validate.

    Raises :class:`ProtocolError` for anything that is not the recorded form of ``kind``.
    """
    if kind not in MESSAGE_TYPES:
        raise ProtocolError("unknown_kind", f"unknown message kind {kind[:40]!r}")
    array_fields = ARRAY_FIELDS[kind]
    if not array_fields:
        return [kind.encode(), data]
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", str(exc)) from None
    if not isinstance(payload, dict):
        raise ProtocolError("bad_json", "a recorded message must be a JSON object")
    frames = [kind.encode(), b""]
    for name in array_fields:
        inline = payload.get(name)
        if not isinstance(inline, dict) or set(inline) != {"dtype", "shape", "data"}:
            raise ProtocolError("bad_array", f"{name} must be an inline array")
        try:
            raw = base64.b64decode(inline["data"], validate=True)
        except (TypeError, ValueError) as exc:
            raise ProtocolError("bad_array", f"{name}: {exc}") from None
        payload[name] = {"frame": len(frames), "dtype": inline["dtype"], "shape": inline["shape"]}
        frames.append(raw)
    frames[1] = json.dumps(payload, separators=(",", ":")).encode()
    return frames


def run_metadata(started: RunStarted) -> dict[str, str]:
    """What a run was, as the string map an MCAP metadata record holds."""
    return {
        "run_id": started.run_id,
        "dataset": started.dataset.model_dump_json(),
        "architecture": started.architecture.model_dump_json(),
        "hyperparameters": started.hyperparameters.model_dump_json(),
        "total_steps": str(started.total_steps),
        "steps_per_epoch": str(started.steps_per_epoch),
        "start_step": str(started.start_step),
        "started_at": repr(started.sent_at),
        "protocol": str(started.protocol),
        "recorder_versions": json.dumps(_versions()),
    }


def _versions() -> dict[str, str]:
    import bokeh
    import mcap
    import pydantic
    import zmq

    return {
        "mnist-live": package_version(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": zmq.__version__,
        "pydantic": pydantic.__version__,
        "bokeh": bokeh.__version__,
        "mcap": getattr(mcap, "__version__", "unknown"),
    }
