"""The one writer every recorder uses: messages appended to an MCAP file, never far from disk.

Durability: chunks are compressed, and the writer finishes the open chunk and flushes it to
the operating system at most :data:`FLUSH_SECONDS` after its first message (mcap's
``Writer.flush``, public since mcap 1.6). A recorder killed with SIGKILL leaves a file whose
complete chunks hold everything up to that last flush; :mod:`broker.recording.reader` reads
such a file up to the damage. The format itself is :mod:`broker.recording.format`'s.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import IO

from mcap.writer import CompressionType, Writer

from broker.recording.format import (
    MESSAGE_ENCODING,
    PROFILE,
    RECORDING_METADATA,
    RUN_METADATA,
    SCHEMA_ENCODING,
    package_version,
    record_schema,
    run_metadata,
    to_record,
)
from protocol import MESSAGE_TYPES, PROTOCOL_VERSION, Envelope, RunStarted, encode

FLUSH_SECONDS = 0.5
"""Longest a written message waits in memory before it is on disk (what SIGKILL can lose)."""
CHUNK_BYTES = 1024 * 1024
"""A chunk closes at this size even before the flush is due (zstd works per chunk)."""


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
