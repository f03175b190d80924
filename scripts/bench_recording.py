#!/usr/bin/env python3
"""What ``mnist-live broker --record DIR`` costs forwarding: the same load with and without.

Rounds alternate a broker without recording (A) and one with ``--record`` into a temporary
directory (B), each a fresh ``mnist-live broker`` subprocess measured exactly as
``scripts/bench_broker.py`` does (a publisher process sending pre-encoded messages of one run
as fast as it can, a subscriber process counting validated messages per second; then metrics
at a steady rate for latency). The figure of merit is the median over rounds of B against A;
the recording's own figures (messages written, dropped) come from ``mnist-live status``. The
broker's CPU per forwarded message counts the broker process and its descendants, so with
``--record`` it includes the recording writer process the broker starts.

    python scripts/bench_recording.py [--metrics 100000] [--samples 20000] [--rounds 3]

:func:`compare` is the same measurement for other scripts (e.g. ``bench_replay.py``), and
:func:`print_forwarding` prints its table. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_broker import measure, start, stop
from bench_fanout import cpu_seconds, family

from broker.clients.request import ask
from protocol.endpoints import free_tcp_port


def broker_cpu_seconds(pid: int) -> float:
    """CPU seconds of the broker and its descendants: with ``--record``, its writer process.

    The family is looked up at each reading, so a writer started after the first reading is
    counted from its start.
    """
    return cpu_seconds(family(pid))


def wait_for_broker(
    snapshot: str,
    ready: Callable[[dict[str, Any]], bool] = lambda stats: True,
    what: str = "answer",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Ask the broker for its stats until ``ready(stats)``; the last stats. Bounded by ``timeout``.

    A broker answers only once its sockets are bound and, with ``--record``, its writer process
    has started, so the first answer means it is up.
    """
    deadline = time.monotonic() + timeout
    while True:
        stats = ask(snapshot, {"type": "stats"}, max(0.1, deadline - time.monotonic()))
        if ready(stats):
            return stats
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the broker at {snapshot} did not {what} within {timeout:g} s")
        time.sleep(0.05)


def loopback_endpoints() -> tuple[str, str, str]:
    """A broker's --in, --out and --snapshot on free loopback ports."""
    return tuple(f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(3))  # type: ignore[return-value]


def broker_command(ports: tuple[str, str, str], *extra: str) -> list[str]:
    """``mnist-live broker`` on ``ports``, quiet, as its own process."""
    return [sys.executable, "-m", "protocol.cli", "broker", "--log-level", "WARNING",
            "--in", ports[0], "--out", ports[1], "--snapshot", ports[2], *extra]  # fmt: skip


def one_broker(record: str | None, metrics: int, samples: int, latency_rate: float) -> dict:
    """Throughput and latency of one fresh broker, and its recording figures if any."""
    in_ep, out_ep, snap = ports = loopback_endpoints()
    extra = ["--history-mb", "1024", *(["--record", record] if record else [])]
    broker = start(broker_command(ports, *extra))
    try:
        wait_for_broker(snap)
        result: dict[str, Any] = {}
        for name, kind, count, rate in (
            ("metrics", "metrics", metrics, 0.0),
            ("sample", "sample", samples, 0.0),
            ("latency", "metrics", 2000, latency_rate),
        ):
            cpu = broker_cpu_seconds(broker.pid)
            result[name] = measure(in_ep, out_ep, kind, count, rate)
            # the broker and its writer only: what forwarding and recording spend, whoever else runs
            result[name]["broker_cpu_us"] = round(
                1e6 * (broker_cpu_seconds(broker.pid) - cpu) / max(1, result[name]["received"]), 2
            )
        if record:
            time.sleep(1.0)  # let the writer catch up before its figures are read
            result["recording"] = ask(snap, {"type": "stats"}, 5.0)["recording"]
    finally:
        stop(broker)
    return result


