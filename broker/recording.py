"""Runs on disk: the MCAP recording format, and the writer every recorder uses.

A recording is an MCAP file (https://mcap.dev) that any MCAP tool can open without MNIST
Live's code: one channel per message kind (the topic is the kind), each carrying the JSON
Schema of its pydantic model (schema encoding ``jsonschema``, message encoding ``json``).
A message is the wire protocol's JSON object, except that an array field holds the array
itself, ``{"dtype": "uint8", "shape": [28, 28], "data": "<base64>"}``, instead of a reference
to a binary frame: compact (raw bytes, then zstd over the chunk) and still plain JSON, as
Foxglove expects of bytes in JSON messages. Log and publish time are the trainer's send time;
the MCAP sequence is the message's ``seq``. Every ``run_started`` also goes into a metadata
record named :data:`RUN_METADATA` (dataset, architecture, hyperparameters, versions).

Durability: chunks are compressed, and the writer finishes the open chunk and flushes it to
the operating system at most :data:`FLUSH_SECONDS` after its first message (mcap's
``Writer.flush``, public since mcap 1.6). A recorder killed with SIGKILL leaves a file whose
complete chunks hold everything up to that last flush; :mod:`broker.recording_reader` reads
such a file up to the damage.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from mcap.writer import CompressionType, Writer

from protocol import MESSAGE_TYPES, PROTOCOL_VERSION, Envelope, RunStarted, encode
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
FLUSH_SECONDS = 0.5
"""Longest a written message waits in memory before it is on disk (what SIGKILL can lose)."""
CHUNK_BYTES = 1024 * 1024
"""A chunk closes at this size even before the flush is due (zstd works per chunk)."""


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


class RecordingWriter:
    """Appends messages to one MCAP file, flushing at most :data:`FLUSH_SECONDS` behind.

    ``path`` must not exist yet (a recording is never overwritten); ``source`` says where the
    messages came from. Call :meth:`tick` now and then when no message arrives, so the last
    ones reach the disk anyway, and :meth:`close` at the end to write the index and summary.
    """

    def __init__(self, path: str | os.PathLike[str], source: str = "") -> None:
        self.path = Path(path)
        self._file: IO[bytes] = open(self.path, "xb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD)
        self._writer.start(profile=PROFILE, library=f"mnist-live {package_version()}")
        self._writer.add_metadata(
            RECORDING_METADATA,
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "source": source,
                "protocol": str(PROTOCOL_VERSION),
                "message_encoding": "json with arrays inline (base64)",
            },
        )
        self._file.flush()
        self._channels: dict[str, int] = {}
        self._unflushed_since: float | None = None
        self.counts: Counter[str] = Counter()
        self.runs: list[str] = []
        self.closed = False

    def write(self, message: Envelope, frames: list[bytes] | None = None) -> None:
        """Append one validated message (``frames``: its wire form, if at hand)."""
        self.write_frames(
            message.kind,
            message.run_id,
            message.seq,
            message.sent_at,
            frames if frames is not None else encode(message),
            started=message if isinstance(message, RunStarted) else None,
        )

    def write_frames(
        self,
        kind: str,
        run_id: str,
        seq: int,
        sent_at: float,
        frames: list[bytes],
        started: RunStarted | None = None,
    ) -> None:
        """Append a validated message given as its envelope fields and wire frames.

        The broker's recording process writes this way: the broker validated the message, so
        rebuilding it here would only double the cost. ``started`` is the decoded message
        when it is a ``run_started`` (its fields go into the metadata record).
        """
        channel = self._channels.get(kind)
        if channel is None:
            channel = self._channels[kind] = self._register(kind)
        if started is not None:
            self._writer.add_metadata(RUN_METADATA, run_metadata(started))
        if run_id not in self.runs:
            self.runs.append(run_id)
        stamp = int(sent_at * 1e9)
        self._writer.add_message(
            channel_id=channel,
            log_time=stamp,
            publish_time=stamp,
            data=to_record(frames),
            sequence=seq & 0xFFFFFFFF,
        )
        self.counts[kind] += 1
        now = time.monotonic()
        if self._unflushed_since is None:
            self._unflushed_since = now
        self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Put what is written on disk if its first message has waited long enough."""
        if self._unflushed_since is None:
            return
        if (now if now is not None else time.monotonic()) - self._unflushed_since >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._writer.flush()
        self._unflushed_since = None

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        """Write the index and summary: the file is whole from here on."""
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.finish()
        finally:
            self._file.close()

    def _register(self, kind: str) -> int:
        schema = json.dumps(record_schema(kind), separators=(",", ":")).encode()
        schema_id = self._writer.register_schema(
            name=f"mnist_live.{MESSAGE_TYPES[kind].__name__}",
            encoding=SCHEMA_ENCODING,
            data=schema,
        )
        return self._writer.register_channel(
            topic=kind,
            message_encoding=MESSAGE_ENCODING,
            schema_id=schema_id,
            metadata={"protocol": str(PROTOCOL_VERSION)},
        )
