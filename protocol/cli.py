"""The ``mnist-live`` command: one entry point, a subcommand per program.

Each package owns its subcommands (``trainer.cli``, ``broker.cli``, ``viewer.cli``) through
two functions, ``add_arguments(parser)`` and ``run(args) -> int``. This module only wires them
together, sets up logging, and turns the errors users can cause into one line instead of a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from protocol.codec import ProtocolError
from protocol.endpoints import EndpointError
from protocol.errors import CommandError

SUBCOMMANDS = {
    "demo": ("viewer.demo", "run broker, viewer and trainer together and print the URL"),
    "train": ("trainer.cli", "train the MLP and publish its progress to a broker"),
    "broker": ("broker.cli", "forward trainer messages to every viewer"),
    "view": ("viewer.cli", "serve the live dashboard to browsers"),
    "record": ("broker.record_cli", "record a broker's runs to an MCAP file"),
    "replay": ("broker.replay_cli", "publish a recorded run again, at any speed, from any point"),
    "inspect": ("broker.inspect_cli", "summarise a recording: runs, kinds, duration, damage"),
    "export": ("viewer.export_cli", "export a recording as CSV files or a standalone HTML page"),
    "status": ("broker.status_cli", "print a running broker's figures as JSON"),
    "control": ("broker.control_cli", "pause, resume, stop or pace the trainers via the broker"),
    "protocol": ("protocol.schema_cli", "print the wire protocol's JSON Schema"),
    "data": ("trainer.data_cli", "download datasets ahead of a talk, list what is cached"),
}


USER_ERRORS: tuple[type[Exception], ...] = (CommandError, EndpointError, ProtocolError, OSError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (
            action.help or ""
        ):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-live",
        description=(
            "Watch a neural network learn MNIST, live, with a whole room. "
            "Start with 'mnist-live demo', then open the URL it prints."
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log on stderr, one line per event",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=(module.__doc__ or summary).strip().splitlines()[0],
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C so every program shuts down through the same path."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    stop_on_sigterm()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader went away (``... | head``): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except USER_ERRORS as exc:
        print(f"mnist-live {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
