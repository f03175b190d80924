#!/usr/bin/env python3
"""How many dashboard sessions one viewer serves: frames, trainer-to-session lag, CPU, memory.

Starts a real ``mnist-live broker``, ``mnist-live view`` (``--num-procs P``) and a real trainer
(synthetic data, default recipe and cadences, paced by ``--steps-per-second``), then attaches
N concurrent sessions of the full dashboard from this process (see ``fanout_client`` for why
not ``bokeh.client``). Over ``--seconds`` it measures, per session, the frames that brought
rows to the ``loss`` source against frame rate x seconds, and the lag of each such frame (its
arrival minus the newest trainer ``sent_at`` among its rows); overall p50/p99, the lag in the
first against the last third of the run (growth), the viewer's CPU (from /proc) and its memory
per session (RSS growth over sessions). Finally a late session is opened and timed until it
holds as many rows as the live sessions had when it was asked for.

Targets (issue 15, this 2-core machine, load generator included, default cadences): 500
sessions on 1 process with >= 95% of frames, p99 lag <= 250 ms, no growth and <= 0.2 ms of
server CPU per session-frame; 1,000 sessions on 2 processes with >= 90% of frames and p99 <=
500 ms; a late session whole within 1 s; <= 15 kB per session per second, broken down by
source. ``--via-nginx`` opens the sessions through nginx in front of several viewers. The last
line is one JSON object.

    python scripts/bench_fanout.py --sessions 500 [--procs 1] [--seconds 30] [--via-nginx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nginx_front  # noqa: E402
from fanout_client import Session, SessionError, open_sessions  # noqa: E402

from protocol.endpoints import free_tcp_port, free_tcp_port_pair  # noqa: E402
from protocol.errors import CommandError  # noqa: E402

log = logging.getLogger("bench_fanout")

SYNTHETIC_STEPS_PER_EPOCH = math.ceil(10_000 / 32)
"""The default synthetic training set (10,000) at the default recipe's batch size (32)."""
GROWTH_MS = 50.0
"""Lag "grows" when the median of the last third exceeds the first third's by more than this."""
FRAME_FRACTION = {1: 0.95, 2: 0.9}
"""A session keeps up when it received at least this share of the frames it should have
(by server processes: 500 sessions on one, 1,000 on two)."""
LAG_P99_MS = {1: 250.0, 2: 500.0}
SCALE = {1: 500, 2: 1_000}
CPU_MS_PER_FRAME = 0.2
"""Server CPU per session-frame on one process."""
KB_PER_SESSION_SECOND = 15.0
LATE_TARGET_S = 1.0
STOP_TIMEOUT = 10.0
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
"""A paced trainer needs one core at most; BLAS threads spin-waiting would take the other."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


# -- processes ---------------------------------------------------------------------------


class Children:
    """Every process the benchmark starts, each in its own process group, all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        command = [sys.executable, "-m", "protocol.cli", *argv, "--log-level", "WARNING"]
        log.info("starting %s: %s", name, " ".join(argv))
        with open(self.log_dir / f"{name}.log", "wb") as output:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise CommandError(
                    f"{name} exited with status {process.returncode}; "
                    f"see {self.log_dir / (name + '.log')}"
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, process in self.processes.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def view_options() -> str:
    """``mnist-live view --help``, to pass only the options this viewer has."""
    result = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "view", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    if process.poll() is not None:
        return  # the caller's check names the log
    raise CommandError(f"nothing served {host}:{port} within {timeout:.0f} s")


# -- /proc -------------------------------------------------------------------------------


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants (``--num-procs`` forks the server processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (the first line of /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * PAGE_BYTES / 1e6


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Window:
    start: float
    end: float


class LoopDelay:
    """How late this process's event loop wakes up: if high, the client, not the server, lags."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.delays: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period)
            self.delays.append(time.monotonic() - before - self.period)


def ms(values: list[float] | np.ndarray, q: float) -> float | None:
    return round(1000 * float(np.percentile(values, q)), 1) if len(values) else None


def viewer_gc(address: str) -> dict[str, float]:
    """Garbage-collection figures from a viewer's /metrics (one process's, under --procs 2)."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    wanted = {
        'mnist_live_viewer_gc_seconds_total{generation="2"}': "full_seconds",
        'mnist_live_viewer_gc_collections_total{generation="2"}': "full_count",
        "mnist_live_viewer_gc_longest_pause_seconds": "longest",
    }
    figures: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        name = re.sub(r'process="\d+",?', "", name).replace("{}", "")
        if name in wanted:
            figures[wanted[name]] = float(value)
    return figures


def gc_during(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """The viewer's full collections within the window, and its longest pause so far."""
    if not {"full_count", "full_seconds", "longest"} <= after.keys():  # no /metrics, or older
        return {
            "viewer_full_gcs": None,
            "viewer_full_gc_ms": None,
            "viewer_gc_longest_pause_ms": None,
        }
    return {
        "viewer_full_gcs": after["full_count"] - before.get("full_count", 0),
        "viewer_full_gc_ms": round(
            1000 * (after["full_seconds"] - before.get("full_seconds", 0)), 1
        ),
        "viewer_gc_longest_pause_ms": round(1000 * after["longest"], 1),
    }


async def wait_for_training(url: str, timeout: float) -> None:
    """Hold the sessions back until the viewer shows the run, so every one has curves."""
    probe = (await open_sessions(url, 1, parallel=1, timeout=timeout))[0]
    deadline = time.time() + timeout
    try:
        while probe.rows == 0 and time.time() < deadline and not probe.closed.is_set():
            probe.rows_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.rows_changed.wait(), deadline - time.time())
        if probe.rows == 0:
            raise CommandError(f"the viewer showed no training within {timeout:.0f} s")
    finally:
        probe.close()


async def time_late_session(url: str, live: list[Session], timeout: float) -> dict:
    """Open one more session and time it until it holds the newest step live sessions hold now
    (its history may come thinned to what the plots draw, so rows are not the measure)."""
    target = max(s.last_step or 0.0 for s in live)
    rows = max(s.rows for s in live)
    started = time.time()
    late = await asyncio.wait_for(
        open_sessions(url, 1, parallel=1, timeout=timeout, deflate=live[0].deflate), timeout
    )
    session = late[0]
    deadline = started + timeout

    def whole() -> bool:
        return session.last_step is not None and session.last_step >= target

    try:
        while not whole() and time.time() < deadline and not session.closed.is_set():
            session.rows_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.rows_changed.wait(), deadline - time.time())
        return {
            "late_session_first_page_kb": round(session.pull_bytes / 1000, 1),
            "late_session_seconds": round(time.time() - started, 3) if whole() else None,
            "late_session_pull_seconds": round(session.pulled_at - started, 3),
            "late_session_rows": session.rows,
            "live_session_rows": rows,
            "late_session_step": session.last_step,
            "live_session_step": target,
        }
    finally:
        session.close()


