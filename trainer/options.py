"""The command line's training options, generated from :class:`~trainer.config.TrainConfig`.

Each field of the configuration has one entry in :data:`OPTIONS` (its flag, how its text is
read, its help); ``--help`` shows each field's default as the dataclass has it, and
:func:`config_from_args` puts the options given on top of a preset or a checkpoint's
configuration. A field without an entry, or an entry without a field, is an error at import.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from protocol.cli import numbers
from protocol.messages import Activation
from trainer.config import DEFAULT, PRESETS, TrainConfig
from trainer.optim import OPTIMIZERS, SCHEDULES


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def seconds(text: str) -> float | None:
    """A cadence in seconds; ``0`` or ``off`` turns that kind of message off."""
    if text.lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, or 'off'") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def cadence(text: str) -> float | None:
    value = seconds(text)
    return None if value == 0 else value


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 1000 or 256,128") from None
    if not sizes or any(s < 1 or s > 100_000 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every hidden size must be 1..100000")
    return sizes


def synthetic_size(text: str) -> tuple[int, int | None]:
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give TRAIN or TRAIN,TEST")
    train = positive_int(parts[0])
    return train, positive_int(parts[1]) if len(parts) == 2 else None


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    group: str = "model"
    """``model`` (model and optimisation) or ``live`` (publishing and pacing)."""


OPTIONS: dict[str, Option] = {
    "hidden": Option(
        "--hidden",
        "hidden layer sizes, comma-separated: 1000 or 256,128",
        hidden_sizes,
        metavar="N[,N]",
    ),
    "activation": Option("--activation", "hidden-layer nonlinearity", None, get_args(Activation)),
    "optimizer": Option("--optimizer", "update rule", None, tuple(OPTIMIZERS)),
    "learning_rate": Option("--lr", "(base) learning rate", numbers.learning_rate, metavar="LR"),
    "momentum": Option(
        "--momentum",
        "velocity decay for 'momentum', beta1 for 'adam'",
        numbers.fraction,
        metavar="M",
    ),
    "weight_decay": Option(
        "--weight-decay",
        "L2 for sgd/momentum, decoupled (AdamW) for adam",
        numbers.fraction,
        metavar="WD",
    ),
    "schedule": Option(
        "--schedule",
        "learning rate over the run: constant, cosine (down to 0 at the end), "
        "step (/10 at 50%% and 75%%)",
        None,
        tuple(SCHEDULES),
    ),
    "batch_size": Option("--batch-size", "examples per step", positive_int, metavar="N"),
    "epochs": Option("--epochs", "passes over the training set", positive_int, metavar="N"),
    "max_steps": Option(
        "--max-steps", "stop after this many steps even if epochs remain", positive_int, metavar="N"
    ),
    "seed": Option("--seed", "seeds initialisation, shuffling and the synthetic data", int),
    "steps_per_second": Option(
        "--steps-per-second",
        "slow training to at most N steps/s so a room can follow it",
        numbers.pace,
        metavar="N",
        group="live",
    ),
    "wait_for_start": Option(
        "--wait-for-start",
        "hold before the first step until the presenter presses Start",
        group="live",
    ),
}
"""Every field of TrainConfig, as an option."""

_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}
if set(OPTIONS) != _FIELDS:  # a field added without its option, or the reverse
    raise AssertionError(f"OPTIONS and TrainConfig disagree: {sorted(set(OPTIONS) ^ _FIELDS)}")
SESSION_FIELDS = ("max_steps", "steps_per_second", "wait_for_start")
"""How far and how fast: this session's, never a checkpoint's or a preset's."""
RECIPE_FIELDS = tuple(f for f in OPTIONS if f not in (*SESSION_FIELDS, "seed"))
"""What a preset sets on top of a checkpoint's configuration (the checkpoint's seed stays)."""


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_config_arguments(model: Any, live: Any) -> None:
    """One option per field, into the ``model`` and ``live`` argument groups."""
    for field, option in OPTIONS.items():
        group = model if option.group == "model" else live
        default = getattr(DEFAULT, field)
        if isinstance(default, bool):
            group.add_argument(option.flag, dest=field, action="store_true", help=option.help)
            continue
        help_text = option.help + (f" (default: {_shown(default)})" if default is not None else "")
        group.add_argument(
            option.flag,
            dest=field,
            type=option.type,
            choices=option.choices,
            metavar=option.metavar,
            default=None,
            help=help_text,
        )


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> TrainConfig:
    """The run's configuration: the options given on the command line on top of ``base``.

    ``base`` is a checkpoint's configuration when resuming (a ``--preset`` then overrides it),
    else the preset or the defaults. How far and how fast belong to this session, never to the
    checkpoint.
    """
    preset = getattr(args, "preset", None)
    config = TrainConfig.from_dict(base) if base else PRESETS[preset or "default"]
    if base and preset:
        recipe = PRESETS[preset]
        config = dataclasses.replace(config, **{f: getattr(recipe, f) for f in RECIPE_FIELDS})
    asked = (f for f in OPTIONS if f not in SESSION_FIELDS)
    given = {f: v for f in asked if (v := getattr(args, f, None)) is not None}
    session: dict[str, Any] = {f: getattr(args, f, None) for f in SESSION_FIELDS}
    session["wait_for_start"] = bool(session["wait_for_start"])
    return dataclasses.replace(config, **given, **session)
