"""``mnist-live broker --record DIR``: every run the broker forwards, one MCAP file per run.

Recording must never slow forwarding. A writer *thread* in the broker process would: writing
a message (mcap records, base64 for arrays) is Python work that holds the GIL for a third of
the broker's own time per message, and measured 29% (metrics) to 52% (samples) off the
broker's saturated throughput. So the writing happens in a child process
(``python -m broker.recorder``), and the broker thread only appends the frames it has already
validated to a list (:meth:`RunRecorder.submit`), each behind a small head with its run id,
seq and send time, and hands a batch over as one ZeroMQ message every few hundred messages or
50 ms (:meth:`RunRecorder.flush`: the frames length-prefixed by :func:`pack_batch`, never
pickled, and a non-blocking send). The queue is
bounded by ZeroMQ's high-water marks on both sides; if the writer cannot keep up, the broker
drops batches for the recording only (counted in ``mnist-live status`` and logged) and never
waits.

The writer process (:class:`RunFiles`) takes the broker's word for each message (only a
``run_started`` is decoded, for the file's metadata), writes ``DIR/<run_id>.mcap`` with
:class:`~broker.recording.RecordingWriter`, ticks every open file so nothing waits more than
:data:`~broker.recording.FLUSH_SECONDS` to reach the disk, closes a run's file at its
``run_finished`` (and the least recently written beyond :data:`MAX_OPEN_FILES`), and never
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
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from broker.ratelog import RateLimitedLog
from broker.recording import RecordingWriter
from protocol import Envelope, ProtocolError, RunStarted, decode
from protocol.cli import configure_logging
from protocol.errors import CommandError

log = logging.getLogger("broker.recorder")

MAX_OPEN_FILES = 16
"""Runs recorded at once; the least recently written file is closed beyond that."""
BATCH_MESSAGES = 256
"""Messages the broker gathers before handing them to the writer."""
BATCH_BYTES = 4 * 2**20
"""Bytes the broker gathers before handing them over (full model messages are megabytes)."""
HAND_OVER_SECONDS = 0.05
"""Longest a message waits in the broker's batch: at low rates a batch is one message, and a
hand-over per message would cost the broker more than the message's forwarding."""
QUEUE_BATCHES = 32
"""Batches waiting on each side of the hand-over before the recording drops: a bound on memory
(at most ~2 x 32 x 4 MB) and minutes of a normal run."""
STATS_SECONDS = 0.5
"""How often the writer reports its figures to the broker."""
NICENESS = 19
"""The writer yields the CPU to the broker and the viewers when the machine is busy: it only
has to keep up on average, and its queue absorbs the bursts."""
START_SECONDS = 20.0
"""Longest the broker waits at start for its writer process to be ready."""
CLOSE_SECONDS = 30.0
"""Longest the broker waits at shutdown for the writer to close its files."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CLOSE = b"close"


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while files are being closed: a second, impatient Ctrl-C
    must not leave a recording without its index. Main thread only (Python's rule)."""
    names = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(name, signal.SIG_IGN) for name in names]
    try:
        yield
    finally:
        for name, handler in zip(names, previous, strict=True):
            signal.signal(name, handler)


