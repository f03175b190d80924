"""Send a presenter command to the trainers through the broker.

``mnist-live control pause`` (or ``resume``, ``start``, ``stop``, ``pace``, ``set``) hands the
command to the broker's snapshot endpoint, which validates it and relays it upstream to every
connected trainer; a trainer acts on it between two training steps. ``set --lr 0.01`` (and
``--momentum``) changes the run's hyperparameters from the next step on.
"""

from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from broker.clients.request import ask
from broker.clients.status_cli import add_broker_arguments
from broker.curve import keys as curve_keys
from protocol import ControlCommand, tokens
from protocol.cli import numbers
from protocol.codec import first_error
from protocol.errors import CommandError
from protocol.snapshot import ControlRequest
from protocol.tokens import add_token_argument

log = logging.getLogger("control")

COMMANDS = ("start", "pause", "resume", "stop", "pace", "set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dests differ from the option names: mnist-live keeps its own "command" and "run"
    parser.add_argument("action", choices=COMMANDS, help="what the trainer should do")
    parser.add_argument(
        "--steps-per-second",
        type=numbers.pace,
        default=None,
        metavar="N",
        help="for 'pace': the new limit on training steps per second (omit to lift it)",
    )
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        type=numbers.learning_rate,
        default=None,
        metavar="RATE",
        help="for 'set': the new base learning rate, applied from the trainer's next step "
        "(a schedule scales it from then on)",
    )
    parser.add_argument(
        "--momentum",
        type=numbers.fraction,
        default=None,
        metavar="M",
        help="for 'set': the new momentum (Adam's beta1); an optimizer without one (sgd) "
        "ignores it and says so in its log",
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
    tuning = args.learning_rate is not None or args.momentum is not None
    if tuning and args.action != "set":
        raise CommandError("--lr and --momentum go with the 'set' command only")
    if args.action == "set" and not tuning:
        raise CommandError("'set' needs --lr RATE or --momentum M (or both)")
    try:
        command = ControlCommand(
            command=args.action,
            run_id=args.run_id,
            steps_per_second=args.steps_per_second,
            learning_rate=args.learning_rate,
            momentum=args.momentum,
        )
    except ValidationError as exc:
        raise CommandError(f"invalid command: {first_error(exc)}") from None
    token, _ = tokens.presenter_token(args.presenter_token_file)
    request = ControlRequest(
        type="control", command=command.model_dump(exclude_none=True), token=token
    )
    ask(args.broker, request, args.timeout, curve_keys.from_arguments(args, "subscriber"))
    target = "every run" if args.run_id == "*" else f"run {args.run_id}"
    what = describe(command)
    log.info("sent %s to %s via %s", what, target, args.broker)
    print(f"sent {what} to {target}")
    return 0


def describe(command: ControlCommand) -> str:
    """The command in a few words: ``set lr 0.01, momentum 0.9``, ``pace 5 steps/s``."""
    if command.command == "set":
        values = [("lr", command.learning_rate), ("momentum", command.momentum)]
        return "set " + ", ".join(f"{name} {v:g}" for name, v in values if v is not None)
    if command.command == "pace":
        rate = command.steps_per_second
        return f"pace {rate:g} steps/s" if rate else "pace unlimited"
    return command.command
