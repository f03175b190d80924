"""Make the CURVE keys that ``--curve DIR`` reads: ``mnist-live keys init DIR``.

The folder holds a key pair for the broker, one for publishers (trainer, replay) and one for
subscribers (viewer, record, status, control), and the lists of keys the broker admits. Copy
it to each machine of the talk, leaving out the secrets that machine does not need: only the
broker's holds ``broker.key_secret``, only trainers' ``publisher.key_secret``, only viewers'
(and recorders') ``subscriber.key_secret``. See SECURITY.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from broker.curve import keys

log = logging.getLogger("keys")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("init",), help="init: make a new key folder")
    parser.add_argument("folder", type=Path, metavar="DIR", help="the folder to make")


def run(args: argparse.Namespace) -> int:
    made = keys.init(args.folder)
    log.info("made %d key files in %s", len(made), args.folder)
    print(f"keys made in {args.folder}; start every program with --curve {args.folder}")
    print(
        f"other machines need a copy without {keys.BROKER}.key_secret: a trainer's without "
        "subscriber.key_secret, a viewer's without publisher.key_secret"
    )
    return 0