def compare(
    metrics: int = 100_000, samples: int = 20_000, rounds: int = 3, latency_rate: float = 1000
) -> dict[str, Any]:
    """Median forwarding figures without (A) and with (B) recording, and B's cost in percent."""
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as directory:
        for i in range(rounds):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                record = str(Path(directory) / f"round-{i}") if mode == "on" else None
                runs[mode].append(one_broker(record, metrics, samples, latency_rate))

    def median(mode: str, kind: str, figure: str) -> float:
        return statistics.median(r[kind][figure] for r in runs[mode])

    summary: dict[str, Any] = {}
    for kind in ("metrics", "sample"):
        off, on = median("off", kind, "per_second"), median("on", kind, "per_second")
        summary[f"{kind}_per_second_off"] = off
        summary[f"{kind}_per_second_on"] = on
        summary[f"{kind}_cost_percent"] = round(100 * (off - on) / off, 2)
    for figure in ("p50_ms", "p99_ms"):
        summary[f"latency_{figure}_off"] = median("off", "latency", figure)
        summary[f"latency_{figure}_on"] = median("on", "latency", figure)
    for kind in ("metrics", "sample", "latency"):
        off, on = median("off", kind, "broker_cpu_us"), median("on", kind, "broker_cpu_us")
        summary[f"{kind}_broker_cpu_us_off"] = off
        summary[f"{kind}_broker_cpu_us_on"] = on
        summary[f"{kind}_broker_cpu_cost_percent"] = round(100 * (on - off) / off, 2)
    recordings = [r["recording"] for r in runs["on"]]
    summary["recorded_messages"] = sum(r["messages_written"] for r in recordings)
    summary["recording_dropped"] = sum(r["dropped"] for r in recordings)
    summary["recording_errors"] = [r["error"] for r in recordings if r["error"]]
    summary["all_received"] = all(
        r[k]["received"] == r[k]["sent"] for mode in runs.values() for r in mode for k in r
        if k != "recording"
    )  # fmt: skip
    summary["rounds"] = rounds
    summary["latency_rate"] = latency_rate
    summary["per_round"] = {
        mode: [{k: r[k]["per_second"] for k in ("metrics", "sample")} for r in runs[mode]]
        for mode in runs
    }
    return summary


def print_forwarding(s: dict[str, Any]) -> None:
    """:func:`compare`'s figures as a table, recording off against on."""
    print(f"{'forwarding':<34} {'recording off':>14} {'recording on':>14} {'cost':>8}")
    for kind in ("metrics", "sample"):
        off, on, cost = (s[f"{kind}_{f}"] for f in ("per_second_off", "per_second_on",
                                                       "cost_percent"))  # fmt: skip
        print(f"{kind + ' msgs/s (saturated)':<34} {off:>14,.0f} {on:>14,.0f} {cost:>7.1f}%")
    for kind in ("metrics", "sample", "latency"):
        off, on = s[f"{kind}_broker_cpu_us_off"], s[f"{kind}_broker_cpu_us_on"]
        cost = s[f"{kind}_broker_cpu_cost_percent"]
        label = f"broker+writer CPU us/msg, {kind}"
        print(f"{label:<34} {off:>14.2f} {on:>14.2f} {cost:>7.1f}%")
    for figure in ("p50_ms", "p99_ms"):
        label = f"latency {figure} at {s['latency_rate']:,.0f}/s"
        print(f"{label:<34} {s[f'latency_{figure}_off']:>14.3f} "
              f"{s[f'latency_{figure}_on']:>14.3f}")  # fmt: skip
    print(f"recorded {s['recorded_messages']:,} messages, dropped {s['recording_dropped']}, "
          f"errors {len(s['recording_errors'])}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=100_000, help="metric messages per round")
    parser.add_argument("--samples", type=int, default=20_000, help="sample messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (alternating order)")
    parser.add_argument("--latency-rate", type=float, default=1000, help="msgs/s when timing")
    args = parser.parse_args()
    s = compare(args.metrics, args.samples, args.rounds, args.latency_rate)
    print_forwarding(s)
    print(json.dumps(s))


if __name__ == "__main__":
    main()
