"""Per-process state for the Bokeh server: start the one ZeroMQ subscription all sessions share.

Works under ``mnist-live view`` and under plain ``bokeh serve viewer/app --args --connect
tcp://127.0.0.1:5556``; the arguments arrive as ``sys.argv`` while Bokeh loads this module.
"""

import argparse
import sys

from protocol import endpoints
from viewer import hub

_parser = argparse.ArgumentParser(prog="viewer/app")
_parser.add_argument("--connect", default=endpoints.BROKER_OUT)
_args, _ = _parser.parse_known_args(sys.argv[1:])


def on_server_loaded(server_context) -> None:
    hub.start(endpoints.check_endpoint(_args.connect, "--connect"))


def on_server_unloaded(server_context) -> None:
    hub.stop()
