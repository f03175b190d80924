"""Send a presenter command to the trainers through the broker.

``mnist-live control pause`` (or ``resume``, ``start``, ``stop``, ``pace``) hands the command
to the broker's snapshot endpoint, which validates it and relays it upstream to every
connected trainer; a trainer acts on it between two training steps.
"""

from __future__ import annotations

import argparse
import logging

from broker.clients.request import ask
from broker.clients.status_cli import add_broker_arguments
from broker.curve import keys as curve_keys
from protocol import ControlCommand, tokens
from protocol.control import MAX_PACE, MIN_PACE
from protocol.errors import CommandError
from protocol.snapshot import ControlRequest
from protocol.tokens import add_token_argument

log = logging.getLogger("control")

COMMANDS = ("start", "pause", "resume", "stop", "pace")


def pace(text: str) -> float:
    """A pace in steps per second, within what the protocol accepts."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not MIN_PACE <= value <= MAX_PACE:
        raise argparse.ArgumentTypeError(
            f"{text} is outside {MIN_PACE:g}..{MAX_PACE:g} steps/s (omit it to lift the limit)"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dests differ from the option names: mnist-live keeps its own "command" and "run"
    parser.add_argument("action", choices=COMMANDS, help="what the trainer should do")
    parser.add_argument(
        "--steps-per-second",
        type=pace,
        default=None,
        metavar="N",
        help="for 'pace': the new limit on training steps per second (omit to lift it)",
    )
    parser.add_argument(
        "--run",
        dest="run_id",
        default="*",
        metavar="ID",
        help="the run to command (default: every run connected to the broker)",
    )
    add_token_argument(parser, "which the broker asks of every command")
    add_broker_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.steps_per_second is not None and args.action != "pace":
        raise CommandError("--steps-per-second goes with the 'pace' command only")
    try:
        command = ControlCommand(
            command=args.action, run_id=args.run_id, steps_per_second=args.steps_per_second
        )
    except ValueError as exc:
        raise CommandError(f"invalid command: {str(exc).splitlines()[-1].strip()}") from None
    token, _ = tokens.presenter_token(args.presenter_token_file)
    request = ControlRequest(type="control", command=command.model_dump(), token=token)
    ask(args.broker, request, args.timeout, curve_keys.from_arguments(args, "subscriber"))
    target = "every run" if args.run_id == "*" else f"run {args.run_id}"
    log.info("sent %s to %s via %s", args.action, target, args.broker)
    print(f"sent {args.action} to {target}")
    return 0
