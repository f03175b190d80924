"""Record a broker's runs to an MCAP file, each from its first message, until Ctrl-C.

``mnist-live record`` subscribes like a viewer (the Clone pattern of
:mod:`broker.clients.clone`), so a recording started mid-run still holds that run from its
first message, and any message lost on the way is fetched again from the broker. Messages are
on disk at most half a second after they arrive, so even a recorder killed with SIGKILL keeps
all but the last moments; Ctrl-C or SIGTERM closes the file whole, with its index. Read it back
with ``mnist-live inspect``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from broker.clients.clone import CloneClient
from broker.clients.request import ask
from broker.curve import keys as curve_keys
from broker.curve.keys import ClientKeys
from broker.recording.writer import RecordingWriter
from protocol import Envelope, RunStarted, endpoints
from protocol.cli.durations import format_duration
from protocol.cli.progress import Progress
from protocol.cli.signals import signals_ignored
from protocol.errors import CommandError
from protocol.snapshot import RunsRequest

log = logging.getLogger("broker.record")

STATUS_SECONDS = 0.5
"""How often the terminal status line is redrawn."""
POLL_SECONDS = 0.1
"""Longest wait for messages between two ticks of the writer (well under its flush delay)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    endpoints.add_subscriber_arguments(parser, ", for the runs so far")
    curve_keys.add_argument(parser, "recorder")
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE.mcap",
        help="the recording to write (default: mnist-live-YYYYmmdd-HHMMSS.mcap here); "
        "an existing file is refused unless --force",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out file, but only once the new recording holds its "
        "first message (until then the old file is untouched)",
    )
    parser.add_argument(
        "--until-finished",
        action="store_true",
        help="stop once a run that was not already finished when recording began has "
        "finished (for scripts); default: record until Ctrl-C",
    )


def output_path(args: argparse.Namespace) -> Path:
    """The --out file, checked: a recording is never overwritten by accident."""
    out = Path(args.out or time.strftime("mnist-live-%Y%m%d-%H%M%S.mcap"))
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory; give a file name such as run.mcap")
    if not out.parent.is_dir():
        raise CommandError(f"--out {out}: no directory {out.parent}; create it first")
    if out.exists() and not args.force:
        raise CommandError(
            f"--out {out} already exists; choose another file, or add --force to replace it"
        )
    return out


def finished_runs(snapshot: str, curve: ClientKeys | None = None) -> set[str]:
    """The runs the broker already holds as finished (so --until-finished waits for a new one)."""
    try:
        reply = ask(snapshot, RunsRequest(type="runs"), timeout=1.0, curve=curve)
    except CommandError:
        log.info("no broker at %s yet; waiting for one", snapshot)
        return set()
    return {str(run["run_id"]) for run in reply.get("runs", []) if run.get("finished")}


class StatusLine:
    """Messages, runs, size and elapsed time on one terminal line (nothing off a terminal:
    the log lines say what matters there)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.line = Progress(unit="msg", description="recording", interval=STATUS_SECONDS)

    def update(self, messages: int, size: int, runs: int) -> None:
        if self.line.due():
            elapsed = format_duration(time.monotonic() - self.started)
            self.line.show(messages, f"{runs} run(s), {size / 2**20:.1f} MB, {elapsed} elapsed")

    def close(self) -> None:
        self.line.close()


def run(args: argparse.Namespace) -> int:
    _, snapshot = endpoints.subscriber_endpoints(args)
    out = output_path(args)
    replace = out.exists()  # only with --force: written aside, moved over at the first message
    path = out.with_name(f".{out.name}.{os.getpid()}.partial") if replace else out
    curve = curve_keys.from_arguments(args, "subscriber")
    already_finished = finished_runs(snapshot, curve) if args.until_finished else set()
    client = CloneClient(args.connect, snapshot, curve=curve)
    try:
        writer = RecordingWriter(path, source=args.connect)
    except OSError as exc:
        client.close()
        raise CommandError(f"--out {out}: cannot create it ({exc.strerror or exc})") from None
    status = StatusLine()
    seen: set[str] = set()
    done = False
    failed: OSError | None = None
    try:
        client.start()
        log.info("recording %s to %s", args.connect, out)
        while not done:
            for message in client.poll(POLL_SECONDS):
                writer.write(message)
                if replace:
                    writer.flush()  # on disk before it takes the old recording's place
                    os.replace(path, out)  # the open file moves with it: still the same one
                    log.info("replaced the previous %s", out)
                    replace, path = False, out
                if message.run_id not in seen:
                    seen.add(message.run_id)
                    _log_new(message)
                if message.kind == "run_finished":
                    done = done or (args.until_finished and message.run_id not in already_finished)
            writer.tick()
            status.update(writer.messages, writer.size(), len(writer.runs))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # a full or failing disk: what is written so far stays readable
        failed = exc
    finally:
        with signals_ignored():
            status.close()
            client.close()
            try:
                writer.close()
            except OSError as exc:
                failed = failed or exc
            if replace:  # nothing took the old recording's place: it stays as it was
                path.unlink(missing_ok=True)
                log.info("nothing recorded; %s left as it was", out)
            if failed is not None:
                kept = (
                    f"{out} is as it was"
                    if replace
                    else f"what reached the disk reads up to the cut (see 'mnist-live inspect "
                    f"{out}'; --repair makes it a whole file)"
                )
                raise CommandError(
                    f"--out {out}: {failed.strerror or failed}; the recording stopped after "
                    f"{writer.messages} messages; {kept}"
                ) from None
            if not replace:
                log.info(
                    "recorded %d messages of %d run(s), %d bytes, to %s",
                    writer.messages,
                    len(writer.runs),
                    out.stat().st_size,
                    out,
                )
    return 0


def _log_new(message: Envelope) -> None:
    """One line per run, at its first message (its run_started, unless the broker lost it)."""
    if isinstance(message, RunStarted):
        log.info(
            "recording run %s: %s, %s, %d steps",
            message.run_id,
            message.dataset.name,
            message.architecture.label,
            message.total_steps,
        )
    else:
        log.info(
            "recording run %s from its %s seq %d (the broker no longer holds its start)",
            message.run_id,
            message.kind,
            message.seq,
        )
