"""Serve the dashboard app from this process with Bokeh's own server.

Bokeh's JavaScript is served by the same server (no CDN), so the page works on a room's
network with no internet. The same HTTP port answers ``/healthz`` and ``/metrics``
(:mod:`viewer.server.ops`). With ``num_procs`` > 1 Bokeh binds the port, then forks: the app's
per-process state (the broker subscription) starts in each child from ``on_server_loaded``,
so nothing may open a ZeroMQ context before :func:`make_server` returns.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path

from bokeh.application import Application
from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import Server

from viewer.server import browser_changes, deflate, ops
from viewer.server.settings import ViewerSettings, app_argv

log = logging.getLogger("viewer")

APP_DIR = Path(__file__).resolve().parents[1] / "app"


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, best effort and without network traffic."""
    addresses: set[str] = set()
    with contextlib.suppress(OSError):
        addresses.update(socket.gethostbyname_ex(socket.gethostname())[2])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # a UDP "connect" sends nothing; it picks the route
        addresses.add(probe.getsockname()[0])
    return sorted(a for a in addresses if not a.startswith(("127.", "0.")))


class RedactToken(logging.Filter):
    """Keeps the presenter token out of the logs (Tornado logs every request's URL)."""

    _TOKEN = re.compile(r"(token=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = self._TOKEN.sub(r"\1***", message), ()
        return True


def redact_tokens_in_logs() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactToken) for f in handler.filters):
            handler.addFilter(RedactToken())


def allowed_origins(address: str, port: int, extra: list[str]) -> list[str]:
    """Origins whose pages may open a websocket: this machine's names, plus ``extra``."""
    hosts = ["localhost", "127.0.0.1"]
    if address not in ("127.0.0.1", "localhost", ""):
        hosts += [socket.gethostname(), *lan_addresses()]
        if address != "0.0.0.0":
            hosts.append(address)
    return sorted({f"{h}:{port}" for h in hosts} | set(extra))


MAX_BROWSER_MESSAGE = 1 << 20
"""Largest websocket message a browser may send (Bokeh allows 20 MB): a page sends clicks,
slider moves and its pull request, a few hundred bytes; a larger one closes its connection."""


def make_server(
    settings: ViewerSettings,
    *,
    port: int,
    address: str,
    allow_origin: list[str],
    num_procs: int = 1,
    audience_url: str | None = None,
    use_xheaders: bool = False,
    more: dict[str, Callable[[Document], None]] | None = None,
) -> Server:
    """The Bokeh server for the app; with ``num_procs`` > 1 only the children return.

    ``use_xheaders``: behind a reverse proxy, take the client's address and scheme from the
    proxy's ``X-Forwarded-For`` / ``X-Real-Ip`` and ``X-Forwarded-Proto`` headers.
    ``more``: further pages by path, each a function that builds a session's document (they
    share the process set up by the app at ``/``, whose load hook runs first).
    """
    more = more or {}
    redact_tokens_in_logs()
    argv = app_argv(settings)
    if audience_url:
        argv += [f"--audience-url={audience_url}"]
    app = Application(DirectoryHandler(filename=str(APP_DIR), argv=argv))
    deflate.install()
    browser_changes.install()
    return Server(
        {"/": app, **{path: Application(FunctionHandler(make)) for path, make in more.items()}},
        port=port,
        address=address,
        allow_websocket_origin=allowed_origins(address, port, allow_origin),
        check_unused_sessions_milliseconds=5_000,
        unused_session_lifetime_milliseconds=15_000,
        num_procs=num_procs,
        extra_patterns=ops.PATTERNS,
        use_xheaders=use_xheaders,
        websocket_compression_level=deflate.LEVEL,
        websocket_max_message_size=MAX_BROWSER_MESSAGE,
    )


def page_urls(address: str, port: int) -> list[str]:
    """The audience's URLs: every LAN address when serving on all interfaces."""
    if address in ("0.0.0.0", ""):
        return [f"http://{host}:{port}/" for host in ["localhost", *lan_addresses()]]
    return [f"http://{'localhost' if address == '127.0.0.1' else address}:{port}/"]


def presenter_url(url: str, token: str) -> str:
    return f"{url}?token={token}"
