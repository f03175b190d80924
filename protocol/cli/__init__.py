"""The ``mnist-live`` command: one entry point, a subcommand per program.

The subcommands are listed in :mod:`protocol.cli.commands`; this module imports only the one
being run, sets up logging, and turns the errors users can cause into one line instead of a
traceback. It lives beside the contract rather than in it: the contract's own modules
(:mod:`protocol.messages`, :mod:`protocol.codec`, :mod:`protocol.snapshot`) import nothing
from here, and this package imports no other package (the table names modules as text).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from protocol.cli.commands import COMMANDS
from protocol.cli.logs import LEVELS, configure_logging
from protocol.cli.signals import stop_on_sigterm
from protocol.codec import ProtocolError
from protocol.endpoints import EndpointError
from protocol.errors import CommandError

USER_ERRORS: tuple[type[Exception], ...] = (CommandError, EndpointError, ProtocolError, OSError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (
            action.help or ""
        ):
            return action.help
        return super()._get_help_string(action)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if any."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if first in COMMANDS else None


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line told in one line (not after the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``chosen`` (every other subcommand as a name only)."""
    parser = Parser(
        prog="mnist-live",
        description=(
            "Watch a neural network learn MNIST, live, with a whole room. "
            "Start with 'mnist-live demo', then open the URL it prints."
        ),
    )
    common = Parser(add_help=False)
    common.add_argument(
        "--log-level",
        default="INFO",
        choices=LEVELS,
        type=str.upper,
        help="how much to log on stderr, one line per event",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        if name != chosen:
            subparsers.add_parser(name, help=command.summary)
            continue
        module = importlib.import_module(command.module)
        sub = subparsers.add_parser(
            name,
            parents=[common],
            help=command.summary,
            description=(module.__doc__ or command.summary).strip().splitlines()[0],
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(words)).parse_args(words)
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
