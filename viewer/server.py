"""Serve the dashboard app from this process with Bokeh's own server.

Bokeh's JavaScript is served by the same server (no CDN), so the page works on a room's
network with no internet.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path

from bokeh.application import Application
from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.server.server import Server

log = logging.getLogger("viewer")

APP_DIR = Path(__file__).with_name("app")


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, best effort and without network traffic."""
    addresses: set[str] = set()
    with contextlib.suppress(OSError):
        addresses.update(socket.gethostbyname_ex(socket.gethostname())[2])
    return sorted(a for a in addresses if not a.startswith("127."))


def allowed_origins(address: str, port: int, extra: list[str]) -> list[str]:
    """Origins whose pages may open a websocket: this machine's names, plus ``extra``."""
    hosts = ["localhost", "127.0.0.1"]
    if address not in ("127.0.0.1", "localhost", ""):
        hosts += [socket.gethostname(), *lan_addresses()]
        if address != "0.0.0.0":
            hosts.append(address)
    return sorted({f"{h}:{port}" for h in hosts} | set(extra))


def make_server(connect: str, *, port: int, address: str, allow_origin: list[str]) -> Server:
    app = Application(DirectoryHandler(filename=str(APP_DIR), argv=["--connect", connect]))
    return Server(
        {"/": app},
        port=port,
        address=address,
        allow_websocket_origin=allowed_origins(address, port, allow_origin),
        check_unused_sessions_milliseconds=5_000,
        unused_session_lifetime_milliseconds=15_000,
    )


def page_urls(address: str, port: int) -> list[str]:
    if address in ("0.0.0.0", ""):
        return [f"http://{host}:{port}/" for host in ["localhost", *lan_addresses()]]
    return [f"http://{'localhost' if address == '127.0.0.1' else address}:{port}/"]