async def attach(
    url: str, args: argparse.Namespace, server: list[int], feed: dict[str, list[int]], viewer: str
) -> dict:
    """Open the sessions, measure the window, time a late session; close everything."""
    await wait_for_training(url, timeout=args.open_timeout)
    log.info("opening %d sessions, %d at a time", args.sessions, args.open_parallel)
    opened = time.time()
    sessions = await open_sessions(
        url,
        args.sessions,
        parallel=args.open_parallel,
        timeout=args.open_timeout,
        deflate=not args.plain,
    )
    open_seconds = time.time() - opened
    log.info("%d sessions open in %.1f s", len(sessions), open_seconds)
    try:
        if not all(s.has_sent_at for s in sessions):
            log.warning("the loss source has no sent_at column: lag cannot be measured")
        gc.collect()
        gc.freeze()
        delay = LoopDelay()
        delay.start()
        await asyncio.sleep(args.settle)
        window = Window(time.time(), 0.0)
        traffic0 = sum(s.messages for s in sessions), sum(s.bytes for s in sessions)
        by_source0 = sum((s.bytes_by_name for s in sessions), Counter())
        cpu0, client0 = cpu_seconds(server), time.process_time()
        feed0 = {name: cpu_seconds(pids) for name, pids in feed.items()}
        busy0 = machine_busy_seconds()
        rss_open = rss_mb(server)
        gc0 = viewer_gc(viewer)
        log.info("measuring for %.0f s", args.seconds)
        await asyncio.sleep(args.seconds)
        window.end = time.time()
        traffic1 = sum(s.messages for s in sessions), sum(s.bytes for s in sessions)
        by_source1 = sum((s.bytes_by_name for s in sessions), Counter())
        cpu1, client1 = cpu_seconds(server), time.process_time()
        feed1 = {name: cpu_seconds(pids) for name, pids in feed.items()}
        busy1 = machine_busy_seconds()
        rss_end = rss_mb(server)
        gc1 = viewer_gc(viewer)
        delay.stop()
        fed = sum(feed1[name] - feed0[name] for name in feed)
        late = await time_late_session(url, sessions, args.open_timeout)
        log.info("late session complete in %s s", late["late_session_seconds"])
    finally:
        for session in sessions:
            session.close()
    seconds = window.end - window.start
    return {
        "sessions": sessions,
        "window": window,
        "open_seconds": open_seconds,
        "server_cpu_percent": 100 * (cpu1 - cpu0) / seconds,
        "server_cpu_seconds": cpu1 - cpu0,
        "messages": traffic1[0] - traffic0[0],
        "bytes": traffic1[1] - traffic0[1],
        "bytes_by_source": by_source1 - by_source0,
        "client_cpu_percent": 100 * (client1 - client0) / seconds,
        **{f"{name}_cpu_percent": 100 * (feed1[name] - feed0[name]) / seconds for name in feed},
        "machine_busy_percent": 100 * (busy1 - busy0) / seconds,
        "others_cpu_percent": 100
        * ((busy1 - busy0) - (cpu1 - cpu0) - (client1 - client0) - fed)
        / seconds,
        "client_loop_delay_p99_ms": ms(delay.delays, 99),
        "rss_open": rss_open,
        "rss_end": rss_end,
        "gc": gc_during(gc0, gc1),
        **late,
    }


