"""Train the MLP with NumPy and publish its progress to a broker.

``mnist-live train`` resolves the dataset, builds the model from the options, and runs the loop
with a publisher beside it. Ctrl-C (or SIGTERM) ends the run as "stopped" and still tells the
viewers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

from protocol import endpoints
from protocol.messages import Activation

if TYPE_CHECKING:
    from trainer.loop import TrainConfig

log = logging.getLogger("trainer")


@dataclass(frozen=True)
class Preset:
    hidden: tuple[int, ...]
    activation: Activation
    optimizer: str
    lr: float
    batch_size: int


PRESETS = {
    "seed": Preset(hidden=(1000,), activation="relu", optimizer="sgd", lr=0.1, batch_size=16),
}
"""Named configurations; ``seed`` is the 2018 demo this project grew from."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 1000 or 256,128") from None
    if not sizes or any(s < 1 or s > 100_000 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every hidden size must be 1..100000")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect",
        default=endpoints.BROKER_IN,
        metavar="ENDPOINT",
        help="broker endpoint to publish to (the broker's --in)",
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        metavar="NAME_OR_DIR",
        help="'auto' (MNIST if cached, else synthetic), 'synthetic' (generated digits, offline), "
        "or a directory of MNIST IDX files (train-images-idx3-ubyte[.gz] and the other three)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named configuration (seed: the 2018 demo, 784-1000-10 ReLU, "
        "SGD lr 0.1, batch 16); explicit options override it",
    )
    parser.add_argument(
        "--hidden",
        type=_hidden_sizes,
        default=None,
        help="hidden layer sizes, comma-separated (default: 1000)",
    )
    parser.add_argument(
        "--activation",
        choices=get_args(Activation),
        default=None,
        help="hidden-layer nonlinearity (default: relu)",
    )
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.1)")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=None, help="examples per step (default: 16)"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=5, help="passes over the training set"
    )
    parser.add_argument(
        "--max-steps",
        type=_positive_int,
        default=None,
        help="stop after this many steps even if epochs remain",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds initialisation, shuffling and the synthetic data"
    )
    parser.add_argument(
        "--steps-per-second",
        type=float,
        default=None,
        metavar="N",
        help="slow training to at most N steps/s so a room can follow it",
    )
    parser.add_argument(
        "--wait-for-broker",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for a broker before publishing into the void",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from trainer.loop import TrainConfig

    preset = PRESETS[args.preset or "seed"]
    return TrainConfig(
        hidden=args.hidden or preset.hidden,
        activation=args.activation or preset.activation,
        optimizer=preset.optimizer,
        learning_rate=args.lr if args.lr is not None else preset.lr,
        batch_size=args.batch_size or preset.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        steps_per_second=args.steps_per_second,
    )


def run(args: argparse.Namespace) -> int:
    from protocol.errors import CommandError
    from trainer.datasets import load_dataset
    from trainer.idx import DatasetError
    from trainer.loop import train
    from trainer.progress import ProgressBar
    from trainer.publisher import Publisher
    from trainer.reporter import Reporter

    endpoints.check_endpoint(args.connect, "--connect")
    if args.lr is not None and not args.lr > 0:
        raise CommandError(f"--lr must be positive, got {args.lr}")
    config = config_from_args(args)
    try:
        dataset = load_dataset(args.dataset, seed=config.seed)
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    log.info("dataset: %s", dataset.description)
    publisher = Publisher(args.connect)
    log.info("run %s publishing to %s", publisher.run_id, args.connect)
    if not publisher.wait_for_subscriber(args.wait_for_broker):
        log.warning("no broker at %s yet; training anyway, it can join later", args.connect)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: _request_stop(stop))
    progress = ProgressBar(
        config.total_steps(len(dataset.train_labels)), config.epochs, enabled=not args.quiet
    )
    try:
        result = train(dataset, config, Reporter(publisher, dataset), stop=stop, progress=progress)
    finally:
        publisher.close()
    return 0 if result.status in ("completed", "stopped") else 1


def _request_stop(stop: threading.Event) -> None:
    """Signal handler: finish the current step, then end the run as "stopped"."""
    if not stop.is_set():
        log.info("stopping: finishing the current step and telling the viewers")
    stop.set()
