"""Everything a viewer process knows about a run, folded once and shared by all its sessions.

The hub thread applies each message exactly once and precomputes what a browser session
needs, so that a session's work per frame is a slice (new curve rows) or an assignment (a
changed picture). Curves are kept as columns (a list per field) because that is the shape a
Bokeh ``ColumnDataSource`` streams. Everything else is a *piece*: an immutable dict of source
columns with a version number that goes up when it changes, so a session sends a piece only
when its version differs from the one it sent last. Every Bokeh property a session changes
costs one websocket message to that browser (``doc.hold`` merges repeated changes of one
property, not messages), so pieces carry their text in source columns, not in plot titles.
"""

from __future__ import annotations

import functools
import html
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol import (
    Envelope,
    Evaluation,
    FirstLayerWeights,
    RunFinished,
    RunStarted,
    RunStatus,
    SamplePrediction,
    TrainingMetrics,
)

SMOOTHING = 0.9
"""EMA factor for the smoothed loss and batch accuracy, per metrics message (~20 a second)."""
ROWS_KEPT = 50_000
"""Curve rows a run keeps (and a session shows): ~40 minutes of metrics at 20 a second."""
OVERLAY_POINTS = 2_000
"""Points of the previous run's curves drawn as the faint overlay."""
GALLERY_COLUMNS = 4
"""Mistakes side by side: the trainer sends up to eight, so two rows."""
GALLERY_GAP = 4
"""Pixels between two mistakes side by side."""
GALLERY_CAPTION = 12
"""Pixels below each mistake, for its caption."""
TILE = 28
GAP = 1
FINISHED_WORDS = {"completed": "finished", "stopped": "stopped", "diverged": "diverged"}

METRIC_COLUMNS = ("step", "loss", "loss_smooth", "batch_accuracy", "accuracy_smooth", "sent_at")
EVALUATION_COLUMNS = ("step", "epoch", "accuracy", "loss", "sent_at")
CURVES = {
    "loss": METRIC_COLUMNS,
    "accuracy": EVALUATION_COLUMNS,
    "test_accuracy": EVALUATION_COLUMNS,
}
"""Streamed curves by source name: metrics, subset evaluations, per-epoch test evaluations."""
PIECES = ("header", "sample", "evaluation", "weights")
"""Precomputed, versioned pieces that sessions assign whole."""


class Columns:
    """Append-only columns that forget their oldest rows beyond ``limit``.

    Rows are numbered from the run's first (``total`` counts every row ever added), so a reader
    can ask for "everything after row n" even after old rows were dropped.
    """

    def __init__(self, names: tuple[str, ...], limit: int = ROWS_KEPT) -> None:
        self.data: dict[str, list[float]] = {name: [] for name in names}
        self.limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    @property
    def total(self) -> int:
        return self.dropped + len(self)

    def append(self, row: dict[str, float]) -> None:
        for name, values in self.data.items():
            values.append(row[name])
        if len(self) >= 2 * self.limit:  # drop in bulk: amortised O(1) per row
            excess = len(self) - self.limit
            for values in self.data.values():
                del values[:excess]
            self.dropped += excess

    def since(self, seen: int) -> dict[str, list[float]]:
        """Rows after the first ``seen`` (at most ``limit`` of them, the newest)."""
        start = max(seen - self.dropped, len(self) - self.limit, 0)
        return {name: values[start:] for name, values in self.data.items()}


@dataclass
class Piece:
    version: int = 0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cursor:
    """What one session has already been sent of one run: rows per curve, version per piece."""

    rows: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    version: int = -1


@dataclass
class Changes:
    """What a session must send to catch up: new curve rows and changed pieces."""

    rows: dict[str, dict[str, list[float]]]
    pieces: dict[str, dict[str, Any]]
    sent_at: float

    def __bool__(self) -> bool:
        return bool(self.rows or self.pieces)


