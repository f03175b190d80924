#!/usr/bin/env python3
"""How fast the broker validates and forwards, and what it adds to latency.

A real ``mnist-live broker`` runs as a subprocess; a publisher process (a raw XPUB sending
pre-encoded messages of one run as fast as it can) and a subscriber process (a SUB counting
what arrives) measure, for metric, sample and weights messages, the validated messages
forwarded per second (subscriber side, first to last arrival). The same publisher and
subscriber are then run through a plain ``zmq.proxy(XSUB, XPUB)`` subprocess as the reference.
Latency: the publisher sends freshly stamped metrics at a steady rate and the subscriber
records arrival time minus ``sent_at`` (same machine, same clock).

Target (issue 4): at least 50,000 metric messages/s. The last line is one JSON object.

    python scripts/bench_broker.py [--metrics 100000] [--samples 20000] [--weights 2000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import FirstLayerWeights, SamplePrediction, TrainingMetrics, encode
from protocol.endpoints import free_tcp_port

PROXY = """
import sys, zmq
ctx = zmq.Context()
front, back = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
front.setsockopt(zmq.RCVHWM, 100_000); back.setsockopt(zmq.SNDHWM, 10_000)
front.bind(sys.argv[1]); back.bind(sys.argv[2])
zmq.proxy(front, back)
"""


def make(kind: str, run_id: str, seq: int) -> list[bytes]:
    common = {"run_id": run_id, "seq": seq, "step": seq}
    if kind == "metrics":
        return encode(TrainingMetrics(**common, epoch=0, samples_seen=seq * 16, loss=0.5,
                                      batch_accuracy=0.9, learning_rate=0.1,
                                      samples_per_second=5000.0))  # fmt: skip
    if kind == "sample":
        image = np.full((28, 28), seq % 256, np.uint8)
        probabilities = [0.05] * 9 + [0.55]
        return encode(SamplePrediction(**common, index=seq, image=image, label=9,
                                       probabilities=probabilities))  # fmt: skip
    tiles = np.full((64, 28, 28), seq % 256, np.uint8)
    return encode(FirstLayerWeights(**common, epoch=0, units=list(range(64)), tiles=tiles,
                                    scale=0.1))  # fmt: skip


def publisher(in_endpoint: str, kind: str, run_id: str, count: int, go, rate: float) -> None:
    """Send ``count`` messages; ``rate`` 0 means pre-encoded and as fast as possible."""
    socket = zmq.Context.instance().socket(zmq.XPUB)
    socket.setsockopt(zmq.SNDHWM, 1_000_000)
    socket.setsockopt(zmq.LINGER, 30_000)
    socket.connect(in_endpoint)
    socket.recv()  # the broker's subscription
    frames = [make(kind, run_id, seq) for seq in range(count)] if not rate else []
    warm = 0
    while not go.is_set():  # until the subscriber has one, so nothing is lost to slow joining
        socket.send_multipart(make("metrics", "warmup", warm))
        warm += 1
        time.sleep(0.01)
    if rate:
        start = time.perf_counter()
        for seq in range(count):
            time.sleep(max(0.0, start + seq / rate - time.perf_counter()))
            socket.send_multipart(make(kind, run_id, seq))
    else:
        for message in frames:
            socket.send_multipart(message)
    socket.close()
    zmq.Context.instance().term()  # waits until every queued message has left


def subscriber(out_endpoint: str, run_id: str, count: int, go, results, timed: bool) -> None:
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.setsockopt(zmq.RCVHWM, 1_000_000)
    socket.connect(out_endpoint)
    received, first, last, latencies = 0, 0.0, 0.0, []
    key = f'"run_id":"{run_id}"'.encode()
    while received < count and socket.poll(3000):
        frames = socket.recv_multipart()
        now = time.time()
        go.set()
        if key not in frames[1][:200]:
            continue
        if not received:
            first = time.perf_counter()
        received += 1
        last = time.perf_counter()
        if timed:
            latencies.append(now - json.loads(frames[1])["sent_at"])
    results.put({"received": received, "seconds": last - first, "latencies": latencies})


def measure(in_ep: str, out_ep: str, kind: str, count: int, rate: float = 0.0) -> dict:
    run_id = f"bench-{kind}-{time.monotonic_ns()}"
    go, results = mp.Event(), mp.Queue()
    sub = mp.Process(target=subscriber, args=(out_ep, run_id, count, go, results, bool(rate)))
    pub = mp.Process(target=publisher, args=(in_ep, kind, run_id, count, go, rate))
    try:
        sub.start()
        pub.start()
        result = results.get(timeout=300)
        sub.join(10)
        pub.join(60)
    finally:  # a subscriber that never reported must not leave either child behind
        for process in (sub, pub):
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    seconds = result["seconds"] or 1e-9
    latencies = sorted(result["latencies"])
    return {
        "kind": kind,
        "sent": count,
        "received": result["received"],
        "per_second": round(result["received"] / seconds),
        "p50_ms": round(1000 * statistics.median(latencies), 3) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 3)
        if latencies
        else None,
    }


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=100_000, help="metric messages to send")
    parser.add_argument("--samples", type=int, default=20_000, help="sample messages to send")
    parser.add_argument("--weights", type=int, default=2_000, help="weights messages (50 KB)")
    parser.add_argument("--latency-rate", type=float, default=1000, help="msgs/s when timing")
    args = parser.parse_args()

    rows: dict[str, dict] = {}
    in_ep, out_ep, snap = (f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(3))
    broker = start([sys.executable, "-m", "protocol.cli", "broker", "--log-level", "WARNING",
                    "--in", in_ep, "--out", out_ep, "--snapshot", snap,
                    "--history-mb", "1024"])  # fmt: skip
    try:
        time.sleep(1.0)
        rows["broker metrics"] = measure(in_ep, out_ep, "metrics", args.metrics)
        rows["broker sample"] = measure(in_ep, out_ep, "sample", args.samples)
        rows["broker weights"] = measure(in_ep, out_ep, "weights", args.weights)
        rows["broker latency"] = measure(in_ep, out_ep, "metrics", 2000, args.latency_rate)
    finally:
        stop(broker)
    in_ep, out_ep = (f"tcp://127.0.0.1:{free_tcp_port()}" for _ in range(2))
    proxy = start([sys.executable, "-c", PROXY, in_ep, out_ep])
    try:
        time.sleep(0.5)
        rows["proxy metrics"] = measure(in_ep, out_ep, "metrics", args.metrics)
        rows["proxy latency"] = measure(in_ep, out_ep, "metrics", 2000, args.latency_rate)
    finally:
        stop(proxy)

    print(f"{'path':<16} {'sent':>8} {'received':>9} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in rows.items():
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.3f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.3f}"
        print(f"{name:<16} {row['sent']:>8} {row['received']:>9} {row['per_second']:>9} "
              f"{p50:>8} {p99:>8}")  # fmt: skip
    summary = {
        "metrics_per_second": rows["broker metrics"]["per_second"],
        "samples_per_second": rows["broker sample"]["per_second"],
        "weights_per_second": rows["broker weights"]["per_second"],
        "latency_p50_ms": rows["broker latency"]["p50_ms"],
        "latency_p99_ms": rows["broker latency"]["p99_ms"],
        "proxy_metrics_per_second": rows["proxy metrics"]["per_second"],
        "proxy_latency_p50_ms": rows["proxy latency"]["p50_ms"],
        "proxy_latency_p99_ms": rows["proxy latency"]["p99_ms"],
        "all_received": all(r["received"] == r["sent"] for r in rows.values()),
        "target_metrics_per_second": 50_000,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
