"""Runs side by side: each run's curves on a common x, and its recipe as a table row.

Runs that train on different batch sizes or at different speeds line up only on a common
axis: *samples seen* (how much data the network has learnt from; a step of batch 64 is two of
batch 32) or *wall time* (what a room waiting for a result feels). Both come from what every
run already carries: a step's samples from the run's ``run_started`` (batch size, steps per
epoch, training-set size; the last batch of an epoch may be short, as the trainer counts it)
and a row's time from its ``sent_at``. The loss is the smoothed training loss, the accuracy the
test subset's: the two curves a room compares.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from protocol import RunStarted
from protocol.cli.durations import format_duration
from protocol.messages import samples_seen as protocol_samples_seen
from viewer.runs.decimate import m4_rows
from viewer.runs.state import RunHistory

Align = Literal["samples", "time"]
ALIGNMENTS: dict[Align, str] = {"samples": "samples seen", "time": "wall time (s)"}
CURVES = {"loss": ("loss", "loss_smooth"), "accuracy": ("accuracy", "accuracy")}
"""Each compared plot: the run's curve it draws, and the column drawn."""


def samples_seen(started: RunStarted | None, steps: np.ndarray) -> np.ndarray:
    """Training examples consumed by the first ``steps`` steps of the run ``started`` began
    (the trainer's own count); without it (a recording begun later) the steps themselves."""
    if started is None:
        return steps.astype(np.float64)
    per_epoch, batch = started.steps_per_epoch, started.hyperparameters.batch_size
    size = started.dataset.train_size
    return np.asarray(protocol_samples_seen(steps.astype(np.int64), per_epoch, batch, size), float)


def started_at(run: RunHistory) -> float:
    """When the run began: its ``run_started``, else its first curve row."""
    if run.started is not None:
        return run.started.sent_at
    times = [c.data["sent_at"][0] for c in run.curves.values() if len(c)]
    return min(times, default=0.0)


@dataclass(frozen=True)
class Snapshot:
    """What a comparison draws of a run, copied out (under the source's lock) so the drawing
    is done without holding it."""

    curves: dict[str, dict[str, np.ndarray]]
    """Per compared plot: ``step``, ``sent_at`` and ``y`` as arrays."""
    samples: Callable[[np.ndarray], np.ndarray]
    started_at: float


def snapshot(run: RunHistory) -> Snapshot:
    """``run``'s compared curves as arrays (a copy), with how to count its samples."""
    curves = {}
    for plot, (curve, column) in CURVES.items():
        data = run.curves[curve].data
        curves[plot] = {
            "step": np.asarray(data["step"]),
            "sent_at": np.asarray(data["sent_at"], dtype=np.float64),
            "y": np.asarray(data[column], dtype=np.float64),
        }
    return Snapshot(curves, functools.partial(samples_seen, run.started), started_at(run))


def aligned(run: RunHistory | Snapshot, by: Align) -> dict[str, dict[str, np.ndarray]]:
    """Each compared curve of ``run`` as ``{"x", "y"}`` arrays on the common axis, thinned
    (M4) to what a plot can draw (a :class:`Snapshot` needs no lock)."""
    copy = run if isinstance(run, Snapshot) else snapshot(run)
    out = {}
    for plot, data in copy.curves.items():
        x = copy.samples(data["step"]) if by == "samples" else data["sent_at"] - copy.started_at
        keep = m4_rows(x, [data["y"]])
        out[plot] = {"x": x[keep], "y": data["y"][keep]}
    return out


def _learning_rate(run: RunHistory) -> str:
    assert run.started is not None
    text = f"{run.started.hyperparameters.learning_rate:g}"
    for change in run.tunings:
        if change.learning_rate != change.previous_learning_rate:
            text += f" → {change.learning_rate:g} at step {change.step + 1:,}"
    return text


def _momentum(run: RunHistory) -> str:
    assert run.started is not None
    hp = run.started.hyperparameters
    if hp.optimizer == "sgd":
        return "none (sgd)"
    text = f"{hp.momentum:g}"
    for change in run.tunings:
        if change.momentum is not None and change.momentum != change.previous_momentum:
            text += f" → {change.momentum:g} at step {change.step + 1:,}"
    return text


def _final(run: RunHistory) -> str:
    if run.finished is not None and run.finished.test_accuracy is not None:
        return f"{run.finished.test_accuracy:.2%}"
    accuracy = run.curves["accuracy"].data["accuracy"]
    return f"{accuracy[-1]:.2%} (subset, so far)" if accuracy else "none yet"


ROWS = (
    ("dataset", lambda r: f"{r.started.dataset.name} ({r.started.dataset.train_size:,} train)"),
    ("model", lambda r: r.started.architecture.label),
    ("optimizer", lambda r: r.started.hyperparameters.optimizer),
    ("learning rate", _learning_rate),
    ("schedule", lambda r: r.started.hyperparameters.schedule),
    ("momentum", _momentum),
    ("weight decay", lambda r: f"{r.started.hyperparameters.weight_decay:g}"),
    ("batch size", lambda r: f"{r.started.hyperparameters.batch_size}"),
    ("epochs", lambda r: f"{r.started.hyperparameters.epochs}"),
    ("seed", lambda r: f"{r.started.hyperparameters.seed}"),
    ("steps", lambda r: f"{r.step:,} / {r.started.total_steps:,}"),
    ("wall time", lambda r: format_duration(max(0.0, r.last_sent_at - started_at(r)))),
    ("status", lambda r: r.status),
    ("test accuracy", _final),
)
"""The table's rows: a name, and what it says of a run (whose ``run_started`` is known)."""


def table_html(runs: dict[str, RunHistory], colours: dict[str, str]) -> str:
    """The runs' recipes side by side: one column per run, one row per setting, a setting that
    differs between runs in bold (what the comparison is about)."""
    if not runs:
        return '<p class="empty">Choose two or more runs to compare.</p>'
    head = "".join(
        f'<th><span class="swatch" style="background:{colours[key]}"></span>{html.escape(key)}</th>'
        for key in runs
    )
    body = []
    for name, say in ROWS:
        cells = [say(run) if run.started is not None else "?" for run in runs.values()]
        differs = len(set(cells)) > 1
        row = "".join(
            f"<td>{'<b>' if differs else ''}{html.escape(c)}{'</b>' if differs else ''}</td>"
            for c in cells
        )
        body.append(f"<tr><th>{name}</th>{row}</tr>")
    return f'<table class="runs"><tr><th></th>{head}</tr>{"".join(body)}</table>'
