"""Well-known ZeroMQ endpoints and the check that turns a typo into a one-line error.

Every default binds or connects on 127.0.0.1: the training stream is not meant for the room's
network, only the viewer's web page is.
"""

from __future__ import annotations

import re

BROKER_IN = "tcp://127.0.0.1:5555"
"""Where the broker receives from publishers (trainer, replay)."""
BROKER_OUT = "tcp://127.0.0.1:5556"
"""Where the broker serves subscribers (viewer, recorder)."""

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


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody is listening on right now, for programs that start their own peers."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
