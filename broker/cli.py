"""Forward trainer messages to every viewer, validating each one and remembering the run.

``mnist-live broker`` binds three endpoints: publishers (trainer, replay) connect to ``--in``,
subscribers (viewers, recorders) to ``--out`` for the live stream and to ``--snapshot`` for the
history of a run so far (and the broker's figures, and presenter commands). Invalid messages
are dropped and counted, never forwarded. With ``--record DIR`` every run is also written to
``DIR/<run_id>.mcap`` (see ``mnist-live inspect``, ``replay``). The wire protocol is described
in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import zmq

from broker.curve import keys as curve_keys
from broker.forwarder import Forwarder
from broker.history import RUNS_KEPT
from broker.loop.memory import return_freed_memory
from broker.recording.recorder import RunRecorder
from protocol import MAX_MESSAGE_BYTES, endpoints, tokens
from protocol.cli.signals import signals_ignored
from protocol.errors import CommandError
from protocol.runlog import HISTORY_BYTES
from protocol.tokens import add_token_argument

log = logging.getLogger("broker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in",
        dest="in_endpoint",
        default=endpoints.BROKER_IN,
        metavar="ENDPOINT",
        help="bind here for publishers (the trainer's --connect)",
    )
    parser.add_argument(
        "--out",
        dest="out_endpoint",
        default=endpoints.BROKER_OUT,
        metavar="ENDPOINT",
        help="bind here for subscribers (the viewer's --connect)",
    )
    parser.add_argument(
        "--snapshot",
        dest="snapshot_endpoint",
        default=None,
        metavar="ENDPOINT",
        help="bind here for snapshot, status and control requests "
        "(default: the --out port + 1, e.g. tcp://127.0.0.1:5557)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=MAX_MESSAGE_BYTES,
        metavar="N",
        help="drop any message larger than this",
    )
    parser.add_argument(
        "--history-mb",
        type=float,
        default=HISTORY_BYTES / 2**20,
        metavar="MB",
        help="memory for each run's history; over it the oldest curve points are dropped "
        "(a 30-minute run at default cadences needs about 30)",
    )
    parser.add_argument(
        "--runs-kept",
        type=int,
        default=RUNS_KEPT,
        metavar="N",
        help="runs whose history is held; older ones are retired",
    )
    add_token_argument(parser, "what a presenter command must carry to be relayed")
    parser.add_argument(
        "--curve",
        type=Path,
        default=None,
        metavar="DIR",
        help="encrypt every connection with CURVE and admit only the keys listed in "
        "DIR/publishers (on --in) and DIR/subscribers (on --out, --snapshot); make DIR with "
        "'mnist-live keys init DIR' (SECURITY.md)",
    )
    parser.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="also write every run to DIR/<run_id>.mcap (created if missing; never "
        "overwrites: a second file of the same run gets a -1 suffix); forwarding never waits "
        "for the disk",
    )


def run(args: argparse.Namespace) -> int:
    endpoints.check_endpoint(args.in_endpoint, "--in")
    endpoints.check_endpoint(args.out_endpoint, "--out")
    snapshot = args.snapshot_endpoint or endpoints.snapshot_endpoint_for(args.out_endpoint)
    endpoints.check_endpoint(snapshot, "--snapshot")
    if args.max_message_bytes < 1024:
        raise CommandError(
            f"--max-message-bytes must be at least 1024, got {args.max_message_bytes}"
        )
    if not args.history_mb > 0:
        raise CommandError(f"--history-mb must be positive, got {args.history_mb}")
    if args.runs_kept < 1:
        raise CommandError(f"--runs-kept must be at least 1, got {args.runs_kept}")
    token, token_source = tokens.presenter_token(args.presenter_token_file)
    return_freed_memory()
    curve = curve_keys.server_keys(args.curve) if args.curve is not None else None
    recorder = None
    if args.record is not None:
        recorder = RunRecorder(args.record, source=args.in_endpoint)  # its errors come first
    try:
        forwarder = Forwarder(
            args.in_endpoint,
            args.out_endpoint,
            snapshot,
            max_message_bytes=args.max_message_bytes,
            history_bytes=int(args.history_mb * 2**20),
            runs_kept=args.runs_kept,
            tap=recorder,
            presenter_token=token,
            curve=curve,
        )
    except zmq.ZMQError as exc:  # no forwarder took the recorder over: it is ours to close
        if recorder is not None:
            recorder.close()
        raise CommandError(
            f"cannot bind {args.in_endpoint} / {args.out_endpoint} / {snapshot}: {exc}; "
            "is another broker running? choose other ports with --in/--out/--snapshot"
        ) from None
    log.info(
        "broker up: publishers -> %s, subscribers <- %s, snapshots/status/control at %s",
        *forwarder.endpoints,
        forwarder.snapshot_endpoint,
    )
    log.info("presenter commands are relayed with the token in %s", token_source)
    risks = {
        forwarder.endpoints[0]: "anyone who reaches it can publish into every run",
        forwarder.endpoints[1]: "anyone who reaches it can read the training stream",
        forwarder.snapshot_endpoint: "anyone who reaches it can read every run's history",
    }
    if curve is not None:
        log.info("CURVE on: admitting the keys listed in %s", args.curve)
    for endpoint, risk in risks.items():
        if curve is None and endpoints.reachable_from_network(endpoint):
            log.warning("%s is open to the network without encryption: %s; "
                        "use --curve (SECURITY.md)", endpoint, risk)  # fmt: skip
    try:
        forwarder.run()
    except KeyboardInterrupt:
        stats = forwarder.stats
        log.info(
            "broker stopping: %d received, %d forwarded, %d dropped",
            stats.received,
            sum(stats.forwarded.values()),
            sum(stats.dropped.values()),
        )
    finally:
        with signals_ignored():  # the recording's files are being closed
            forwarder.close()
        if recorder is not None:
            figures = recorder.stats()
            log.info(
                "recording closed: %d file(s), %d messages written, %d dropped%s",
                figures["files"],
                figures["messages_written"],
                figures["dropped"],
                f", stopped by {figures['error']}" if figures["error"] else "",
            )
    return 0