class RunHistory:
    """One run as the viewer knows it. Only the hub thread calls :meth:`apply`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.started: RunStarted | None = None
        self.latest_metrics: TrainingMetrics | None = None
        self.run_status: RunStatus | None = None
        self.finished: RunFinished | None = None
        self.sample: SamplePrediction | None = None
        self.replayed = False
        self.played_back = False
        """Folded from a file by ``view --replay``: every status in it is the recorded run's."""
        self.curves = {name: Columns(names) for name, names in CURVES.items()}
        self.pieces = {name: Piece() for name in PIECES}
        self.version = 0
        self.messages = 0
        self.last_seq = -1
        self.last_sent_at = 0.0
        self.last_received_at = 0.0
        self._smooth_loss = self._smooth_accuracy = 0.0
        self._smoothed = 0
        self._overlay: tuple[int, dict[str, list[float]]] | None = None

    # -- folding messages (hub thread) ----------------------------------------------------------

    def apply(self, message: Envelope) -> None:
        """Fold one message in and refresh whatever it changes."""
        self.apply_many((message,))

    def apply_many(self, messages: Iterable[Envelope]) -> None:
        """Fold messages in order, building the header once at the end (a replay's jump)."""
        folded = False
        for message in messages:
            self._fold(message)
            folded = True
        if folded:
            self._put("header", {"html": self.header_html(), "status": self.status})

    def _fold(self, message: Envelope) -> None:
        self.messages += 1
        self.version += 1
        self.last_seq = max(self.last_seq, message.seq)
        self.last_sent_at = max(self.last_sent_at, message.sent_at)
        self.last_received_at = time.time()
        self.replayed = self.replayed or message.replayed
        match message:
            case RunStarted():
                self.started = message
            case TrainingMetrics():
                self._add_metrics(message)
            case Evaluation():
                self._add_evaluation(message)
            case SamplePrediction():
                self.sample = message
                self._put("sample", self._sample_piece(message))
            case FirstLayerWeights():
                self._put("weights", weights_piece(message))
            case RunStatus():
                self.run_status = message
            case RunFinished():
                self.finished = message

    def _put(self, name: str, data: dict[str, Any]) -> None:
        piece = self.pieces[name]
        piece.data = data
        piece.version += 1

    def _add_metrics(self, m: TrainingMetrics) -> None:
        self.latest_metrics = m
        if math.isfinite(m.loss):  # a diverged loss must not poison the average for good
            self._smoothed += 1
            self._smooth_loss = SMOOTHING * self._smooth_loss + (1 - SMOOTHING) * m.loss
            self._smooth_accuracy = (
                SMOOTHING * self._smooth_accuracy + (1 - SMOOTHING) * m.batch_accuracy
            )
        debias = 1 - SMOOTHING**self._smoothed if self._smoothed else 1.0  # as Adam does
        self.curves["loss"].append(
            {
                "step": m.step,
                "loss": m.loss,
                "loss_smooth": self._smooth_loss / debias if self._smoothed else math.nan,
                "batch_accuracy": m.batch_accuracy,
                "accuracy_smooth": self._smooth_accuracy / debias if self._smoothed else math.nan,
                "sent_at": m.sent_at,
            }
        )

    def _add_evaluation(self, e: Evaluation) -> None:
        if e.split == "validation":
            return
        curve = "accuracy" if e.split == "subset" else "test_accuracy"
        row = {"step": e.step, "epoch": e.epoch, "accuracy": e.accuracy, "loss": e.loss}
        self.curves[curve].append({**row, "sent_at": e.sent_at})
        if e.confusion:
            self._put("evaluation", evaluation_piece(e, self.class_names(len(e.confusion))))

    # -- what sessions read (under the hub's lock) -----------------------------------------------

    def changes(self, cursor: Cursor) -> Changes:
        """Everything ``cursor`` has not seen yet; advances ``cursor`` past it."""
        rows = {}
        for name, columns in self.curves.items():
            if columns.total != cursor.rows.get(name, 0):
                rows[name] = columns.since(cursor.rows.get(name, 0))
                cursor.rows[name] = columns.total
        pieces = {}
        for name, piece in self.pieces.items():
            if piece.version != cursor.versions.get(name, 0):
                pieces[name] = piece.data
                cursor.versions[name] = piece.version
        cursor.version = self.version
        return Changes(rows, pieces, self.last_sent_at)

    @property
    def metrics(self) -> dict[str, list[float]]:
        """The metrics columns (the ``loss`` curve): step, loss, smoothed values, sent_at."""
        return self.curves["loss"].data

    def overlay(self) -> dict[str, list[float]]:
        """This run's smoothed curves thinned to :data:`OVERLAY_POINTS`, to draw under the next."""
        metrics = self.curves["loss"]
        if self._overlay is None or self._overlay[0] != metrics.total:
            stride = max(1, math.ceil(len(metrics) / OVERLAY_POINTS))
            data = {
                "step": metrics.data["step"][::stride],
                "loss": metrics.data["loss_smooth"][::stride],
                "accuracy": metrics.data["accuracy_smooth"][::stride],
            }
            self._overlay = (metrics.total, data)
        return self._overlay[1]

    def class_names(self, count: int = 10) -> list[str]:
        if self.started:
            return list(self.started.dataset.class_names)
        return [str(i) for i in range(count)]

    @property
    def status(self) -> str:
        """One word: waiting, training, paused, finished, stopped, diverged or replay."""
        if self.finished:
            return FINISHED_WORDS[self.finished.status]
        if self.replayed:
            # A replay's own pause (a presenter's, announced live and so not marked replayed)
            # shows; a pause that is part of the recorded run does not: the replay plays on.
            status = self.run_status
            own_pause = (
                status is not None
                and status.state == "paused"
                and not (status.replayed or self.played_back)
            )
            return "paused" if own_pause else "replay"
        if self.run_status:
            return self.run_status.state
        return "training" if self.latest_metrics else "waiting"

    @property
    def step(self) -> int:
        steps = [self.started.start_step if self.started else 0]
        steps += [m.step for m in (self.latest_metrics, self.run_status, self.finished) if m]
        return max(steps)

    def samples_per_second(self) -> float | None:
        if self.status != "training" or not self.latest_metrics:
            return None
        return self.latest_metrics.samples_per_second

    def eta_seconds(self) -> float | None:
        """Seconds left at the current speed: steps left x batch size / samples per second."""
        if self.finished:
            return 0.0
        speed = self.samples_per_second()
        if not self.started or not speed:
            return None
        steps_left = max(0, self.started.total_steps - self.step)
        return steps_left * self.started.hyperparameters.batch_size / speed

    # -- precomputed pieces --------------------------------------------------------------------

    def _sample_piece(self, s: SamplePrediction) -> dict[str, Any]:
        names = self.class_names(len(s.probabilities))
        if len(names) != len(s.probabilities):
            names = [str(i) for i in range(len(s.probabilities))]
        predicted = s.predicted
        marks = [""] * len(names)
        marks[predicted] = "predicted"
        marks[s.label] = "true" if predicted != s.label else "true \N{CHECK MARK}"
        verdict = "\N{CHECK MARK}" if predicted == s.label else "\N{BALLOT X}"
        caption = f"#{s.index}: true {names[s.label]}, predicted {names[predicted]} {verdict}"
        return {
            "sample": {
                "caption": [caption],
                "image": [np.flipud(s.image)],
                "label": [names[s.label]],
                "predicted": [names[predicted]],
                "index": [s.index],
                "step": [s.step],
            },
            "probabilities": {
                "class_name": same_list(tuple(names)),
                "probability": list(s.probabilities),
                "kind": [
                    "true" if i == s.label else "predicted" if i == predicted else "other"
                    for i in range(len(names))
                ],
                "mark": marks,
            },
        }

    def header_html(self) -> str:
        """The run's part of the header (the session adds viewers and its own lag)."""
        status = self.status
        parts = [f'<span class="status {status}">{status}</span>']
        progress = ""
        if started := self.started:
            data, hp = started.dataset, started.hyperparameters
            name = html.escape(data.name)
            if data.synthetic:
                name = f'<span class="synthetic">SYNTHETIC</span> {name}'
            arch = "-".join(str(s) for s in started.architecture.layer_sizes)
            optimizer = f"{html.escape(hp.optimizer)} lr {hp.learning_rate:g}"
            if hp.momentum:
                optimizer += f" m {hp.momentum:g}"
            if hp.weight_decay:
                optimizer += f" wd {hp.weight_decay:g}"
            optimizer += f", {html.escape(hp.schedule)}, batch {hp.batch_size}"
            epoch, fraction = self._epoch_progress()
            parts += [
                f"<b>data</b> {name} ({data.train_size:,} train / {data.test_size:,} test)",
                f"<b>model</b> {arch} {started.architecture.activation}",
                f"<b>optimizer</b> {optimizer}",
                f"<b>step</b> {self.step:,} / {started.total_steps:,}",
            ]
            progress = (
                f'<div class="progress">epoch {epoch} / {hp.epochs}'
                f'<span class="bar"><span style="width:{fraction:.1%}"></span></span></div>'
            )
        else:
            parts.append(f"<b>step</b> {self.step:,}")
        if speed := self.samples_per_second():
            parts.append(f"{speed:,.0f} samples/s")
        eta = self.eta_seconds()
        if eta is not None and not self.finished:
            parts.append(f"ETA {format_duration(eta)}")
        if self.finished and self.finished.test_accuracy is not None:
            parts.append(f"<b>test accuracy</b> {self.finished.test_accuracy:.2%}")
        message = self.finished.message if self.finished else ""
        note = f'<div class="note">{html.escape(message)}</div>' if message else ""
        parts.append(f'<span class="run-id">run {html.escape(self.run_id)}</span>')
        return " &middot; ".join(parts) + progress + note

    def _epoch_progress(self) -> tuple[int, float]:
        """The epoch under way (from 1) and the fraction of it done."""
        assert self.started is not None
        per_epoch = self.started.steps_per_epoch
        epochs = self.started.hyperparameters.epochs
        done = self.step / per_epoch
        if self.finished or done >= epochs:
            return min(epochs, max(1, math.ceil(done))), 1.0
        return int(done) + 1, done - int(done)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


