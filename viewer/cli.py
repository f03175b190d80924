"""Serve the live dashboard to browsers.

``mnist-live view`` subscribes once per server process to the broker and serves the Bokeh app;
every browser that opens the page gets the whole run so far, then live updates. The presenter
opens the URL with the secret token (printed once at start-up) and gets Start, Pause, Resume,
Stop, a pace slider and a full-screen QR code of the audience URL.

With ``--replay run.mcap`` it serves a recorded run instead, with no broker or trainer: play,
pause, a speed and a time slider that moves the whole page to any moment of the run. Served
to this machine only (the default address) every page has those controls; served to a room,
only the presenter's URL has them and every page follows it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from broker.curve import keys as curve_keys
from protocol import endpoints, tokens
from protocol.errors import CommandError
from protocol.tokens import add_token_argument

if TYPE_CHECKING:
    from bokeh.server.server import Server

    from viewer.server.settings import ViewerSettings

log = logging.getLogger("viewer")

MAX_PROCS = 32
MAX_PREBUILD = 2_000
"""Pages built ahead at most: 4 GB of memory."""
TOKEN = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
CHILD_STOP_TIMEOUT = 5.0
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
"""Serving only this machine: one person at their own screen, who gets every control."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from viewer.server.settings import FRAME_RATE, add_look_arguments

    endpoints.add_subscriber_arguments(parser, ", for late-joiner history and presenter commands")
    curve_keys.add_argument(parser, "viewer")
    parser.add_argument(
        "--replay",
        action="append",
        default=None,
        metavar="FILE",
        help="play back this recording (.mcap) instead of subscribing to a broker; repeat it "
        "to open more (the first is played, /compare overlays the runs of all)",
    )
    parser.add_argument(
        "--run",
        dest="replay_run",
        default=None,
        metavar="ID",
        help="with --replay: the first recording's run to play (default: the run with the "
        "most messages)",
    )
    parser.add_argument("--port", type=int, default=5006, help="HTTP port of the page")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to serve on; 0.0.0.0 lets the room's laptops in and prints every LAN "
        "URL with a QR code of the first",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also accept pages served under this host:port (repeatable), e.g. behind a proxy; "
        "this machine's own names and addresses are accepted already",
    )
    parser.add_argument(
        "--use-xheaders",
        action="store_true",
        help="behind a reverse proxy (nginx, see docs/scaling.md): take each client's address "
        "and scheme from the proxy's X-Forwarded-For and X-Forwarded-Proto headers",
    )
    parser.add_argument(
        "--presenter-token",
        default=None,
        metavar="TOKEN",
        help="the secret in the presenter's URL (?token=...), 8-128 letters, digits, - or _; "
        "on a command line other users of this machine can read it, so prefer "
        "--presenter-token-file or $MNIST_LIVE_PRESENTER_TOKEN",
    )
    add_token_argument(
        parser, "in the presenter's URL and in every command it sends through the broker"
    )
    add_look_arguments(parser, " (a page can add ?theme=dark or ?large=1)")
    parser.add_argument(
        "--frame-rate",
        type=float,
        default=FRAME_RATE,
        metavar="HZ",
        help="updates per second pushed to each browser, however fast the trainer publishes",
    )
    parser.add_argument(
        "--num-procs",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port, each with its own broker subscription "
        "(for rooms of several hundred laptops)",
    )
    parser.add_argument(
        "--prebuild",
        type=int,
        default=1,
        metavar="N",
        help="audience pages each process builds ahead, between frames, so that N laptops "
        "opening the page at once do not queue for them (about 2 MB each; default: 1, built "
        "before serving, so the first page after a restart comes at once)",
    )
    parser.add_argument(
        "--keep-drawings",
        metavar="DIR",
        help="keep the room's labelled digits in DIR/room-digits.npz (images uint8 [n, 28, "
        "28], labels), rewritten as they come; without it they live in memory only",
    )


