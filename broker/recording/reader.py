"""Read a recording back, trusting nothing, and keep every whole message before any damage.

A recording may come from anywhere, and one whose recorder was killed ends mid-chunk, so the
reader walks the file record by record (mcap's :class:`StreamReader`) instead of trusting its
index: chunk sizes are bounded before decompression, chunk CRCs are checked, and every message
goes through :func:`protocol.decode` like one off the network. A message that fails is skipped
and counted; the first damaged record ends the walk, and :attr:`RecordingReader.damage` says
what was wrong. Everything read up to there has been yielded.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import zstandard
from mcap.exceptions import EndOfFile
from mcap.records import Channel, Chunk, Footer, Message, Metadata
from mcap.stream_reader import StreamReader, breakup_chunk

from broker.recording.format import to_frames
from protocol import Envelope, ProtocolError, decode
from protocol.errors import CommandError

Run = TypeVar("Run")
MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""Largest chunk (compressed or not) a reader will unpack: ours close at 1 MB, plus at most one
message of up to :data:`protocol.MAX_MESSAGE_BYTES` (16 MB) as base64."""
_INFLATE_STEP = 1024 * 1024


def inflate(chunk: Chunk) -> Chunk:
    """The chunk uncompressed, never to more bytes than it declares (nor than the bound).

    mcap's own reader trusts a chunk's size fields, so a few kilobytes of crafted file can ask
    it for gigabytes. Here zstd output is read in steps and cut at the declared size; other
    compressions (our recordings use none) are refused.
    """
    size = chunk.uncompressed_size
    if max(size, len(chunk.data)) > MAX_CHUNK_BYTES:
        raise ValueError(f"a chunk of {size} bytes is larger than any recording makes")
    if chunk.compression == "":
        return chunk
    if chunk.compression != "zstd":
        raise ValueError(f"chunks compressed with {chunk.compression!r} (ours are zstd)")
    parts, total = [], 0
    with zstandard.ZstdDecompressor().stream_reader(chunk.data) as reader:
        while total <= size:
            block = reader.read(min(_INFLATE_STEP, size + 1 - total))
            if not block:
                break
            parts.append(block)
            total += len(block)
    if total != size:
        raise ValueError(f"a chunk declares {size} bytes but holds {total}" + "+" * (total > size))
    return dataclasses.replace(chunk, compression="", data=b"".join(parts))


def pick_run(
    runs: Mapping[str, Run],
    wanted: str | None,
    path: str | os.PathLike[str],
    size: Callable[[Run], int],
) -> Run:
    """The run asked for, else the one with the most messages (the first of equals).

    Every command that shows or plays one run of a file (replay, view --replay, export --html)
    picks by this rule, and refuses an unknown id listing the runs there are.
    """
    if not runs:
        raise RecordingError(f"{path} holds no run; record one with 'mnist-live record'")
    if wanted is None:
        return max(runs.values(), key=size)
    if wanted not in runs:
        listed = ", ".join(f"{run_id} ({size(run)} messages)" for run_id, run in runs.items())
        raise RecordingError(
            f"{path} has no run {wanted!r}; its runs: {listed}; pick one with --run"
        )
    return runs[wanted]


class RecordingError(CommandError):
    """The file is not a recording at all (a damaged one is read up to the damage instead)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One message of a recording, validated, with the time it was logged (Unix seconds)."""

    log_time: float
    message: Envelope


class RecordingReader:
    """Iterate a recording with :meth:`messages`; afterwards the attributes describe the file.

    ``whole`` is True when the file ends with its footer (the recorder closed it);
    ``damage`` names the first damaged record, if any; ``invalid`` counts skipped messages
    by reason; ``metadata`` holds the metadata records as ``(name, dict)`` in file order;
    ``read`` counts the messages yielded, ``messages_seen`` every message met, of any kind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(
                f"{self.path}: no such recording; give the path of a .mcap file "
                "('mnist-live record' or 'mnist-live broker --record DIR' make them)"
            )
        self.size = self.path.stat().st_size
        self.whole = False
        self.damage: str | None = None
        self.invalid: Counter[str] = Counter()
        self.metadata: list[tuple[str, dict[str, str]]] = []
        self.read = 0
        self.messages_seen = 0

    def messages(
        self,
        kinds: Iterable[str] | None = None,
        take: Callable[[str, float], bool] | None = None,
    ) -> Iterator[Recorded]:
        """Every valid message in file order (only ``kinds``, if given; only those ``take``
        says yes to, given the kind and log time, before the message is decoded)."""
        wanted = frozenset(kinds) if kinds is not None else None
        self.whole, self.damage, self.read, self.messages_seen = False, None, 0, 0
        self.invalid.clear()
        self.metadata.clear()
        topics: dict[int, str] = {}
        with open(self.path, "rb") as stream:
            records = StreamReader(
                stream, emit_chunks=True, record_size_limit=MAX_CHUNK_BYTES
            ).records
            try:
                first = next(records)
            except Exception:  # bad magic, too short, garbage: not ours to read
                with open(self.path, "rb") as head:
                    magic = head.read(8)
                why = "it is empty" if not magic else f"it begins {magic[:8]!r}, not MCAP's magic"
                raise RecordingError(
                    f"{self.path} is not an MCAP recording ({why}); give a .mcap file made by "
                    "'mnist-live record' or 'broker --record'"
                ) from None
            pending: Iterable[object] = [first]
            while True:
                try:
                    for record in pending:
                        yield from self._record(record, topics, wanted, take)
                    pending = [next(records)]
                except (StopIteration, EndOfFile):  # EndOfFile: the file stops before its footer
                    return
                except Exception as exc:  # whatever a damaged file makes the mcap reader raise
                    self.damage = f"{type(exc).__name__}: {exc}".strip(": ")
                    return

    def _record(
        self,
        record: object,
        topics: dict[int, str],
        wanted: frozenset[str] | None,
        take: Callable[[str, float], bool] | None,
    ) -> Iterator[Recorded]:
        match record:
            case Chunk():
                for inner in breakup_chunk(inflate(record), validate_crc=True):
                    yield from self._record(inner, topics, wanted, take)
            case Channel():
                topics[record.id] = record.topic
            case Message():
                kind = topics.get(record.channel_id)
                if kind is None:
                    self.invalid["unknown_channel"] += 1
                    return
                self.messages_seen += 1
                if wanted is not None and kind not in wanted:
                    return
                if take is not None and not take(kind, record.log_time / 1e9):
                    return
                try:
                    message = decode(to_frames(kind, record.data))
                except ProtocolError as exc:
                    self.invalid[exc.reason] += 1
                    return
                except Exception:  # e.g. RecursionError on absurdly nested JSON
                    self.invalid["invalid"] += 1
                    return
                self.read += 1
                yield Recorded(record.log_time / 1e9, message)
            case Metadata():
                self.metadata.append((record.name, dict(record.metadata)))
            case Footer():
                self.whole = True

    def note(self) -> str:
        """How the file ended, and what was skipped on the way: one line for the terminal."""
        note = self.describe_damage()
        if self.invalid:
            note += f"; skipped invalid messages: {dict(self.invalid)}"
        return note

    def describe_damage(self) -> str:
        """One line for the terminal about how the file ended."""
        if self.whole:
            return "whole"
        if self.damage:
            return (
                f"damaged after {self.messages_seen} messages ({self.damage}); "
                "kept everything before it"
            )
        return f"not closed (the recorder stopped early); all {self.messages_seen} messages read"
