#!/usr/bin/env python3
"""How fast a recording replays, and what recording costs the broker's forwarding.

1. Records a real run: a ``mnist-live train`` at its default cadences on the synthetic set,
   through ``mnist-live broker --record DIR``, stopped after ``--seconds``.
2. Replays it ``--rounds`` times with ``mnist-live replay --speed max`` into a fresh broker,
   with a subscriber timing the replayed run from its first message to its ``run_finished``.
   Real-time factor = the recording's duration / that span (target: at least 100x). The
   replay command's whole wall time (Python start-up and reading the file included) is shown
   too.
3. Forwarding with and without ``--record``, alternating in rounds (``bench_recording.compare``):
   saturated throughput, latency at a steady rate, and the CPU of the broker and its recording
   writer process per forwarded message (target: recording costs at most 2%).

    python scripts/bench_replay.py [--seconds 30] [--rounds 3] [--metrics 100000]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_broker import start, stop
from bench_recording import (
    broker_command,
    compare,
    loopback_endpoints,
    print_forwarding,
    wait_for_broker,
)

from broker.recording.reader import RecordingReader

CLI = [sys.executable, "-m", "protocol.cli"]


def record_a_run(directory: Path, seconds: float) -> Path:
    """A real trainer's run at default cadences, recorded by the broker; the file's path."""
    ports = loopback_endpoints()
    broker = start(broker_command(ports, "--record", str(directory)))
    trainer = None
    try:
        wait_for_broker(ports[2])
        trainer = start([*CLI, "train", "--dataset", "synthetic", "--quiet", "--log-level",
                         "WARNING", "--epochs", "1000", "--connect", ports[0]])  # fmt: skip
        time.sleep(seconds)
        trainer.send_signal(signal.SIGINT)  # the run ends "stopped", with its run_finished
        trainer.wait(30)
        # the writer closes the run's file once it has written the run_finished
        wait_for_broker(
            ports[2],
            lambda stats: stats["recording"]["files"] >= 1 and not stats["recording"]["open_files"],
            "close the recorded run's file (a --seconds too short for the trainer to start "
            "its run records nothing)",
        )
    finally:
        if trainer is not None:
            stop(trainer)
        stop(broker)
    (path,) = directory.glob("*.mcap")
    return path


def replay_once(path: Path) -> dict[str, Any]:
    """One ``--speed max`` replay into a fresh broker, timed by a subscriber."""
    ports = loopback_endpoints()
    broker = start(broker_command(ports))
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.connect(ports[1])
    replay = None
    try:
        # up, and this subscriber's subscription has reached it: nothing replayed is missed
        wait_for_broker(ports[2], lambda stats: stats["subscribers"] >= 1, "see the subscriber")
        began = time.perf_counter()
        replay = start([*CLI, "replay", str(path), "--connect", ports[0], "--speed", "max",
                        "--log-level", "WARNING"])  # fmt: skip
        first = last = 0.0
        received = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and socket.poll(10_000):
            frames = socket.recv_multipart()
            last = time.perf_counter()
            first = first or last
            received += 1
            if frames[0] == b"run_finished":
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            replay.wait(30)  # it exits by itself once its last message has left
        wall = time.perf_counter() - began
    finally:
        socket.close()
        if replay is not None:
            stop(replay)  # finished by now, unless something went wrong
        stop(broker)
    return {"received": received, "span": last - first, "command_wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="length of the recorded run")
    parser.add_argument("--rounds", type=int, default=3, help="replays, and A/B broker rounds")
    parser.add_argument("--metrics", type=int, default=100_000, help="metrics per A/B round")
    parser.add_argument("--samples", type=int, default=20_000, help="samples per A/B round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as directory:
        path = record_a_run(Path(directory), args.seconds)
        reader = RecordingReader(path)
        times = [r.log_time for r in reader.messages()]
        duration, messages, size = times[-1] - times[0], len(times), path.stat().st_size
        replays = [replay_once(path) for _ in range(args.rounds)]
    complete = all(r["received"] == messages for r in replays)
    factors = [duration / r["span"] for r in replays if r["span"] > 0]
    if not factors:
        sys.exit(f"no replay delivered its run ({replays}); see the log above")
    walls = [r["command_wall"] for r in replays]
    forwarding = compare(args.metrics, args.samples, args.rounds)

    print(f"recorded run: {messages:,} messages over {duration:.1f} s, {size / 1e6:.1f} MB, "
          f"{reader.describe_damage()}")  # fmt: skip
    print(f"{'replay --speed max':<34} {'median':>10} {'min':>10} {'max':>10}")
    print(f"{'real-time factor (x)':<34} {statistics.median(factors):>10.0f} "
          f"{min(factors):>10.0f} {max(factors):>10.0f}")  # fmt: skip
    print(f"{'command wall, start-up incl. (s)':<34} {statistics.median(walls):>10.2f} "
          f"{min(walls):>10.2f} {max(walls):>10.2f}")  # fmt: skip
    print(f"every message delivered: {complete}")
    print_forwarding(forwarding)
    print(json.dumps({
        "recording": {"messages": messages, "seconds": round(duration, 3), "bytes": size},
        "replay": {
            "real_time_factor_median": round(statistics.median(factors), 1),
            "real_time_factor_min": round(min(factors), 1),
            "command_wall_seconds_median": round(statistics.median(walls), 3),
            "every_message_delivered": complete,
            "target_100x_met": min(factors) >= 100,
        },
        "forwarding": forwarding,
        "target_2pct_met": {
            "saturated_throughput": max(forwarding["metrics_cost_percent"],
                                        forwarding["sample_cost_percent"]) <= 2,
            "latency_p50_at_1000_per_s": forwarding["latency_p50_ms_on"]
            <= 1.02 * forwarding["latency_p50_ms_off"],
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