def settings_from(args: argparse.Namespace) -> ViewerSettings:
    """Check the options and turn them into the settings every server process gets."""
    from viewer.server.settings import ViewerSettings

    endpoints.subscriber_endpoints(args)  # fails early if either is wrong
    curve_keys.from_arguments(args, "subscriber")  # and so do missing keys
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be 1..65535, got {args.port}")
    if not 0 < args.frame_rate <= 60:
        raise CommandError(f"--frame-rate must be above 0 and at most 60, got {args.frame_rate:g}")
    if not 1 <= args.num_procs <= MAX_PROCS:
        raise CommandError(f"--num-procs must be 1..{MAX_PROCS}, got {args.num_procs}")
    if not 0 <= args.prebuild <= MAX_PREBUILD:
        raise CommandError(f"--prebuild must be 0..{MAX_PREBUILD}, got {args.prebuild}")
    if args.replay_run is not None and args.replay is None:
        raise CommandError("--run picks a run of a recording; give the recording with --replay")
    token = args.presenter_token
    if token is not None and not TOKEN.match(token):
        raise CommandError(
            "--presenter-token must be 8-128 letters, digits, '-' or '_' (it goes in a URL)"
        )
    if token is not None:
        log.warning(
            "--presenter-token: give the broker the same token ($%s or --presenter-token-file),"
            " or it refuses the presenter's commands",
            tokens.TOKEN_ENV,
        )
    elif args.replay is not None and args.presenter_token_file is None:
        try:  # a replay's controls stay in this process: any token will do
            token, _ = tokens.presenter_token()
        except CommandError:
            token = secrets.token_urlsafe(18)
    else:
        token, _ = tokens.presenter_token(args.presenter_token_file)
    return ViewerSettings(
        connect=args.connect,
        snapshot=args.snapshot,
        presenter_token=token,
        theme=args.theme,
        large=args.large,
        frame_rate=args.frame_rate,
        replay=os.path.abspath(args.replay[0]) if args.replay else None,
        replay_run=args.replay_run,
        compare=tuple(
            dict.fromkeys(  # each file once, and not the played one again
                p
                for p in map(os.path.abspath, (args.replay or [])[1:])
                if p != os.path.abspath(args.replay[0])
            )
        ),
        open_controls=args.address in LOCAL_ADDRESSES,
        prebuild=args.prebuild,
        curve=os.path.abspath(args.curve) if args.curve else None,
        keep_drawings=_drawings_folder(args.keep_drawings),
    )


def _drawings_folder(path: str | None) -> str | None:
    """``--keep-drawings``: a folder this user can write (made if missing), checked now."""
    if path is None:
        return None
    folder = Path(path).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f"--keep-drawings {path}: cannot make the folder ({exc.strerror or exc}); "
            "give a folder you can write"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"--keep-drawings {path}: cannot write there; give a folder you can")
    return str(folder)


def run(args: argparse.Namespace) -> int:
    from viewer import sources
    from viewer.server.serve import lan_addresses, make_server, page_urls

    settings = settings_from(args)
    if settings.replay:
        _load_replay(settings.replay, settings.replay_run, settings.compare)
        if args.num_procs > 1:
            log.warning(
                "each of the %d processes plays the recording on its own clock; the presenter's "
                "controls move only the pages served by its process",
                args.num_procs,
            )
    urls = page_urls(args.address, args.port)
    lan = lan_addresses() if args.address in ("0.0.0.0", "") else []
    audience = f"http://{lan[0]}:{args.port}/" if lan else None
    if args.address not in ("0.0.0.0", "", "127.0.0.1", "localhost"):
        audience = urls[0]
    parent = os.getpid()
    from viewer.compare.page import session as compare_session
    from viewer.embed import session as embed_session

    try:
        server = make_server(
            settings,
            port=args.port,
            address=args.address,
            allow_origin=args.allow_origin,
            num_procs=args.num_procs,
            audience_url=audience,
            use_xheaders=args.use_xheaders,
            more={"/embed": embed_session, "/compare": compare_session},
        )
    except OSError as exc:
        raise CommandError(
            f"cannot serve on {args.address}:{args.port}: {exc.strerror or exc}; "
            "pick another --port or --address"
        ) from None
    except KeyboardInterrupt:  # the parent of --num-procs children, told to stop
        log.info("viewer stopping")
        _stop_children()
        return 0
    server.start()
    if _first_process():  # after the app's load hook (queued by start): then it serves at once
        server.io_loop.add_callback(_announce, urls, settings.presenter_token, audience, args)
    if args.num_procs > 1:
        _stop_when_orphaned(server, parent)
    _stop_on_signals(server)
    try:
        server.io_loop.start()
        log.info("viewer stopping")
    except KeyboardInterrupt:
        log.info("viewer stopping")
    finally:
        server.stop()
        sources.stop()
    return 0


