"""Placeholder while this subcommand is being built (issue 6)."""

from __future__ import annotations

import argparse

from protocol.errors import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise CommandError("not built yet")