@functools.lru_cache(maxsize=64)
def same_list(values: tuple[Any, ...]) -> list[Any]:
    """One list for equal contents, so sessions can tell an unchanged column by identity.

    Shared by every piece that has these contents: never mutate what this returns.
    """
    return list(values)


def evaluation_piece(e: Evaluation, names: list[str]) -> dict[str, Any]:
    """Confusion (row-normalised rate + counts), per-class bars and the mistakes gallery."""
    counts = np.asarray(e.confusion, dtype=np.int64)
    k = len(counts)
    if len(names) != k:
        names = [str(i) for i in range(k)]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    true_index, predicted_index = np.divmod(np.arange(k * k), k)
    per_class = [math.nan if a is None else a for a in e.per_class_accuracy] or [math.nan] * k
    n = len(e.misclassified_images)
    row, col = np.divmod(np.arange(n), GALLERY_COLUMNS)
    return {
        "confusion": {
            "true": same_list(tuple(names[i] for i in true_index)),
            "predicted": same_list(tuple(names[j] for j in predicted_index)),
            "rate": rates.ravel().astype(np.float32),
            "count": counts.ravel().astype(np.int32),
        },
        "per_class": {"class_name": same_list(tuple(names)), "accuracy": per_class},
        "misclassified": {
            "x": (col * (TILE + GALLERY_GAP)).tolist(),
            "y": (-row * (TILE + GALLERY_CAPTION)).tolist(),
            "label": [
                f"{names[t]} \N{RIGHTWARDS ARROW} {names[p]}"
                for t, p in zip(e.misclassified_label, e.misclassified_predicted, strict=True)
            ],
            "index": list(e.misclassified_index),
        },
        "misclassified_images": gallery_mosaic(e.misclassified_images),
    }


