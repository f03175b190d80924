"""Numbers on a command line, held to what the protocol accepts: one parser per quantity, for
every program that takes it (``train --lr``, ``control set --lr``, ``--steps-per-second`` ...).

Each is an argparse ``type``: a bad value is argparse's one-line error naming the option.
"""

from __future__ import annotations

import argparse
import math

from protocol.control import MAX_PACE, MIN_PACE
from protocol.messages import MAX_LEARNING_RATE


def bounded(
    text: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> float:
    """``text`` as a finite number within the bounds given, else what it should have been."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    checks = [
        (f"{word} {bound:g}", ok)
        for word, bound, ok in (
            ("above", above, above is None or value > above),
            ("at least", at_least, at_least is None or value >= at_least),
            ("at most", at_most, at_most is None or value <= at_most),
            ("below", below, below is None or value < below),
        )
        if bound is not None
    ]
    if not math.isfinite(value) or not all(ok for _, ok in checks):
        wanted = " and ".join(words for words, _ in checks) or "finite"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def positive(text: str) -> float:
    return bounded(text, above=0)


def fraction(text: str) -> float:
    """From 0 up to, not including, 1 (a momentum, a weight decay)."""
    return bounded(text, at_least=0, below=1)


def pace(text: str) -> float:
    """Steps per second, as a presenter's pace command carries it."""
    return bounded(text, at_least=MIN_PACE, at_most=MAX_PACE)


def learning_rate(text: str) -> float:
    """A (base) learning rate, as a ``tuned`` message carries it."""
    return bounded(text, above=0, at_most=MAX_LEARNING_RATE)
