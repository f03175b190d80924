"""Train the MLP with NumPy and publish its progress to a broker.

``mnist-live train`` resolves the dataset, builds the model from the options, and runs the loop
with a publisher beside it. Ctrl-C (or SIGTERM) ends the run as "stopped" and still tells the
viewers.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

import zmq

from broker.clients.publisher import Publisher
from broker.curve import keys as curve_keys
from protocol import endpoints
from protocol.errors import CommandError
from trainer import blas, checkpoint
from trainer.config import DEFAULT, PRESETS, TrainConfig
from trainer.control import Controls
from trainer.datasets import SYNTHETIC_TEST, Dataset, load_dataset
from trainer.files import atomic_file
from trainer.idx import DatasetError
from trainer.loop import Pacer, RunResult, train
from trainer.options import (
    add_config_arguments,
    cadence,
    config_from_args,
    nonnegative_int,
    positive_int,
    synthetic_size,
)
from trainer.progress import ProgressBar
from trainer.reporter import Cadences, Reporter
from trainer.tuning import Tuning

log = logging.getLogger("trainer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = f"Without options it trains the default recipe: {DEFAULT.describe()}."
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="auto",
        metavar="NAME_OR_PATH",
        help="'auto' (MNIST if cached, else synthetic), 'synthetic' (generated digits, offline), "
        "'mnist' or 'fashion-mnist' (from the cache or the system), a directory of IDX files "
        "(train-images-idx3-ubyte[.gz] and the other three), or a Keras-style .npz file",
    )
    data.add_argument(
        "--download", action="store_true", help="fetch 'mnist'/'fashion-mnist' if not cached"
    )
    data.add_argument(
        "--validation",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="hold out N training examples as a validation split, evaluated at each epoch end",
    )
    data.add_argument(
        "--synthetic-size",
        type=synthetic_size,
        default=None,
        metavar="TRAIN[,TEST]",
        help="examples the synthetic dataset generates (default: 10000,2000)",
    )

    model = parser.add_argument_group("model and optimisation (override the recipe)")
    model.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named recipe instead of the default (seed: the 2018 demo, "
        f"{PRESETS['seed'].describe()}); explicit options override it",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--save",
        type=Path,
        metavar="FILE.npz",
        help="write a checkpoint here at every epoch end and at the finish",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="FILE.npz",
        help="continue a saved run (its recipe, step count, data order and optimizer state)",
    )
    run.add_argument(
        "--summary",
        type=Path,
        metavar="FILE.json",
        help="write the final figures as JSON (for scripts and sweeps)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="BLAS threads for the matrix products (default: 1 when --steps-per-second paces "
        "the run, where more would only spin between the short steps; else every core)",
    )

    live = parser.add_argument_group("publishing and pacing")
    add_config_arguments(model, live)
    endpoints.add_publisher_argument(live)
    curve_keys.add_argument(live, "publisher")
    live.add_argument(
        "--wait-for-broker",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for a broker before publishing into the void",
    )
    for kind, seconds, what in (
        ("metrics", 0.05, "loss/accuracy updates"),
        ("sample", 0.25, "sample predictions"),
        ("eval", 1.0, "evaluations on the test subset"),
        ("weights", 1.0, "first-layer weight mosaics"),
        ("model", 5.0, "full model weights"),
    ):
        live.add_argument(
            f"--{kind}-every",
            type=cadence,
            default=seconds,
            metavar="SECONDS",
            help=f"seconds between {what}; 0 or 'off' sends none (default: {seconds:g})",
        )
    live.add_argument(
        "--eval-examples",
        type=positive_int,
        default=1000,
        metavar="N",
        help="test images in the frequent subset evaluation",
    )
    live.add_argument(
        "--weight-tiles",
        type=positive_int,
        default=64,
        metavar="N",
        help="hidden units shown in the weight mosaic",
    )


def load_data(args: argparse.Namespace, seed: int) -> Dataset:
    train_size, test_size = args.synthetic_size or (None, None)
    sizes = {}
    if train_size:
        sizes = {"synthetic_train": train_size, "synthetic_test": test_size or SYNTHETIC_TEST}
    try:
        dataset = load_dataset(
            args.dataset, seed=seed, validation=args.validation, download=args.download, **sizes
        )
    except DatasetError as exc:
        raise CommandError(str(exc)) from None
    return dataset


def run(args: argparse.Namespace) -> int:
    endpoints.check_endpoint(args.connect, "--connect")
    curve = curve_keys.from_arguments(args, "publisher")
    resume = checkpoint.load(args.resume) if args.resume else None
    config = config_from_args(args, resume.config if resume else None)
    dataset = load_data(args, config.seed)
    if resume and resume.dataset != dataset.name:
        log.warning("%s was trained on %s; continuing on %s", args.resume, resume.dataset,
                    dataset.name)  # fmt: skip
    train_size = len(dataset.train_labels)
    if resume and resume.train_size is not None and resume.train_size != train_size:
        log.warning(
            "%s was trained on %d training images, this dataset has %d: an epoch is now %d "
            "steps, not %d, so the resumed run's epochs and length follow the new size",
            args.resume, resume.train_size, train_size, config.steps_per_epoch(train_size),
            config.steps_per_epoch(resume.train_size),
        )  # fmt: skip
    if args.save:
        _check_writable(args.save)
    if args.summary:
        _check_writable(args.summary)
    log.info("dataset: %s", dataset.description)
    log.info("recipe: %s", config.describe())
    log.debug("weight updates: %s", "fused, OpenBLAS" if blas.fused() else "plain NumPy")

    stop = threading.Event()  # from here on, Ctrl-C ends the run cleanly as "stopped"
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: _request_stop(stop))
    publisher = Publisher(args.connect, curve=curve)
    log.info("run %s publishing to %s", publisher.run_id, args.connect)
    if not publisher.wait_for_subscriber(args.wait_for_broker):
        log.warning("no broker at %s yet; training anyway, it can join later", args.connect)
    cadences = Cadences(
        metrics=args.metrics_every,
        sample=args.sample_every,
        evaluation=args.eval_every,
        weights=args.weights_every,
        model=args.model_every,
    )
    reporter = Reporter(
        publisher,
        dataset,
        cadences=cadences,
        eval_examples=args.eval_examples,
        weight_tiles=args.weight_tiles,
    )
    blas.limit_threads(args.threads, paced=config.steps_per_second is not None)
    pacer, tuning = Pacer(config.steps_per_second), Tuning.of(config)
    controls = Controls(source=publisher, pacer=pacer, announce=reporter, tuning=tuning)
    train_size = len(dataset.train_labels)
    progress = ProgressBar(
        config.total_steps(train_size),
        config.epochs,
        enabled=not args.quiet,
    )
    try:
        result = train(
            dataset,
            config,
            reporter,
            stop=stop,
            progress=progress,
            controls=controls,
            pacer=pacer,
            tuning=tuning,
            save=args.save,
            resume=resume,
        )
    finally:
        publisher.close()
        # End ZeroMQ here, while pyzmq's zero-copy collector still runs: left to the
        # interpreter's teardown, a large frame still in flight (the final model) was once
        # freed after that collector stopped, and the exit hung (pyzmq issues #1003, #65).
        # The socket's linger (1 s) still lets the last messages leave.
        zmq.Context.instance().term()
    published = {"messages": publisher.seq, "dropped": publisher.dropped}
    log.debug("published %d messages, %d dropped at the send queue", publisher.seq,
              publisher.dropped)  # fmt: skip
    if args.summary:
        _write_summary(args.summary, dataset, config, result, published)
    return 0 if result.status in ("completed", "stopped") else 1


def _write_summary(
    path: Path, dataset: Dataset, config: TrainConfig, result: RunResult, published: dict
) -> None:
    summary = {
        "dataset": {
            "name": dataset.name,
            "synthetic": dataset.synthetic,
            "train_size": len(dataset.train_labels),
            "validation_size": len(dataset.validation_labels),
            "test_size": len(dataset.test_labels),
        },
        "configuration": config.to_dict(),
        "status": result.status,
        "message": result.message,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "steps": result.steps,
        "epochs": result.epochs_completed,
        "wall_seconds": round(result.wall_seconds, 3),
        "samples_per_second": round(result.samples_per_second, 1),
        "published": published,
    }
    with atomic_file(path) as file:
        file.write((json.dumps(summary, indent=2) + "\n").encode())
    log.info("wrote summary %s", path)


def _check_writable(path: Path) -> None:
    """Fail before training, not after it, when an output file cannot be written."""
    directory = path.expanduser().resolve().parent
    if not directory.is_dir():
        raise CommandError(f"{path}: directory {directory} does not exist; create it first")


def _request_stop(stop: threading.Event) -> None:
    """Signal handler: finish the current step, then end the run as "stopped"."""
    if not stop.is_set():
        log.info("stopping: finishing the current step and telling the viewers")
    stop.set()