def _load_replay(path: str, run_id: str | None, compare: tuple[str, ...] = ()) -> None:
    """Read the recordings before serving: a bad file is an error here, not in a page."""
    from protocol.cli.durations import format_duration
    from viewer.sources.recording import preload

    log.info("loading recording %s", path)
    recording, run = preload(path, run_id)
    others = len(recording.runs) - 1
    log.info(
        "recording loaded in %.2f s: run %s, %d messages over %s (%s)%s",
        recording.seconds,
        run.run_id,
        len(run.messages),
        format_duration(run.duration),
        recording.note,
        f"; {others} other run(s) in the file, pick one with --run" if others else "",
    )
    for more in compare:  # each a file of its own (settings_from made them so)
        log.info("loading recording %s (to compare)", more)
        other, _ = preload(more)
        log.info(
            "recording loaded in %.2f s: %d run(s) to compare (%s)",
            other.seconds,
            len(other.runs),
            other.note,
        )


def _first_process() -> bool:
    from tornado.process import task_id

    return task_id() in (None, 0)


def _announce(urls: list[str], token: str, audience: str | None, args: argparse.Namespace) -> None:
    """Print where to go once: the audience's URLs, the presenter's, and the room's QR code."""
    from viewer.panels import qr
    from viewer.server.serve import presenter_url

    for url in urls:
        log.info("dashboard at %s", url)
    # printed, not logged: the logs redact tokens, and this is the one place it must appear
    presenter = presenter_url(urls[0], token)
    print(f"presenter view at {presenter} (keep this URL to yourself)", flush=True)
    if args.address in ("0.0.0.0", ""):
        if audience is None:
            log.warning("no LAN address found; the room cannot reach this machine")
            return
        print(f"\nScan to open {audience}\n", flush=True)
        print(qr.terminal(audience, ansi=sys.stdout.isatty()), flush=True)
    if args.num_procs > 1:
        log.info("serving from %d processes", args.num_procs)


def _stop_on_signals(server: Server) -> None:
    """Ctrl-C and SIGTERM stop the server's loop from inside it. Raised from a signal handler
    instead, the interrupt could land in a weakref callback, where Python ignores it, and the
    viewer would not stop."""
    loop = server.io_loop.asyncio_loop  # type: ignore[attr-defined]
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:  # a background job keeps ignoring
            loop.add_signal_handler(number, server.io_loop.stop)


def _stop_when_orphaned(server: Server, parent: int) -> None:
    """A child whose parent died stops too (the parent cannot always tell it to)."""
    from tornado.ioloop import PeriodicCallback

    def check() -> None:
        if os.getppid() != parent:
            log.info("viewer parent process is gone; stopping")
            server.io_loop.stop()

    PeriodicCallback(check, 500).start()


def _stop_children() -> None:
    """SIGTERM this process's children (the forked servers) and wait for them, briefly."""
    children: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as listing:
                children += [int(pid) for pid in listing.read().split()]
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    waiting = set(children)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            waiting.discard(pid)
        time.sleep(0.05)
    for pid in waiting:
        log.warning("viewer process %d did not stop in %.0f s; killing it", pid, CHILD_STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