def prepare_directory(directory: str | os.PathLike[str]) -> Path:
    """Create ``directory`` if needed and prove a file can be written there, or CommandError."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".mnist-live-probe-"):
            pass
    except OSError as exc:
        raise CommandError(
            f"--record {directory}: cannot write recordings there ({exc.strerror or exc}); "
            "give a writable directory"
        ) from None
    return path


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


# -- the broker's side -------------------------------------------------------------------------


class RunRecorder:
    """The broker's end of the recording: gathers frames, hands batches to the writer process.

    :meth:`submit`, :meth:`tick` and :meth:`flush` are the broker thread's calls (never block,
    never raise); :meth:`stats` merges the broker's drop counts with the writer's last report;
    :meth:`close` has the writer close every file whole and waits for it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        source: str = "",
        *,
        max_open: int = MAX_OPEN_FILES,
        queue_batches: int = QUEUE_BATCHES,
        context: zmq.Context | None = None,
    ) -> None:
        self.directory = prepare_directory(directory)
        context = context or zmq.Context.instance()
        self.push = context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.SNDHWM, queue_batches)
        self.push.setsockopt(zmq.LINGER, 0)
        # Unix sockets in a directory only this user can enter: cheaper than TCP on loopback
        # for the megabytes a second a run hands over, and no other user can connect.
        self._sockets = tempfile.TemporaryDirectory(prefix="mnist-live-recorder-")
        self.push.bind(f"ipc://{self._sockets.name}/batches")
        self.report = context.socket(zmq.PULL)
        self.report.setsockopt(zmq.LINGER, 0)
        self.report.bind(f"ipc://{self._sockets.name}/reports")
        endpoint = self.push.getsockopt_string(zmq.LAST_ENDPOINT)
        report = self.report.getsockopt_string(zmq.LAST_ENDPOINT)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker.recorder", endpoint, report, str(self.directory),
             "--source", source, "--max-open", str(max_open), "--queue", str(queue_batches),
             "--log-level", str(level), "--parent", str(os.getpid())],
            start_new_session=True,  # Ctrl-C goes to the broker, which closes the writer
        )  # fmt: skip
        self._batch: list[list[bytes]] = []
        self._batch_bytes = 0
        self._batch_since = 0.0
        self.dropped: Counter[str] = Counter()
        self._drop_log = RateLimitedLog(log, "recording dropped messages")
        self._report: dict[str, Any] = {}
        self._next_read = 0.0
        self.closed = False
        # A PUSH socket with no peer yet refuses everything: wait for the writer's first report.
        if not self.report.poll(int(START_SECONDS * 1000)):
            self.process.kill()
            self.process.wait()
            self.push.close()
            self.report.close()
            self._sockets.cleanup()
            raise CommandError(
                f"--record {directory}: the recording writer did not start within "
                f"{START_SECONDS:g} s; see the log above"
            )
        self._read_reports()
        log.info("recording every run to %s/<run_id>.mcap", self.directory)

    def submit(self, message: Envelope, frames: list[bytes]) -> None:
        """Add one validated message to the next batch (its frames are immutable bytes)."""
        if not self._batch:
            self._batch_since = time.monotonic()
        self._batch.append([head(message), *frames])
        self._batch_bytes += len(frames[-1])
        if len(self._batch) >= BATCH_MESSAGES or self._batch_bytes >= BATCH_BYTES:
            self.flush()

    @property
    def pending(self) -> bool:
        return bool(self._batch)

    def tick(self) -> None:
        """The broker loop's regular call: hands the batch over once its first message has
        waited :data:`HAND_OVER_SECONDS`, and takes in the writer's reports as they come (left
        unread until someone asks for ``status``, they would pile up until the writer's sends
        block)."""
        now = time.monotonic()
        if self._batch and now - self._batch_since >= HAND_OVER_SECONDS:
            self.flush()
        if now >= self._next_read:
            self._next_read = now + STATS_SECONDS
            self._read_reports()

    def flush(self, wait: bool = False) -> None:
        """Hand the batch to the writer now, or drop it if the writer is that far behind.

        ``wait`` (at close) waits for room, up to the socket's send timeout, instead.
        """
        batch = self._batch
        if not batch:
            return
        self._batch, self._batch_bytes = [], 0
        try:
            # copy=False: the packed batch can be megabytes, and pyzmq would copy it again.
            self.push.send(pack_batch(batch), 0 if wait else zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if self.process.poll() is not None:
                self.dropped["writer_exited"] += len(batch)
                self._drop_log(
                    "writer_exited",
                    f"the recording writer exited ({self.process.returncode}); "
                    f"{len(batch)} not recorded",
                )
                return
            self.dropped["queue_full"] += len(batch)
            self._drop_log("queue_full", f"the writer is not keeping up; {len(batch)} not recorded")
        except zmq.ZMQError as exc:
            self.dropped["hand_over_failed"] += len(batch)
            self._drop_log("hand_over_failed", f"{len(batch)} not recorded: {exc}")

    def stats(self) -> dict[str, Any]:
        """The recording's figures for ``mnist-live status``."""
        self._read_reports()
        report = self._report
        return {
            "directory": str(self.directory),
            "files": report.get("files", 0),
            "open_files": report.get("open_files", 0),
            "messages_written": report.get("messages_written", 0),
            "bytes": report.get("bytes", 0),
            "dropped": sum(self.dropped.values()) + report.get("dropped", 0),
            "dropped_by_reason": dict(self.dropped + Counter(report.get("dropped_by_reason", {}))),
            "error": report.get("error")
            or (f"the writer process exited ({self.process.returncode})"
                if self.process.poll() is not None and not self.closed else None),
        }  # fmt: skip

    def _read_reports(self) -> None:
        while not self.report.closed:
            try:
                self._report = json.loads(self.report.recv(zmq.NOBLOCK))
            except zmq.Again:
                return

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Hand over the last batch, have the writer close every file, wait for it."""
        if self.closed:
            return
        self.closed = True
        if self.process.poll() is None:
            self.push.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
            self.flush(wait=True)  # the last batch often holds run_finished: wait for room
            with contextlib.suppress(zmq.ZMQError):  # a writer that stalled that long is stopped
                self.push.send(_CLOSE)
        else:
            self.flush()  # counted as dropped: the writer is gone
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the recording writer did not finish within %g s; stopping it", timeout)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # e.g. stuck on a hung disk
                self.process.kill()
                self.process.wait()
        self._read_reports()
        self.push.close()
        self.report.close()
        self._sockets.cleanup()


# -- the writer process ------------------------------------------------------------------------


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
                if body == _CLOSE:
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
