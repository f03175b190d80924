#!/usr/bin/env python3
"""What joining costs: a late session at minute M of a run, and a burst of sessions at once.

Starts a real ``mnist-live broker`` and ``mnist-live view`` (``--num-procs P``) and, in place of
a trainer, a publisher that first sends ``--minutes`` of a default run's history at once (its
metrics rows at 20 a second, an evaluation a second, stamped in the past) and then goes on
live at the default cadences (metrics 20/s, a sample 4/s, an evaluation and the weights 1/s).
So the viewer holds what it would at minute M without waiting M minutes.

Then it measures, with the same session client as ``bench_fanout.py``:
- a late session: the bytes of its first page (everything up to the pulled document) and the
  seconds until it holds the live run's newest step;
- a burst: ``--burst`` sessions opened at ``--burst-rate`` a second, each timed from its
  connection to holding the newest step the live sessions held when it connected.

Targets (issue 15, this 2-core machine): first page at minute 30 <= 300 kB, whole in <= 1 s;
200 sessions opened within 10 s, each whole within 3 s. The last line is one JSON object.

    python scripts/bench_joining.py [--minutes 30] [--burst 200] [--burst-rate 20] [--procs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fanout import (  # noqa: E402
    Children,
    cpu_seconds,
    family,
    room_parser,
    run_main,
    wait_for_port,
)
from fanout_client import Session, SessionError  # noqa: E402

from broker.clients.publisher import Publisher  # noqa: E402
from protocol import (  # noqa: E402
    Architecture,
    DatasetInfo,
    Evaluation,
    FirstLayerWeights,
    Hyperparameters,
    RunStarted,
    SamplePrediction,
    TrainingMetrics,
)
from protocol.endpoints import free_tcp_port, free_tcp_port_pair  # noqa: E402
from protocol.errors import CommandError  # noqa: E402

log = logging.getLogger("bench_joining")

METRICS_PER_SECOND = 20
BATCH = 32
FIRST_PAGE_KB = 300.0
LATE_SECONDS = 1.0
BURST_WHOLE_SECONDS = 3.0
BUILD_EVERY = 0.25
"""viewer.pages.BUILD_EVERY: seconds between two pages built ahead."""


class Run:
    """A default run's messages, built as a trainer would send them."""

    def __init__(self, publisher: Publisher, seconds_per_step: float = 0.02) -> None:
        self.publisher = publisher
        self.seconds_per_step = seconds_per_step
        self.step = 0
        self.rng = np.random.default_rng(0)

    def started(self, total_steps: int) -> None:
        self.publisher.send(
            RunStarted,
            dataset=DatasetInfo(
                name="synthetic",
                synthetic=True,
                train_size=10_000,
                test_size=2_000,
                class_names=[str(i) for i in range(10)],
            ),
            architecture=Architecture(layer_sizes=[784, 512, 10], activation="relu"),
            hyperparameters=Hyperparameters(
                optimizer="momentum", learning_rate=0.05, batch_size=BATCH, epochs=10, seed=0
            ),
            total_steps=total_steps,
        )

    def metrics(self, sent_at: float) -> None:
        self.step += round(1 / (METRICS_PER_SECOND * self.seconds_per_step))
        loss = 2.3 * math.exp(-self.step / 3000) + 0.1 * self.rng.random()
        self.publisher.send(
            TrainingMetrics,
            sent_at=sent_at,
            step=self.step,
            epoch=self.step // 313,
            samples_seen=self.step * BATCH,
            loss=loss,
            batch_accuracy=float(self.rng.integers(20, 33)) / BATCH,
            learning_rate=0.05,
            samples_per_second=1600.0,
        )

    def evaluation(self, sent_at: float, mistakes: int = 8) -> None:
        confusion = np.eye(10, dtype=int) * 95 + self.rng.integers(0, 2, (10, 10))
        self.publisher.send(
            Evaluation,
            sent_at=sent_at,
            step=self.step,
            epoch=self.step // 313,
            accuracy=0.9,
            loss=0.3,
            examples=int(confusion.sum()),
            per_class_accuracy=[0.9] * 10,
            confusion=confusion.tolist(),
            misclassified_images=self.rng.integers(0, 256, (mistakes, 28, 28), dtype=np.uint8),
            misclassified_index=list(range(mistakes)),
            misclassified_label=[1] * mistakes,
            misclassified_predicted=[7] * mistakes,
        )

    def sample(self) -> None:
        probabilities = np.full(10, 0.02)
        probabilities[3] = 0.82
        self.publisher.send(
            SamplePrediction,
            step=self.step,
            index=int(self.rng.integers(0, 2000)),
            image=self.rng.integers(0, 256, (28, 28), dtype=np.uint8),
            label=3,
            probabilities=probabilities.tolist(),
        )

    def weights(self) -> None:
        self.publisher.send(
            FirstLayerWeights,
            step=self.step,
            epoch=self.step // 313,
            units=list(range(64)),
            tiles=self.rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
            scale=0.1,
        )

    def history(self, minutes: float) -> None:
        """``minutes`` of metrics and evaluations, stamped in the past, sent at once."""
        start = time.time() - 60 * minutes
        rows = round(60 * minutes * METRICS_PER_SECOND)
        for row in range(rows):
            self.metrics(start + row / METRICS_PER_SECOND)
            if row % METRICS_PER_SECOND == 0:
                self.evaluation(start + row / METRICS_PER_SECOND)

    def live(self, stop: threading.Event) -> None:
        """The default cadences, until ``stop``."""
        tick = 0
        while not stop.wait(1 / METRICS_PER_SECOND):
            tick += 1
            self.metrics(time.time())
            if tick % 5 == 0:
                self.sample()
            if tick % METRICS_PER_SECOND == 0:
                self.evaluation(time.time())
                self.weights()


