#!/usr/bin/env python3
"""How fast our NumPy training step is, against PyTorch CPU and against the arithmetic itself.

For each configuration (784-1000-10 SGD batch 16, the 2018 demo; 784-128-10 Adam at batch 64
and 256) it trains with our real training loop (``trainer.loop.train``) and with the same
model in PyTorch: same architecture, optimizer, learning rate, batch size, data, batch order
and threads, each step computing the loss and the batch accuracy as a live run does. The two
alternate in rounds within one run so machine noise hits both alike; the rates are medians
and the ratio is the median of the per-round ratios.
Each side runs in its own worker process, so neither's idle BLAS/OpenMP threads (which spin
for a while before sleeping) steal cores from the other.

It also times the matrix products of one step at that configuration's shapes: their float32
GFLOP/s give the most samples/s the arithmetic allows on this machine (the "ceiling").

Target (issue 3): ours at least 1.5x PyTorch on every configuration. PyTorch comes from the
optional ``bench`` extra (``pip install -e .[bench]``); without it only our side and the
ceiling are measured. The last line is one JSON object with every figure.

    python scripts/bench_trainer.py [--seconds 60] [--rounds 5] [--threads N] [--only b256]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

# BLAS reads its thread count when it loads, so this must precede importing NumPy or PyTorch.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
THREADS = _pre.parse_known_args()[0].threads
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = str(THREADS)

import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import PRESETS, TrainConfig  # noqa: E402
from trainer.datasets import Dataset, load_dataset  # noqa: E402
from trainer.loop import batches, train  # noqa: E402
from trainer.mlp import pixels  # noqa: E402

MNIST_10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"

SEED = PRESETS["seed"]
"""What these configurations change: the 2018 demo's recipe."""


@dataclass(frozen=True)
class Bench:
    name: str
    config: TrainConfig


BENCHES = [
    Bench("784-1000-10 sgd b16", replace(SEED, hidden=(1000,), optimizer="sgd", learning_rate=0.1)),
    Bench(
        "784-128-10 adam b64",
        replace(SEED, hidden=(128,), optimizer="adam", learning_rate=1e-3, batch_size=64),
    ),
    Bench(
        "784-128-10 adam b256",
        replace(SEED, hidden=(128,), optimizer="adam", learning_rate=1e-3, batch_size=256),
    ),
]


class StepClock:
    """Stands in for the progress bar: records when each step ended."""

    def __init__(self, total: int) -> None:
        self.times = [time.perf_counter()] + [0.0] * total

    def update(self, step: int, epoch: int, loss: float, accuracy: float, samples: int) -> None:
        self.times[step] = time.perf_counter()

    def close(self) -> None:
        pass


