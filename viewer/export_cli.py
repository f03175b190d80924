"""Export a recording as CSV files or as a standalone HTML page of the dashboard.

``--csv DIR`` writes metrics.csv (every training metrics message), evaluations.csv (every
evaluation: step, epoch, split, accuracy, loss and per-class accuracy) and runs.csv (one row
per run: dataset, architecture, hyperparameters, final status, test accuracy), each with a
``run_id`` column, for all the file's runs or the one ``--run`` names. ``--html FILE`` writes
the dashboard of one finished run as a single page that opens without a server or network.
A damaged recording is exported up to the damage, with a warning.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from protocol.errors import CommandError

log = logging.getLogger("viewer.export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from viewer.server.settings import add_look_arguments

    parser.add_argument("recording", metavar="FILE", help="the recording (.mcap) to export")
    parser.add_argument(
        "--csv",
        default=None,
        metavar="DIR",
        help="write metrics.csv, evaluations.csv and runs.csv into DIR (made if missing)",
    )
    parser.add_argument(
        "--html",
        default=None,
        metavar="FILE",
        help="write a standalone HTML page of the run's dashboard (opens without a server)",
    )
    parser.add_argument(
        "--run",
        dest="run_id",
        default=None,
        metavar="ID",
        help="export only this run (default: every run for --csv, the run with the most "
        "messages for --html)",
    )
    add_look_arguments(parser, " of the HTML page")
    parser.add_argument(
        "--force", action="store_true", help="overwrite output files that already exist"
    )


def run(args: argparse.Namespace) -> int:
    from viewer.export import (
        CSV_FILES,
        check_html_output,
        check_outputs,
        export_csv,
        export_html,
    )

    if args.csv is None and args.html is None:
        raise CommandError("say what to write: --csv DIR, --html FILE, or both")
    # Every output is checked before any is written: no half an export.
    if args.csv is not None:
        check_outputs([Path(args.csv) / name for name in CSV_FILES], args.force)
    if args.html is not None:
        check_html_output(Path(args.html), args.force)
    if args.csv is not None:
        began = time.perf_counter()
        tables = export_csv(args.recording, args.csv, args.run_id, args.force)
        log.info(
            "wrote %d metrics rows, %d evaluations and %d run(s) to %s in %.1f s",
            len(tables.metrics),
            len(tables.evaluations),
            len(tables.runs),
            args.csv,
            time.perf_counter() - began,
        )
    if args.html is not None:
        began = time.perf_counter()
        history = export_html(
            args.recording, args.html, args.run_id, args.force, args.theme, args.large
        )
        log.info(
            "wrote run %s (%s, step %d) to %s in %.1f s",
            history.run_id,
            history.status,
            history.step,
            args.html,
            time.perf_counter() - began,
        )
    return 0
