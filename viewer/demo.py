"""Run broker, viewer and trainer together and print the URL to open.

The three are separate processes, started exactly as a user would start them by hand, so the
demo exercises the real system. Ctrl-C stops all three; when training ends the page stays up
until then.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time

from protocol import endpoints, tokens
from protocol.errors import CommandError

log = logging.getLogger("demo")

STOP_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="auto",
        metavar="NAME_OR_DIR",
        help="as for 'mnist-live train': auto, synthetic, or an IDX directory",
    )
    parser.add_argument("--port", type=int, default=5006, help="HTTP port of the page")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to serve the page on; 0.0.0.0 lets the room in",
    )
    parser.add_argument(
        "--preset",
        default="seed",
        metavar="NAME",
        help="the training recipe, as for 'mnist-live train --preset' (seed: a small, quick "
        "one that learns visibly in a minute; default: the full recipe)",
    )
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training set")
    parser.add_argument(
        "--steps-per-second",
        type=float,
        default=40.0,
        metavar="N",
        help="pace of training, slow enough to watch (0: full speed)",
    )
    parser.add_argument("--theme", choices=("light", "dark"), default="light", help="colours")
    parser.add_argument("--large", action="store_true", help="large type for a projector")
    parser.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="also record every run to DIR/<run_id>.mcap (replay it with 'mnist-live view "
        "--replay')",
    )
    tokens.add_token_argument(parser, "which the presenter's page and the broker share")


def _child(*argv: str, log_level: str, token: str) -> subprocess.Popen:
    """A program of the demo; the presenter's token goes in its environment, where other users
    cannot read it (a command line they can)."""
    command = [sys.executable, "-m", "protocol.cli", *argv, "--log-level", log_level]
    log.debug("starting %s", " ".join(command))
    return subprocess.Popen(command, env={**os.environ, tokens.TOKEN_ENV: token})


def run(args: argparse.Namespace) -> int:
    from viewer.server.serve import page_urls, presenter_url

    _check_port_free(args.address, args.port)
    in_port = endpoints.free_tcp_port(avoid={args.port})  # the page's port is not bound yet
    out_port = endpoints.free_tcp_port_pair(avoid={args.port, in_port})  # snapshot: port + 1
    broker_in, broker_out = f"tcp://127.0.0.1:{in_port}", f"tcp://127.0.0.1:{out_port}"
    level = args.log_level
    token, _ = tokens.presenter_token(args.presenter_token_file)
    record = ["--record", args.record] if args.record else []
    looks = ["--theme", args.theme] + (["--large"] if args.large else [])
    children = {
        "broker": _child(
            "broker", "--in", broker_in, "--out", broker_out, *record, log_level=level, token=token
        ),
        "viewer": _child(
            "view",
            "--connect",
            broker_out,
            "--port",
            str(args.port),
            "--address",
            args.address,
            *looks,
            log_level=level,
            token=token,
        ),
    }
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    if not _wait_for_page(host, args.port, children["viewer"]):
        _stop_all(children)
        raise CommandError(f"the viewer did not come up on port {args.port}; see its log above")
    train = [
        "train",
        "--connect",
        broker_in,
        "--dataset",
        args.dataset,
        "--preset",
        args.preset,
        "--epochs",
        str(args.epochs),
        "--quiet",
    ]
    if args.steps_per_second:
        train += ["--steps-per-second", str(args.steps_per_second)]
    children["trainer"] = _child(*train, log_level=level, token=token)
    print(f"MNIST Live demo: training the {args.preset!r} recipe for {args.epochs} epoch(s) on "
          f"the {args.dataset!r} dataset (the trainer's 'recipe:' line spells it out)",
          flush=True)  # fmt: skip
    urls = page_urls(args.address, args.port)
    for url in urls:
        print(f"MNIST Live demo: open {url}  (Ctrl-C to stop)", flush=True)
    print(f"Presenter (Start, Pause, pace, QR): {presenter_url(urls[0], token)}", flush=True)
    try:
        return _supervise(children)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_all(children)


def _check_port_free(address: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise CommandError(
                f"cannot serve the page on {address}:{port} ({exc.strerror}); pick another --port"
            ) from None


def _wait_for_page(host: str, port: int, viewer: subprocess.Popen, timeout: float = 60) -> bool:
    """Hold the trainer back until the page is served, so the viewer sees the run start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and viewer.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _supervise(children: dict[str, subprocess.Popen]) -> int:
    """Wait until interrupted; a trainer that finishes is fine, anything else dying is not."""
    reported = False
    while True:
        for name, child in children.items():
            code = child.poll()
            if code is None:
                continue
            if name == "trainer":
                if not reported:
                    log.info("training finished (exit %d); the page stays up until Ctrl-C", code)
                    reported = True
                continue
            log.error("%s exited unexpectedly with status %d; stopping the demo", name, code)
            return 1
        time.sleep(0.2)


STOP_ORDER = ("trainer", "viewer", "broker")
"""Trainer first, so its run_finished still travels through the broker to the page."""


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    if any(child.poll() is None for child in children.values()):
        log.info("stopping")
    for name in STOP_ORDER:
        child = children.get(name)
        if child is None:
            continue
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT)
            child.kill()
            child.wait()
