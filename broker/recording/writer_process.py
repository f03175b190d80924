"""The broker's recording process: batches in, one MCAP file per run out, figures back.

Started by :class:`broker.recording.recorder.RunRecorder` as ``python -m
broker.recording.writer_process``. It takes the broker's word for each message (only a
``run_started`` is decoded, for the file's metadata), writes ``DIR/<run_id>.mcap`` with
:class:`~broker.recording.writer.RecordingWriter`, ticks every open file so nothing waits more
than :data:`~broker.recording.writer.FLUSH_SECONDS` to reach the disk, closes a run's file at
its ``run_finished`` (and the least recently written beyond :data:`MAX_OPEN_FILES`), and never
overwrites a file (a second file of a run gets ``-1``, ``-2``...). A disk error (full,
read-only) stops the recording with one log line; forwarding goes on. It reports its figures
to the broker twice a second, and closes every file whole when the broker says so, or when
the broker has died.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import zmq

from broker.recording.batches import CLOSE, QUEUE_BATCHES, read_head, unpack_batch
from broker.recording.writer import RecordingWriter
from protocol import ProtocolError, RunStarted, decode
from protocol.cli.logs import configure_logging

log = logging.getLogger("broker.recorder")

MAX_OPEN_FILES = 16
"""Runs recorded at once; the least recently written file is closed beyond that."""
STATS_SECONDS = 0.5
"""How often the writer reports its figures to the broker."""
NICENESS = 19
"""The writer yields the CPU to the broker and the viewers when the machine is busy: it only
has to keep up on average, and its queue absorbs the bursts."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(run_id: str) -> str:
    """A run id as a safe file name: run ids come off the network."""
    return _UNSAFE.sub("_", run_id).lstrip(".")[:120] or "run"


def open_new(directory: Path, run_id: str, source: str) -> RecordingWriter:
    """A writer for ``<run_id>.mcap``, or ``<run_id>-1.mcap`` etc.: never overwrite a file."""
    stem = file_stem(run_id)
    for n in range(10_000):
        path = directory / (f"{stem}.mcap" if n == 0 else f"{stem}-{n}.mcap")
        try:
            return RecordingWriter(path, source)
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory / stem}.mcap and 9,999 numbered copies exist")


class RunFiles:
    """One open :class:`RecordingWriter` per run, at most ``max_open``; the writer's state."""

    def __init__(self, directory: Path, source: str, max_open: int = MAX_OPEN_FILES) -> None:
        self.directory = directory
        self.source = source
        self.max_open = max_open
        self.open: OrderedDict[str, RecordingWriter] = OrderedDict()
        self.written = 0
        self.files = 0
        self.bytes_closed = 0
        self.dropped: Counter[str] = Counter()
        self.error: str | None = None

    def write(self, frames: list[bytes]) -> None:
        """Write one message (its wire frames) to its run's file; raises OSError on disk trouble."""
        if self.error is not None:
            self.dropped["recording_stopped"] += 1
            return
        # The broker validated these frames (and sent the head): rebuilding the message here
        # would double the recording's work. Only a run_started is decoded, for the metadata.
        try:
            seq, sent_at, run_id = read_head(frames[0])
            frames = frames[1:]
            kind = frames[0].decode()
            decoded = decode(frames) if kind == "run_started" else None
            started = decoded if isinstance(decoded, RunStarted) else None
        except (ProtocolError, ValueError, IndexError):
            self.dropped["invalid"] += 1
            return
        writer = self.open.get(run_id)
        if writer is None:
            writer = self._start(run_id)
        else:
            self.open.move_to_end(run_id)
        writer.write_frames(kind, run_id, seq, sent_at, frames, started)
        self.written += 1
        if kind == "run_finished":
            self.finish(run_id)

    def tick(self) -> None:
        now = time.monotonic()
        for writer in self.open.values():
            writer.tick(now)

    def _start(self, run_id: str) -> RecordingWriter:
        while len(self.open) >= self.max_open:
            oldest = next(iter(self.open))
            log.info("recording: more than %d runs at once; closing run %s", self.max_open,
                     oldest)  # fmt: skip
            self.finish(oldest)
        writer = self.open[run_id] = open_new(self.directory, run_id, self.source)
        self.files += 1
        log.info("recording run %s to %s", run_id, writer.path)
        return writer

    def finish(self, run_id: str) -> None:
        writer = self.open.pop(run_id)
        writer.close()
        size = writer.path.stat().st_size
        self.bytes_closed += size
        log.info("recorded run %s: %d messages, %d bytes in %s", run_id, writer.messages, size,
                 writer.path)  # fmt: skip

    def fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.error("recording stopped (forwarding goes on): %s", self.error)
        self.close_all()

    def close_all(self) -> None:
        for run_id in list(self.open):
            try:
                self.finish(run_id)
            except Exception as exc:  # e.g. the disk is full: the file stays readable up to there
                self.open.pop(run_id, None)
                if self.error is None:
                    self.fail(exc)

    def stats(self) -> dict[str, Any]:
        open_bytes = 0
        for writer in self.open.values():
            with contextlib.suppress(ValueError, OSError):
                open_bytes += writer.size()
        return {
            "files": self.files,
            "open_files": len(self.open),
            "messages_written": self.written,
            "bytes": self.bytes_closed + open_bytes,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped),
            "error": self.error,
        }