def tile_mosaic(
    tiles: Sequence[np.ndarray] | np.ndarray, columns: int, across: int, down: int, below: int = 0
) -> np.ndarray:
    """28x28 tiles in rows of ``columns``, top row first, as one picture (not yet flipped).

    ``across`` and ``down`` pixels separate neighbouring tiles, ``below`` pixels follow the
    last row. Tile pixels are 1..255 (a 0 in a tile becomes 1); 0 marks a gap, which the
    panels' colour mappers draw transparent, so the page shows between tiles.
    """
    rows = max(1, math.ceil(len(tiles) / columns))
    columns = max(1, min(len(tiles), columns))
    step_x, step_y = TILE + across, TILE + down
    mosaic = np.zeros((rows * step_y - down + below, columns * step_x - across), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        mosaic[r * step_y : r * step_y + TILE, c * step_x : c * step_x + TILE] = np.maximum(tile, 1)
    return mosaic


def gallery_mosaic(images: Sequence[np.ndarray] | np.ndarray) -> dict[str, list[Any]]:
    """The mistakes' images as one picture: one binary buffer a message instead of one each.

    Tile ``i`` sits where the ``misclassified`` row ``i`` says, its caption in the gap below
    it (the last row's gap too, so the picture's bounds hold the captions).
    """
    if len(images) == 0:
        return {"image": [], "x": [], "y": [], "dw": [], "dh": []}
    mosaic = tile_mosaic(
        images, GALLERY_COLUMNS, GALLERY_GAP, GALLERY_CAPTION, below=GALLERY_CAPTION
    )
    height, width = mosaic.shape
    return {
        "image": [np.flipud(mosaic)],
        "x": [0],
        "y": [TILE - height],  # the top row's tile starts at y = 0, as its misclassified row says
        "dw": [width],
        "dh": [height],
    }


def weights_piece(w: FirstLayerWeights) -> dict[str, Any]:
    """The weight tiles as one near-square mosaic with 1px gaps (128 is a zero weight)."""
    columns = max(1, math.ceil(math.sqrt(len(w.tiles))))
    mosaic = tile_mosaic(w.tiles, columns, GAP, GAP)
    height, width = mosaic.shape
    return {
        "weights": {
            "image": [np.flipud(mosaic)],
            "dw": [width],
            "dh": [height],
            "step": [w.step],
        },
    }