def summarise(result: dict, args: argparse.Namespace, rss_before: float) -> dict:
    window: Window = result["window"]
    sessions: list[Session] = result["sessions"]
    seconds = window.end - window.start
    third = seconds / 3
    expected = args.frame_rate * seconds
    fractions, lags, first, last = [], [], [], []
    for session in sessions:
        frames = [f for f in session.frames if window.start <= f.received_at < window.end]
        fractions.append(len(frames) / expected)
        for frame in frames:
            if frame.lag is None:
                continue
            lags.append(frame.lag)
            if frame.received_at < window.start + third:
                first.append(frame.lag)
            elif frame.received_at >= window.end - third:
                last.append(frame.lag)
    growth = (
        round(1000 * (float(np.median(last)) - float(np.median(first))), 1)
        if first and last
        else None
    )
    procs = min(args.procs, 2)
    budget = LAG_P99_MS[procs]
    frames_total = sum(fractions) * expected
    summary = {
        "sessions": args.sessions,
        "procs": args.procs,
        "seconds": round(seconds, 1),
        "frame_rate": args.frame_rate,
        "steps_per_second": args.steps_per_second,
        "open_seconds": round(result["open_seconds"], 1),
        "frames_expected": round(expected, 1),
        "frames_received_mean": round(float(np.mean(fractions)) * expected, 1),
        "frame_fraction_min": round(min(fractions), 3),
        "frame_fraction_median": round(float(np.median(fractions)), 3),
        "sessions_failed": sum(1 for s in sessions if s.error),
        "sessions_compressed": sum(1 for s in sessions if s.compressed_alone),
        "lag_p50_ms": ms(lags, 50),
        "lag_p99_ms": ms(lags, 99),
        "lag_first_third_p50_ms": ms(first, 50),
        "lag_first_third_p99_ms": ms(first, 99),
        "lag_last_third_p50_ms": ms(last, 50),
        "lag_last_third_p99_ms": ms(last, 99),
        "lag_growth_ms": growth,
        "lag_grows": None if growth is None else growth > GROWTH_MS,
        "server_cpu_percent": round(result["server_cpu_percent"], 1),
        "server_cpu_ms_per_frame": round(1000 * result["server_cpu_seconds"] / frames_total, 2)
        if frames_total
        else None,
        "messages_per_frame": round(result["messages"] / frames_total, 1) if frames_total else None,
        "kb_per_session_second": round(result["bytes"] / 1000 / args.sessions / seconds, 1),
        "kb_per_session_second_by_source": by_source(result, args.sessions * seconds),
        "server_rss_mb_before": round(rss_before, 1),
        "server_rss_mb_open": round(result["rss_open"], 1),
        "server_rss_mb_end": round(result["rss_end"], 1),
        "memory_per_session_mb": round((result["rss_open"] - rss_before) / args.sessions, 3),
        "server_rss_growth_mb_during_run": round(result["rss_end"] - result["rss_open"], 1),
        **result["gc"],
        "client_cpu_percent": round(result["client_cpu_percent"], 1),
        "client_loop_delay_p99_ms": result["client_loop_delay_p99_ms"],
        "trainer_cpu_percent": round(result["trainer_cpu_percent"], 1),
        "broker_cpu_percent": round(result["broker_cpu_percent"], 1),
        "nginx_cpu_percent": round(result["nginx_cpu_percent"], 1) if args.via_nginx else None,
        "via_nginx": args.via_nginx,
        "compressed": not args.plain,
        "backends": args.backends if args.via_nginx else 1,
        "machine_cores": os.cpu_count(),
        "machine_busy_percent": round(result["machine_busy_percent"], 1),
        "others_cpu_percent": round(max(0.0, result["others_cpu_percent"]), 1),
        "late_session_seconds": result["late_session_seconds"],
        "late_session_first_page_kb": result["late_session_first_page_kb"],
        "late_session_pull_seconds": result["late_session_pull_seconds"],
        "late_session_rows": result["late_session_rows"],
        "live_session_rows": result["live_session_rows"],
        "late_session_step": result["late_session_step"],
        "live_session_step": result["live_session_step"],
        "target_lag_p99_ms": budget,
        "target_late_session_seconds": LATE_TARGET_S,
        "target_growth_ms": GROWTH_MS,
        "target_frame_fraction": FRAME_FRACTION[procs],
        "target_cpu_ms_per_frame": CPU_MS_PER_FRAME if procs == 1 else None,
        "target_kb_per_session_second": KB_PER_SESSION_SECOND,
        "target_scale": f"{SCALE[procs]} sessions, {procs} procs",
    }
    late = summary["late_session_seconds"]
    summary["pass"] = bool(
        summary["lag_p99_ms"] is not None
        and summary["lag_p99_ms"] <= budget
        and summary["lag_grows"] is False
        and summary["frame_fraction_median"] >= FRAME_FRACTION[procs]
        and summary["sessions_failed"] == 0
        and late is not None
        and late <= LATE_TARGET_S
        and (procs > 1 or (summary["server_cpu_ms_per_frame"] or 0) <= CPU_MS_PER_FRAME)
    )
    summary["bytes_within_budget"] = summary["kb_per_session_second"] <= KB_PER_SESSION_SECOND
    summary["at_target_scale"] = args.sessions >= SCALE[procs]
    return summary


