"""Print the JSON Schema of the wire protocol, for programs written in other languages.

``mnist-live protocol schema`` prints every message kind (a ``oneOf``, one branch per ``kind``
constant, strict JSON Schema 2020-12: :mod:`protocol.schema`);
``--part control`` the upstream presenter command; ``--part requests`` and ``--part replies``
the snapshot service's. docs/protocol.md explains frames, topics and sequence rules around them.
"""

from __future__ import annotations

import argparse
import json

PARTS = ("messages", "control", "requests", "replies")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["schema"], help="what to print (the JSON Schema)")
    parser.add_argument(
        "--part",
        choices=PARTS,
        default="messages",
        help="messages: every message kind; control: presenter commands; "
        "requests, replies: the snapshot service's",
    )


def schema(part: str) -> dict:
    from protocol import ControlCommand, message_json_schema
    from protocol.schema import strict
    from protocol.snapshot import REPLY_ADAPTER, REQUEST

    if part == "messages":
        return message_json_schema()
    if part == "control":
        return strict(ControlCommand.model_json_schema())
    return strict((REQUEST if part == "requests" else REPLY_ADAPTER).json_schema())


def run(args: argparse.Namespace) -> int:
    print(json.dumps(schema(args.part), indent=2))
    return 0