def ours(dataset: Dataset, config: TrainConfig, steps: int) -> float:
    """Samples/s of our real training loop, over all but the first few steps."""
    clock = StepClock(steps)
    warmup = min(10, steps // 5)
    run = TrainConfig(**{**config.__dict__, "max_steps": steps, "epochs": 10_000})
    train(dataset, run, progress=clock)  # type: ignore[arg-type]
    return (steps - warmup) * config.batch_size / (clock.times[steps] - clock.times[warmup])


def theirs(torch, dataset: Dataset, config: TrainConfig, steps: int) -> float:
    """Samples/s of the same model, data, batch order and optimizer in PyTorch."""
    torch.manual_seed(config.seed)
    sizes = [784, *config.hidden, len(dataset.class_names)]
    layers: list = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    x = torch.from_numpy(pixels(dataset.train_images))
    y = torch.from_numpy(dataset.train_labels.astype(np.int64))
    run = TrainConfig(**{**config.__dict__, "max_steps": steps, "epochs": 10_000})
    order = [torch.from_numpy(b) for _, b in batches(run, len(y))]
    warmup = min(10, steps // 5)
    for i, batch in enumerate(order):
        if i == warmup:
            start = time.perf_counter()
        xb, yb = x[batch], y[batch]
        optimizer.zero_grad()
        logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        loss.backward()
        optimizer.step()
        loss.item(), (logits.argmax(dim=1) == yb).float().mean().item()
    return (steps - warmup) * config.batch_size / (time.perf_counter() - start)


def gemm_ceiling(config: TrainConfig, seconds: float = 1.0) -> tuple[float, float]:
    """GFLOP/s of one step's matrix products at their shapes, and the samples/s that allows."""
    rng = np.random.default_rng(0)
    sizes = [784, *config.hidden, 10]
    n = config.batch_size
    products = []  # (a, b, out) for the forward product, the weight gradient, the input gradient
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        x = rng.random((n, fan_in), dtype=np.float32)
        w = rng.random((fan_in, fan_out), dtype=np.float32)
        d = rng.random((n, fan_out), dtype=np.float32)
        products.append((x, w, np.empty((n, fan_out), np.float32)))
        products.append((x.T, d, np.empty((fan_in, fan_out), np.float32)))
        if layer > 0:
            products.append((d, w.T, np.empty((n, fan_in), np.float32)))
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products)
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(timings) < 20:
        start = time.perf_counter()
        for a, b, out in products:
            np.dot(a, b, out=out)
        timings.append(time.perf_counter() - start)
    best = min(timings)  # a ceiling: the fastest the products went, not a typical pass
    return flops / best / 1e9, n / best


def peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.dot(a, a, out=out)
    start = time.perf_counter()
    for _ in range(repeats):
        np.dot(a, a, out=out)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def worker(side: str) -> None:
    """Serve ``config_index steps`` lines on stdin with one samples/s figure per line."""
    torch = None
    if side == "torch":
        import torch

        torch.set_num_threads(THREADS)
    dataset = bench_dataset()
    for line in sys.stdin:
        index, steps = map(int, line.split())
        config = BENCHES[index].config
        rate = theirs(torch, dataset, config, steps) if torch else ours(dataset, config, steps)
        print(rate, flush=True)


class Worker:
    def __init__(self, side: str) -> None:
        command = [sys.executable, __file__, "--worker", side, f"--threads={THREADS}"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def rate(self, index: int, steps: int) -> float:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{index} {steps}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit("a benchmark worker died; see its error above")
        time.sleep(0.3)  # let its threads stop spinning before the other side runs
        return float(answer)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def bench_dataset() -> Dataset:
    if (MNIST_10K / "train-images-idx3-ubyte.gz").exists():
        return load_dataset(str(MNIST_10K))
    return load_dataset("synthetic", seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="rough total time budget")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per config")
    parser.add_argument(
        "--threads", type=int, default=THREADS, help="threads for BLAS and PyTorch (default: all)"
    )
    parser.add_argument(
        "--only", metavar="TEXT", help="only the configurations whose name contains TEXT"
    )
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch not installed: measuring our side and the GEMM ceiling only.", end=" ")
        print("For the comparison: pip install -e '.[bench]'  (torch==2.13.0, CPU build)")

    chosen = [i for i, b in enumerate(BENCHES) if args.only is None or args.only in b.name]
    if not chosen:
        names = ", ".join(b.name for b in BENCHES)
        raise SystemExit(f"no configuration's name contains {args.only!r}; they are: {names}")
    dataset_name = bench_dataset().name
    sides = {"ours": Worker("ours")} | ({"torch": Worker("torch")} if torch else {})
    per_run = args.seconds / len(chosen) / args.rounds / len(sides) * 0.7
    rows = []
    try:
        for index in chosen:
            bench = BENCHES[index]
            # Size each run to ~per_run seconds from a short calibration run of our side.
            probe = sides["ours"].rate(index, 60)
            steps = max(50, int(per_run * probe / bench.config.batch_size))
            rates: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, process in sides.items():
                    rates[side].append(process.rate(index, steps))
            gflops, ceiling = gemm_ceiling(bench.config)
            row = {
                "config": bench.name,
                "steps_per_run": steps,
                "ours_samples_per_s": round(statistics.median(rates["ours"])),
                "torch_samples_per_s": round(statistics.median(rates["torch"])) if torch else None,
                "gemm_gflops": round(gflops, 1),
                "ceiling_samples_per_s": round(ceiling),
            }
            if torch:
                # Each round runs both sides back to back, so the ratio within a round cancels
                # noise that hits the machine for longer than a run; its median is the figure.
                ratios = [o / t for o, t in zip(rates["ours"], rates["torch"], strict=True)]
                row["ratio"] = round(statistics.median(ratios), 2)
            rows.append(row)
            spread = {side: [round(r) for r in values] for side, values in rates.items()}
            print(f"{bench.name}: {spread}", file=sys.stderr)
    finally:
        for process in sides.values():
            process.close()

    header = f"{'config':<22}{'ours /s':>10}{'torch /s':>10}{'ratio':>7}"
    print(header + f"{'GEMM GF/s':>11}{'ceiling /s':>12}{'of ceiling':>12}")
    for row in rows:
        torch_rate = row["torch_samples_per_s"]
        print(
            f"{row['config']:<22}{row['ours_samples_per_s']:>10,}"
            f"{torch_rate if torch_rate is not None else 'n/a':>10}"
            f"{row.get('ratio', 'n/a'):>7}{row['gemm_gflops']:>11}"
            f"{row['ceiling_samples_per_s']:>12,}"
            f"{row['ours_samples_per_s'] / row['ceiling_samples_per_s']:>12.0%}"
        )
    figures = {
        "benchmark": "trainer",
        "threads": THREADS,
        "dataset": dataset_name,
        "numpy": np.__version__,
        "torch": torch.__version__ if torch else None,
        "peak_gflops_1024": round(peak_gflops(), 1),
        "configs": rows,
        "target_met": bool(torch) and all(r["ratio"] >= 1.5 for r in rows),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