def by_source(result: dict, session_seconds: float) -> dict[str, float]:
    """kB per session-second for each model the patches changed, largest first; ``other``: the
    rest of the traffic (message headers, websocket framing, the controls)."""
    sizes: Counter = result["bytes_by_source"]
    figures = {name: size / 1000 / session_seconds for name, size in sizes.most_common()}
    figures["other"] = max(0.0, result["bytes"] - sum(sizes.values())) / 1000 / session_seconds
    return {name: round(kb, 2) for name, kb in figures.items()}


def print_table(s: dict) -> None:
    def pair(a: str, b: str, unit: str = "") -> str:
        return f"{s[a]} / {s[b]}{unit}"

    rows = [
        ("sessions / server processes", pair("sessions", "procs")),
        ("measured window", f"{s['seconds']} s at {s['frame_rate']} frames/s"),
        ("sessions opened in", f"{s['open_seconds']} s ({s['sessions_failed']} failed)"),
        ("frames per session", f"{s['frames_received_mean']} of {s['frames_expected']}"),
        ("frame fraction min / median", pair("frame_fraction_min", "frame_fraction_median")),
        ("lag p50 / p99", pair("lag_p50_ms", "lag_p99_ms", " ms")),
        ("lag p50 first / last third", pair("lag_first_third_p50_ms", "lag_last_third_p50_ms")),
        ("lag p99 first / last third", pair("lag_first_third_p99_ms", "lag_last_third_p99_ms")),
        ("server CPU", f"{s['server_cpu_percent']} % of one core"),
        ("server CPU per session frame", f"{s['server_cpu_ms_per_frame']} ms"),
        ("Bokeh messages per frame", f"{s['messages_per_frame']}"),
        (
            "traffic per session",
            f"{s['kb_per_session_second']} kB/s"
            + (" (compressed)" if s["compressed"] else " (sessions without compression)"),
        ),
        *(
            (f"  {name}", f"{kb} kB/s")
            for name, kb in s["kb_per_session_second_by_source"].items()
        ),
        ("server RSS at open / end", pair("server_rss_mb_open", "server_rss_mb_end", " MB")),
        ("memory per session", f"{s['memory_per_session_mb']} MB"),
        ("viewer full GCs / their ms", pair("viewer_full_gcs", "viewer_full_gc_ms")),
        ("viewer longest GC pause", f"{s['viewer_gc_longest_pause_ms']} ms"),
        ("client CPU / loop delay p99", pair("client_cpu_percent", "client_loop_delay_p99_ms")),
        ("trainer / broker CPU", pair("trainer_cpu_percent", "broker_cpu_percent", " %")),
        ("nginx CPU / backends", pair("nginx_cpu_percent", "backends", "")),
        ("machine busy / not ours", pair("machine_busy_percent", "others_cpu_percent", " %")),
        ("late session complete in", f"{s['late_session_seconds']} s"),
        ("late session's first page", f"{s['late_session_first_page_kb']} kB"),
        ("late session rows / live rows", pair("late_session_rows", "live_session_rows")),
        ("late session step / live step", pair("late_session_step", "live_session_step")),
        ("target lag p99", f"{s['target_lag_p99_ms']:.0f} ms at {s['target_scale']}"),
        ("pass", f"{s['pass']} (at target scale: {s['at_target_scale']})"),
        ("within the byte budget", f"{s['bytes_within_budget']} ({KB_PER_SESSION_SECOND} kB/s)"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


# -- main --------------------------------------------------------------------------------


def room_parser(doc: str, settle: float, open_timeout: float) -> argparse.ArgumentParser:
    """The options every benchmark of the room has: ``--settle`` (seconds before measuring),
    ``--open-timeout`` (seconds one session may take to open) and ``--log-level``; the
    benchmark adds its own."""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--settle", type=float, default=settle, help="seconds before measuring")
    parser.add_argument(
        "--open-timeout", type=float, default=open_timeout, help="seconds per session to open"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = room_parser(__doc__, settle=2.0, open_timeout=60.0)
    parser.add_argument("--sessions", type=int, required=True, help="concurrent sessions")
    parser.add_argument("--procs", type=int, default=1, help="viewer processes (--num-procs)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measurement")
    parser.add_argument(
        "--frame-rate", type=float, default=5.0, help="updates per second per session (viewer)"
    )
    parser.add_argument(
        "--steps-per-second", type=float, default=50.0, help="pace of the trainer (0: full speed)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of training before sessions attach"
    )
    parser.add_argument(
        "--open-parallel", type=int, default=4, help="sessions being opened at once"
    )
    parser.add_argument(
        "--via-nginx",
        action="store_true",
        help="open the sessions through nginx (docs/scaling.md's configuration) in front of "
        "--backends viewers on 127.0.0.2, .3, ... (stand-ins for hosts)",
    )
    parser.add_argument("--backends", type=int, default=3, help="viewers behind nginx")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="sessions do not offer websocket compression (browsers do): the reference for "
        "what compression saves and costs",
    )
    args = parser.parse_args(argv)
    if min(args.sessions, args.procs, args.open_parallel, args.backends) < 1:
        parser.error("--sessions, --procs, --open-parallel and --backends must be at least 1")
    if args.via_nginx and nginx_front.NGINX is None:
        parser.error("--via-nginx needs nginx (apt-get install nginx)")
    if args.seconds <= 0 or args.frame_rate <= 0:
        parser.error("--seconds and --frame-rate must be positive")
    return args


def trainer_epochs(args: argparse.Namespace) -> int:
    """Enough epochs of the default recipe that training outlasts the whole benchmark."""
    if not args.steps_per_second:
        return 10
    budget = args.warmup + args.sessions * 3.0 + args.seconds + 120
    return max(10, math.ceil(args.steps_per_second * budget / SYNTHETIC_STEPS_PER_EPOCH))


def run(args: argparse.Namespace) -> dict:
    options = view_options()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    log.info("child logs in %s", log_dir)
    children = Children(log_dir)
    chosen: set[int] = set()
    for _ in range(3):  # the broker's --in, the page's port, nginx's: none twice
        chosen.add(free_tcp_port(avoid=chosen))
    in_port, port, listen = sorted(chosen)
    broker_in = f"tcp://127.0.0.1:{in_port}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair(avoid=chosen)}"
    hosts = [f"127.0.0.{2 + i}" for i in range(args.backends)] if args.via_nginx else ["127.0.0.1"]
    view = ["view", "--connect", broker_out, "--port", str(port)]
    if args.via_nginx:
        view += ["--use-xheaders", "--allow-origin", f"127.0.0.1:{listen}"]
    if "--num-procs" in options:
        view += ["--num-procs", str(args.procs)]
    elif args.procs != 1:
        raise CommandError("this viewer has no --num-procs option yet; run with --procs 1")
    if "--frame-rate" in options:
        view += ["--frame-rate", f"{args.frame_rate:g}"]
    elif args.frame_rate != 5.0:
        raise CommandError("this viewer has no --frame-rate option yet; run at --frame-rate 5")
    nginx = None
    try:
        children.start("broker", "broker", "--in", broker_in, "--out", broker_out)
        viewers = [children.start(f"viewer-{host}", *view, "--address", host) for host in hosts]
        for host, viewer in zip(hosts, viewers, strict=True):
            wait_for_port(host, port, viewer, timeout=60)
        children.check()
        train = ["train", "--connect", broker_in, "--dataset", "synthetic", "--quiet"]
        train += ["--epochs", str(trainer_epochs(args))]
        if args.steps_per_second:
            train += ["--steps-per-second", f"{args.steps_per_second:g}"]
        children.start("trainer", *train, env=ONE_THREAD)
        feed = {name: family(children.processes[name].pid) for name in ("broker", "trainer")}
        url = f"ws://{hosts[0]}:{port}/ws"
        if args.via_nginx:
            backends = [f"{host}:{port}" for host in hosts]
            nginx = nginx_front.start(log_dir, listen, backends, 2 * args.sessions + 64)
            wait_for_port("127.0.0.1", listen, nginx, timeout=10)
            if nginx.poll() is not None:
                raise CommandError(f"nginx did not start; see {log_dir / 'error.log'}")
            feed["nginx"] = family(nginx.pid)
            url = f"ws://127.0.0.1:{listen}/ws"
        time.sleep(args.warmup)
        children.check()
        server = [pid for viewer in viewers for pid in family(viewer.pid)]
        rss_before = rss_mb(server)
        result = asyncio.run(attach(url, args, server, feed, f"{hosts[0]}:{port}"))
        children.check()
        summary = summarise(result, args, rss_before)
    finally:
        if nginx is not None:
            nginx_front.stop(nginx)
        children.stop()
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when something went wrong
    return summary


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop every child."""
    raise KeyboardInterrupt


def run_main(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict],
    show: Callable[[dict], None],
) -> int:
    """What every benchmark of the room does around its ``run``: log at ``--log-level``,
    unwind on SIGTERM, one line for an error, ``show`` the figures, and last one JSON line."""
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S"
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run(args)
    except (CommandError, SessionError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    show(summary)
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("bench_fanout", parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
