"""Forward trainer messages to every viewer, validating each one on the way.

``mnist-live broker`` binds two endpoints: publishers (trainer, replay) connect to ``--in``,
subscribers (viewers, recorders) to ``--out``. Invalid messages are dropped and counted,
never forwarded.
"""

from __future__ import annotations

import argparse
import logging

from protocol import MAX_MESSAGE_BYTES, endpoints

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
        "--max-message-bytes",
        type=int,
        default=MAX_MESSAGE_BYTES,
        metavar="N",
        help="drop any message larger than this",
    )


def run(args: argparse.Namespace) -> int:
    import zmq

    from broker.forwarder import Forwarder
    from protocol.errors import CommandError

    endpoints.check_endpoint(args.in_endpoint, "--in")
    endpoints.check_endpoint(args.out_endpoint, "--out")
    try:
        forwarder = Forwarder(
            args.in_endpoint, args.out_endpoint, max_message_bytes=args.max_message_bytes
        )
    except zmq.ZMQError as exc:
        raise CommandError(
            f"cannot bind {args.in_endpoint} / {args.out_endpoint}: {exc}; "
            "is another broker running? choose other ports with --in/--out"
        ) from None
    log.info("broker up: publishers -> %s, subscribers <- %s", *forwarder.endpoints)
    try:
        forwarder.run()
    except KeyboardInterrupt:
        log.info(
            "broker stopping: %d received, %d forwarded, %d dropped",
            forwarder.stats.received,
            sum(forwarder.stats.forwarded.values()),
            sum(forwarder.stats.dropped.values()),
        )
    finally:
        forwarder.close()
    return 0