def serve(args: argparse.Namespace) -> None:
    """The writer process: batches in, files out, figures back, until told to close."""
    context: zmq.Context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, args.queue)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(args.endpoint)
    report = context.socket(zmq.PUSH)
    report.setsockopt(zmq.SNDHWM, 4)
    report.setsockopt(zmq.SNDTIMEO, 2000)  # the last report must not hold the close up
    report.setsockopt(zmq.LINGER, 2000)
    report.connect(args.report)
    files = RunFiles(Path(args.directory), args.source, args.max_open)
    report.send(json.dumps(files.stats()).encode())  # "ready": the broker waits for this
    next_report = time.monotonic() + STATS_SECONDS
    try:
        while True:
            if pull.poll(100):
                body = pull.recv()
                if body == CLOSE:
                    break
                try:
                    batch = unpack_batch(body)
                except ValueError as exc:
                    files.dropped["bad_batch"] += 1
                    log.warning("ignored a malformed batch: %s", exc)
                    batch = []
                for frames in batch:
                    try:
                        files.write(frames)
                    except OSError as exc:  # disk full, read-only, removed
                        files.fail(exc)
            elif os.getppid() != args.parent:
                log.warning("the broker is gone; closing the recordings")
                break
            try:
                files.tick()
            except OSError as exc:
                files.fail(exc)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + STATS_SECONDS
                with contextlib.suppress(zmq.Again):
                    report.send(json.dumps(files.stats()).encode(), zmq.NOBLOCK)
    except Exception as exc:  # a recording bug must not go unreported
        log.exception("recording stopped by an unexpected error")
        files.error = f"{type(exc).__name__}: {exc}"
    finally:
        files.close_all()
        with contextlib.suppress(zmq.ZMQError):
            report.send(json.dumps(files.stats()).encode())
        pull.close()
        report.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="the broker's recording writer (internal)")
    parser.add_argument("endpoint", help="where the broker hands batches over")
    parser.add_argument("report", help="where to send figures back")
    parser.add_argument("directory", help="the --record directory")
    parser.add_argument("--source", default="", help="where the messages came from")
    parser.add_argument("--max-open", type=int, default=MAX_OPEN_FILES, help="files open at once")
    parser.add_argument("--queue", type=int, default=QUEUE_BATCHES, help="batches queued")
    parser.add_argument("--log-level", default="INFO", help="logging level")
    parser.add_argument("--parent", type=int, default=0, help="the broker's pid")
    args = parser.parse_args()
    configure_logging(args.log_level)  # the same lines as the broker's own
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the broker says when to close
    with contextlib.suppress(OSError):
        os.nice(NICENESS)  # on a busy machine, forwarding (and the viewers) come first
    serve(args)


if __name__ == "__main__":
    main()
