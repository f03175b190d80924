"""Publish a recorded run again into a broker, at any speed, from any point.

``mnist-live replay run.mcap`` connects to a broker's ``--in`` like a trainer and sends the
run under a run id of its own (``<recorded id>-replay-<hex>``), every message marked as
replayed (the viewer's status says REPLAY), in the recorded order and with the recorded timing
scaled by ``--speed``. ``--from``/``--from-step`` start later: what the page needs from before
that point is sent at once first. A damaged recording is replayed up to the damage.
"""

from __future__ import annotations

import argparse
import logging

from broker.curve import keys as curve_keys
from broker.recording.replay import Replay
from broker.recording.replay_plan import parse_offset, parse_speed
from protocol import endpoints
from protocol.errors import CommandError

log = logging.getLogger("broker.replay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="FILE", help="the .mcap recording to replay")
    endpoints.add_publisher_argument(parser)
    curve_keys.add_argument(parser, "publisher")
    parser.add_argument(
        "--speed",
        default="1",
        metavar="X|max",
        help="a factor of the original timing (4 = four times as fast, 0.5 = half speed), "
        "or 'max' to send as fast as the broker takes them",
    )
    parser.add_argument(
        "--from",
        dest="from_time",
        metavar="TIME",
        help="start this long after the run's first message (SECONDS, M:SS or H:MM:SS); "
        "the curves and latest pictures from before it are sent at once first",
    )
    parser.add_argument(
        "--from-step",
        type=str,
        metavar="N",
        help="start at the run's first message at or after training step N "
        "(what came before is sent at once first, as for --from)",
    )
    parser.add_argument(
        "--run",
        dest="run_id",
        metavar="ID",
        help="which run of a file that holds several (default: the one with the most "
        "messages; an unknown id lists the runs)",
    )
    parser.add_argument(
        "--loop",
        action="store_true",
        help="play again after the end, each pass as a new run, until Ctrl-C",
    )
    parser.add_argument(
        "--wait-for-broker",
        type=str,
        default="10",
        metavar="S",
        help="seconds to wait for a broker to subscribe before giving up",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on the terminal")


def run(args: argparse.Namespace) -> int:
    endpoints.check_endpoint(args.connect, "--connect")
    curve = curve_keys.from_arguments(args, "publisher")
    speed = parse_speed(args.speed)
    if args.from_time is not None and args.from_step is not None:
        raise CommandError("give --from or --from-step, not both")
    from_seconds = parse_offset(args.from_time) if args.from_time is not None else None
    from_step = None
    if args.from_step is not None:
        if not args.from_step.strip().isdigit():
            raise CommandError(
                f"--from-step must be a step number (0 or more), got {args.from_step!r}"
            )
        from_step = int(args.from_step)
    try:
        wait = float(args.wait_for_broker)
    except ValueError:
        wait = -1.0
    if not 0 < wait < 1e6:
        raise CommandError(
            f"--wait-for-broker must be a positive number of seconds, got {args.wait_for_broker!r}"
        )
    replay = Replay(
        args.recording,
        args.connect,
        speed=speed,
        from_seconds=from_seconds,
        from_step=from_step,
        run_id=args.run_id,
        loop=args.loop,
        wait_for_broker=wait,
        progress=not args.quiet,
        curve=curve,
    )
    replay.run()
    return 0
