"""Serve the live dashboard to browsers.

``mnist-live view`` subscribes once to the broker and serves the Bokeh app; every browser
that opens the page gets the whole run so far, then live updates.
"""

from __future__ import annotations

import argparse
import logging

from protocol import endpoints

log = logging.getLogger("viewer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect",
        default=endpoints.BROKER_OUT,
        metavar="ENDPOINT",
        help="broker endpoint to subscribe to (the broker's --out)",
    )
    parser.add_argument("--port", type=int, default=5006, help="HTTP port of the page")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to serve on; 0.0.0.0 lets the room's laptops in",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also accept pages served under this host:port (repeatable); "
        "this machine's own names and addresses are accepted already",
    )


def run(args: argparse.Namespace) -> int:
    from protocol.errors import CommandError
    from viewer import hub
    from viewer.server import make_server, page_urls

    endpoints.check_endpoint(args.connect, "--connect")
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be 1..65535, got {args.port}")
    try:
        server = make_server(
            args.connect, port=args.port, address=args.address, allow_origin=args.allow_origin
        )
    except OSError as exc:
        raise CommandError(
            f"cannot serve on {args.address}:{args.port}: {exc.strerror or exc}; "
            "pick another --port"
        ) from None
    server.start()
    for url in page_urls(args.address, args.port):
        log.info("dashboard at %s", url)
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        log.info("viewer stopping")
    finally:
        server.stop()
        hub.stop()
    return 0
