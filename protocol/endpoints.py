"""Well-known ZeroMQ endpoints and the check that turns a typo into a one-line error.

Every default binds or connects on 127.0.0.1: the training stream is not meant for the room's
network, only the viewer's web page is.
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Container
from typing import Any

BROKER_IN = "tcp://127.0.0.1:5555"
"""Where the broker receives from publishers (trainer, replay)."""
BROKER_OUT = "tcp://127.0.0.1:5556"
"""Where the broker serves subscribers (viewer, recorder)."""
BROKER_SNAPSHOT = "tcp://127.0.0.1:5557"
"""Where the broker answers snapshot, stats and control requests (by default ``--out`` + 1)."""

_ENDPOINT = re.compile(
    r"^(tcp://(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5}|\*)|ipc://.+|inproc://.+)$"
)


class EndpointError(ValueError):
    """An endpoint string ZeroMQ would reject or misread."""


def check_endpoint(endpoint: str, option: str) -> str:
    """Return ``endpoint`` if it is a ZeroMQ address, else raise a message naming ``option``."""
    match = _ENDPOINT.match(endpoint)
    port = match.group(3) if match else None
    if not match or (port and port != "*" and not 0 < int(port) < 65536):
        raise EndpointError(
            f"{option} {endpoint!r} is not a ZeroMQ endpoint; write it like tcp://127.0.0.1:5555"
        )
    return endpoint


HEARTBEAT_MS = 1_000
"""ZMTP heartbeats: a PING each second on every connection; a peer silent for
:data:`HEARTBEAT_TIMEOUT_MS` (a machine gone, a cable pulled, a process stopped) is dropped and
reconnected, rather than held half-open until TCP gives up minutes later."""
HEARTBEAT_TIMEOUT_MS = 5_000


def keep_alive(socket: Any) -> Any:
    """``socket`` (pyzmq) with ZMTP heartbeats on; returns it."""
    import zmq

    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    return socket


def reachable_from_network(endpoint: str) -> bool:
    """Whether binding ``endpoint`` lets other machines in (a TCP host off loopback)."""
    if not endpoint.startswith("tcp://"):
        return False  # ipc:// and inproc:// stay on this machine
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    return not (host == "localhost" or host.startswith("127.") or host == "::1")


def snapshot_endpoint_for(out_endpoint: str) -> str:
    """The snapshot endpoint that goes with a broker's ``--out``: same host, port + 1.

    Subscribers need both, and passing one address around is easier than two. A wildcard port
    stays a wildcard (the broker binds another free port and reports it); ipc and inproc
    endpoints get ``-snapshot`` appended.
    """
    match = _ENDPOINT.match(out_endpoint)
    port = match.group(3) if match else None
    if port == "*":
        return out_endpoint
    if port and port.isdigit() and int(port) < 65535:
        return f"{out_endpoint[: -len(port)]}{int(port) + 1}"
    if out_endpoint.startswith(("ipc://", "inproc://")):
        return out_endpoint + "-snapshot"
    raise EndpointError(
        f"cannot derive a snapshot endpoint from {out_endpoint!r}; pass --snapshot explicitly"
    )


def free_tcp_port(host: str = "127.0.0.1", avoid: Container[int] = (), attempts: int = 50) -> int:
    """A TCP port nobody is listening on right now, for programs that start their own peers.

    ``avoid`` holds ports already chosen but not bound yet: the kernel would hand them out
    again, and two peers given one port fail to start.
    """
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port
    raise OSError(f"found no free TCP port on {host} outside the {attempts} tried")


def free_tcp_port_pair(
    host: str = "127.0.0.1", avoid: Container[int] = (), attempts: int = 50
) -> int:
    """A port ``p`` with ``p`` and ``p + 1`` both free: a broker's ``--out`` and snapshot."""
    for _ in range(attempts):
        port = free_tcp_port(host, avoid)
        if port + 1 in avoid:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port + 1))
            except OSError:
                continue
        return port
    raise OSError(f"found no two adjacent free TCP ports on {host}")


def add_publisher_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--connect``, as every program that publishes to a broker (trainer, replay) takes it."""
    parser.add_argument(
        "--connect",
        default=BROKER_IN,
        metavar="ENDPOINT",
        help="broker endpoint to publish to (the broker's --in)",
    )


def add_subscriber_arguments(parser: argparse.ArgumentParser, snapshot_use: str = "") -> None:
    """``--connect`` and ``--snapshot``, as every program that subscribes to a broker takes them."""
    parser.add_argument(
        "--connect",
        default=BROKER_OUT,
        metavar="ENDPOINT",
        help="the broker's subscriber endpoint (its --out)",
    )
    parser.add_argument(
        "--snapshot",
        default=None,
        metavar="ENDPOINT",
        help=f"the broker's snapshot endpoint{snapshot_use} (default: the --connect port + 1)",
    )


def subscriber_endpoints(args: argparse.Namespace) -> tuple[str, str]:
    """``--connect`` and the snapshot endpoint (``--snapshot``, or derived from ``--connect``),
    both checked: what :func:`add_subscriber_arguments` asked for, ready to use."""
    check_endpoint(args.connect, "--connect")
    snapshot = args.snapshot or snapshot_endpoint_for(args.connect)
    check_endpoint(snapshot, "--snapshot")
    return args.connect, snapshot
