"""One log line per event, on stderr, at the level the user chose: every program's format."""

from __future__ import annotations

import logging
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


NOISY = ("tornado.access", "bokeh.server.views.ws")
"""Loggers that write a line per request or connection (ten for one page load): heard only
at DEBUG, where someone asked for every detail."""


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for name in NOISY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
