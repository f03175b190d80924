"""Print a running broker's figures as JSON.

``mnist-live status`` asks the broker's snapshot endpoint for its stats: uptime, messages in
and out by kind, drops by reason, subscribers, the runs it holds and the bytes they take, and
the snapshot requests and repairs it has served.
"""

from __future__ import annotations

import argparse
import json

from broker.clients.request import ask
from broker.curve import keys as curve_keys
from protocol import endpoints
from protocol.snapshot import StatsRequest

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
    curve_keys.add_argument(parser, "client")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)


def run(args: argparse.Namespace) -> int:
    curve = curve_keys.from_arguments(args, "subscriber")
    stats = ask(args.broker, StatsRequest(type="stats"), args.timeout, curve)
    stats.pop("id", None)
    print(json.dumps(stats, indent=2))
    return 0
