"""``mnist-live broker --record DIR``, the broker's side: a tap that hands messages to a writer.

Recording must never slow forwarding. A writer *thread* in the broker process would: writing
a message (mcap records, base64 for arrays) is Python work that holds the GIL for a third of
the broker's own time per message, and measured 29% (metrics) to 52% (samples) off the
broker's saturated throughput. So the writing happens in a child process
(:mod:`broker.recording.writer_process`), and the broker thread only appends the frames it has
already validated to a list (:meth:`RunRecorder.submit`), each behind a small head with its
run id, seq and send time, and hands a batch over as one ZeroMQ message every few hundred
messages or 50 ms (:meth:`RunRecorder.flush`, :mod:`broker.recording.batches`, a non-blocking
send). The queue is bounded by ZeroMQ's high-water marks on both sides; if the writer cannot
keep up, the broker drops batches for the recording only (counted in ``mnist-live status`` and
logged) and never waits.

To the forwarder this is a :class:`broker.tap.Tap`: it calls :meth:`~RunRecorder.submit`,
:meth:`~RunRecorder.tick`, :meth:`~RunRecorder.stats` and :meth:`~RunRecorder.close`, and
nothing else of the recording.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import zmq

from broker.loop.ratelog import RateLimitedLog
from broker.recording.batches import CLOSE, QUEUE_BATCHES, head, pack_batch
from broker.recording.writer_process import MAX_OPEN_FILES, STATS_SECONDS
from protocol import Envelope
from protocol.errors import CommandError

log = logging.getLogger("broker.recorder")

BATCH_MESSAGES = 256
"""Messages the broker gathers before handing them to the writer."""
BATCH_BYTES = 4 * 2**20
"""Bytes the broker gathers before handing them over (full model messages are megabytes)."""
HAND_OVER_SECONDS = 0.05
"""Longest a message waits in the broker's batch: at low rates a batch is one message, and a
hand-over per message would cost the broker more than the message's forwarding."""
START_SECONDS = 20.0
"""Longest the broker waits at start for its writer process to be ready."""
CLOSE_SECONDS = 30.0
"""Longest the broker waits at shutdown for the writer to close its files."""


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
            [sys.executable, "-m", "broker.recording.writer_process", endpoint, report,
             str(self.directory), "--source", source, "--max-open", str(max_open),
             "--queue", str(queue_batches), "--log-level", str(level),
             "--parent", str(os.getpid())],
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

    def tick(self) -> float:
        """The broker loop's regular call: hands the batch over once its first message has
        waited :data:`HAND_OVER_SECONDS`, and takes in the writer's reports as they come (left
        unread until someone asks for ``status``, they would pile up until the writer's sends
        block). Returns the seconds until it next needs a tick."""
        now = time.monotonic()
        if self._batch and now - self._batch_since >= HAND_OVER_SECONDS:
            self.flush()
        if now >= self._next_read:
            self._next_read = now + STATS_SECONDS
            self._read_reports()
        return HAND_OVER_SECONDS if self._batch else STATS_SECONDS

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
                self.push.send(CLOSE)
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