def wait_for_pages(port: int, args: argparse.Namespace) -> None:
    """Until each server process has its pages built ahead (``/healthz`` answers for one
    process at a time, so every answer must say so)."""
    if not args.prebuild:
        return
    deadline = time.monotonic() + args.prebuild * BUILD_EVERY * 2 + 60
    full: set[int] = set()
    log.info("waiting for %d pages built ahead in each process", args.prebuild)
    while time.monotonic() < deadline and len(full) < args.procs:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            health = json.load(reply)
        if health.get("pages_ready", 0) >= args.prebuild:
            full.add(health["pid"])
        time.sleep(0.5)
    if len(full) < args.procs:
        raise CommandError("the viewer did not build its pages ahead in time")


async def open_one(url: str, timeout: float) -> Session:
    session = Session(url)
    await session.open(timeout)
    return session


async def until_whole(session: Session, step: float, deadline: float) -> float | None:
    """Seconds from the session's opening until it holds ``step`` (None: not by ``deadline``)."""
    while (session.last_step or 0) < step and time.time() < deadline:
        session.rows_changed.clear()
        try:
            await asyncio.wait_for(session.rows_changed.wait(), max(0.01, deadline - time.time()))
        except TimeoutError:
            break
    return (time.time() - session.opened_at) if (session.last_step or 0) >= step else None


