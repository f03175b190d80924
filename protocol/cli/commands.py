"""Every ``mnist-live`` subcommand, in one table: its name, the module that runs it, a summary.

Modules are named, not imported: the entry point imports only the one a user runs, so
``mnist-live train --help`` does not load Bokeh, and the contract package does not import the
programs built on it. Each module offers ``add_arguments(parser)`` and ``run(args) -> int``;
its docstring's first line describes the command in its ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "demo": Command("viewer.demo", "run broker, viewer and trainer together and print the URL"),
    "train": Command("trainer.cli", "train the MLP and publish its progress to a broker"),
    "broker": Command("broker.cli", "forward trainer messages to every viewer"),
    "view": Command("viewer.cli", "serve the live dashboard to browsers"),
    "record": Command("broker.recording.record_cli", "record a broker's runs to an MCAP file"),
    "replay": Command(
        "broker.recording.replay_cli", "publish a recorded run again, at any speed, from any point"
    ),
    "inspect": Command(
        "broker.recording.inspect_cli", "summarise a recording: runs, kinds, duration, damage"
    ),
    "export": Command(
        "viewer.export_cli", "export a recording as CSV files or a standalone HTML page"
    ),
    "status": Command("broker.clients.status_cli", "print a running broker's figures as JSON"),
    "control": Command(
        "broker.clients.control_cli", "pause, resume, stop or pace the trainers via the broker"
    ),
    "keys": Command("broker.curve.keys_cli", "make the CURVE keys that --curve DIR reads"),
    "protocol": Command("protocol.cli.schema", "print the wire protocol's JSON Schema"),
    "data": Command("trainer.data_cli", "download datasets ahead of a talk, list what is cached"),
}
