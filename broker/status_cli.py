"""Print a running broker's figures as JSON.

``mnist-live status`` asks the broker's snapshot endpoint for its stats: uptime, messages in
and out by kind, drops by reason, subscribers, the runs it holds and the bytes they take, and
the snapshot requests and repairs it has served.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from protocol import MAX_MESSAGE_BYTES, endpoints

DEFAULT_TIMEOUT = 3.0


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=endpoints.BROKER_SNAPSHOT,
        metavar="ENDPOINT",
        help="the broker's snapshot endpoint (its --snapshot, by default --out port + 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="seconds to wait for the broker's answer",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)


def ask(endpoint: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One request, one JSON reply; a broker that does not answer in time is a CommandError."""
    import zmq

    from protocol.errors import CommandError

    endpoints.check_endpoint(endpoint, "--broker")
    if not timeout > 0:
        raise CommandError(f"--timeout must be positive, got {timeout}")
    socket: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    try:
        socket.connect(endpoint)
        socket.send(json.dumps({**body, "id": 1}).encode())
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not socket.poll(int(remaining * 1000) + 1):
                break
            frames = socket.recv_multipart()
            if frames[0] != b"reply" or len(frames) != 2:
                continue
            reply = json.loads(frames[1])
            if reply.get("type") == "error":
                raise CommandError(f"the broker refused the request: {reply.get('message')}")
            return reply
    finally:
        socket.close()
    raise CommandError(
        f"no answer from a broker at {endpoint} within {timeout:g} s; "
        "is 'mnist-live broker' running? point --broker at its --snapshot endpoint"
    )


def run(args: argparse.Namespace) -> int:
    stats = ask(args.broker, {"type": "stats"}, args.timeout)
    stats.pop("id", None)
    print(json.dumps(stats, indent=2))
    return 0