async def measure(url: str, args: argparse.Namespace, run: Run, server: list[int]) -> dict:
    watcher = await open_one(url, args.open_timeout)
    try:
        await asyncio.sleep(1.0)
        target = watcher.last_step or 0
        late = await open_one(url, args.open_timeout)
        late_seconds = await until_whole(late, target, time.time() + args.open_timeout)
        first_page = late.pull_bytes
        page_sizes = {name: round(size / 1e3, 1) for name, size in late.page_sizes.items()}
        late_rows = late.rows
        late.close()
        log.info("late session: first page %.0f kB, whole in %s s", first_page / 1e3, late_seconds)

        log.info("opening %d sessions at %g a second", args.burst, args.burst_rate)
        cpu0 = cpu_seconds(server)
        began = time.time()
        sessions: list[Session] = []
        targets: list[float] = []

        async def one(delay: float) -> float | None:
            await asyncio.sleep(delay)
            targets.append(watcher.last_step or 0)
            session = Session(url)
            sessions.append(session)
            wanted = targets[-1]
            try:
                await session.open(args.open_timeout)
            except SessionError:
                return None
            return await until_whole(session, wanted, time.time() + args.open_timeout)

        times = await asyncio.gather(*(one(i / args.burst_rate) for i in range(args.burst)))
        burst_seconds = time.time() - began
        cpu = cpu_seconds(server) - cpu0
        for session in sessions:
            session.close()
    finally:
        watcher.close()
    done = [t for t in times if t is not None]
    return {
        "minutes": args.minutes,
        "procs": args.procs,
        "prebuild": args.prebuild,
        "history_rows": round(60 * args.minutes * METRICS_PER_SECOND),
        "late_first_page_kb": round(first_page / 1e3, 1),
        "late_whole_seconds": round(late_seconds, 3) if late_seconds is not None else None,
        "late_loss_rows": late_rows,
        "late_first_page_kb_by_source": page_sizes,
        "burst": args.burst,
        "burst_rate": args.burst_rate,
        "burst_opened_in_seconds": round(burst_seconds, 1),
        "burst_whole": len(done),
        "burst_whole_p50_seconds": round(float(np.percentile(done, 50)), 3) if done else None,
        "burst_whole_p99_seconds": round(float(np.percentile(done, 99)), 3) if done else None,
        "burst_whole_max_seconds": round(max(done), 3) if done else None,
        "burst_server_cpu_seconds_per_session": round(cpu / args.burst, 4),
        "target_first_page_kb": FIRST_PAGE_KB,
        "target_late_seconds": LATE_SECONDS,
        "target_burst_whole_seconds": BURST_WHOLE_SECONDS,
    }


def run(args: argparse.Namespace) -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-joining-"))
    children = Children(log_dir)
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    port = free_tcp_port()
    stop = threading.Event()
    publisher = None
    feeder = None
    try:
        children.start("broker", "broker", "--in", broker_in, "--out", broker_out)
        viewer = children.start(
            "viewer", "view", "--connect", broker_out, "--port", str(port),
            "--num-procs", str(args.procs), "--prebuild", str(args.prebuild),
        )  # fmt: skip
        wait_for_port("127.0.0.1", port, viewer, timeout=60)
        wait_for_pages(port, args)
        children.check()
        publisher = Publisher(broker_in, blocking=True)
        if not publisher.wait_for_subscriber(15):
            raise CommandError("the broker did not subscribe to the publisher")
        run = Run(publisher)
        run.started(total_steps=10**7)
        log.info("sending %.0f minutes of history", args.minutes)
        run.history(args.minutes)
        run.sample()
        run.weights()
        feeder = threading.Thread(target=run.live, args=(stop,), daemon=True)
        feeder.start()
        time.sleep(args.settle)
        children.check()
        server = family(viewer.pid)
        result = asyncio.run(measure(f"ws://127.0.0.1:{port}/ws", args, run, server))
        children.check()
    finally:
        stop.set()
        if feeder is not None:
            feeder.join(5)
        if publisher is not None:
            publisher.close()
        children.stop()
    late_ok = result["late_whole_seconds"] is not None
    result["pass"] = bool(
        result["late_first_page_kb"] <= FIRST_PAGE_KB
        and late_ok
        and result["late_whole_seconds"] <= LATE_SECONDS
        and result["burst_whole"] == args.burst
        and (result["burst_whole_max_seconds"] or math.inf) <= BURST_WHOLE_SECONDS
    )
    shutil.rmtree(log_dir, ignore_errors=True)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = room_parser(__doc__, settle=5.0, open_timeout=60.0)
    parser.add_argument("--minutes", type=float, default=30.0, help="history before joining")
    parser.add_argument("--burst", type=int, default=200, help="sessions opened in the burst")
    parser.add_argument("--burst-rate", type=float, default=20.0, help="burst sessions a second")
    parser.add_argument("--procs", type=int, default=1, help="viewer processes (--num-procs)")
    parser.add_argument(
        "--prebuild", type=int, default=0, help="pages each viewer process builds ahead"
    )
    args = parser.parse_args(argv)
    if args.minutes < 0 or args.burst < 1 or args.burst_rate <= 0 or args.procs < 1:
        parser.error("--minutes >= 0, --burst >= 1, --burst-rate > 0 and --procs >= 1")
    return args


def print_table(result: dict) -> None:
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    return run_main("bench_joining", parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
