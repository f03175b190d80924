"""Every pad of this viewer process, the room's labelled digits, and the model they read with.

A pad reads its drawing when a stroke ends; when the trainer publishes new weights, every pad
with a drawing reads it again, so the room watches the answers change as the network learns.
The process's frame tick (:mod:`viewer.broadcast`) tells the room which model is the latest;
each pad's reading then runs in its own session, under its document's lock.

The room's digits are the drawings people labelled ("I meant a 7"): a test set the room made
itself, kept in this process's memory only (anonymous, at most :data:`DIGITS_KEPT`, never sent
to the trainer or recorded). Each new model is scored on them, and the score over training is
a curve every page draws beside the test set's (:meth:`Room.score`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
import weakref
from collections import deque
from pathlib import Path

import numpy as np

from protocol import ModelWeights
from protocol.network import probabilities
from viewer.drawing.pad import Pad

log = logging.getLogger("viewer.drawing")

SAVE_EVERY = 2.0
"""Seconds between two writes of the kept digits (``--keep-drawings``), at most."""
DIGITS_KEPT = 1_000
"""Labelled drawings the room keeps (the oldest go first): a forward pass of them all takes
~20 ms with the default model, once per new model."""


class Digit:
    """One labelled drawing: its 28x28 image and what its author meant (changeable)."""

    __slots__ = ("image", "label")

    def __init__(self, image: np.ndarray, label: int) -> None:
        self.image, self.label = image, label


class Room:
    def __init__(self) -> None:
        self.pads: weakref.WeakSet[Pad] = weakref.WeakSet()
        self.model: ModelWeights | None = None
        self.digits: deque[Digit] = deque(maxlen=DIGITS_KEPT)
        self.scores: dict[str, list[float]] = {"step": [], "accuracy": []}
        """The room's digits read right, per model of the run: the curve the pages draw."""
        self.correct = 0
        self.run_id: str | None = None
        self.version = 0
        """Changes whenever the score does (pages redraw it when it does)."""
        self._stale = False
        self.kept_in: Path | None = None
        """Where the labelled digits are written (``--keep-drawings``); None: memory only."""
        self._unsaved = False
        self._saved_at = 0.0

    def keep_in(self, folder: str | Path, name: str = "room-digits.npz") -> None:
        """Write the labelled digits to ``folder/name`` as they come (at most every
        :data:`SAVE_EVERY` seconds): uint8 ``images`` [n, 28, 28] and ``labels`` [n]."""
        self.kept_in = Path(folder) / name
        log.info("the room's labelled digits are kept in %s", self.kept_in)

    def join(self, pad: Pad) -> None:
        self.pads.add(pad)
        pad.room = self

    def leave(self, pad: Pad) -> None:
        self.pads.discard(pad)

    def label(
        self, image: np.ndarray, label: int, digit: Digit | None = None, redrawn: bool = False
    ) -> Digit:
        """Keep ``image`` as a digit meant to be ``label`` (or relabel ``digit``, or give it the
        ``redrawn`` image); the score is brought up to date at the next frame."""
        if digit is not None and any(d is digit for d in self.digits):
            digit.label = label
            if redrawn:
                digit.image = image
        else:
            digit = Digit(image, label)
            self.digits.append(digit)
        self._stale = True
        self._unsaved = self.kept_in is not None
        self.version += 1
        return digit

    def latest(self, model: ModelWeights | None) -> None:
        """``model`` is the latest: pads with a drawing read it again with it, if it is new,
        and the room's digits are scored with it."""
        if model is not None and model is not self.model:
            self.model = model
            self._stale = True
            for pad in list(self.pads):
                if pad.drawn and pad.doc is not None:
                    try:
                        pad.doc.add_next_tick_callback(functools.partial(pad.refresh, model))
                    except Exception:  # a session closing as we go: it reads nothing more
                        self.leave(pad)
        if self._stale and self.model is not None:
            self.score(self.model)
        if self._unsaved and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the labelled digits whole, to a new file moved into place (a reader never sees
        half of one); a failure is one log line, and the digits stay in memory."""
        if self.kept_in is None:
            return
        self._unsaved, self._saved_at = False, time.monotonic()
        images = np.stack([d.image for d in self.digits]) if self.digits else np.zeros((0, 28, 28))
        labels = np.array([d.label for d in self.digits], dtype=np.uint8)
        partial = self.kept_in.with_name(f".{self.kept_in.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as out:
                np.savez_compressed(out, images=images.astype(np.uint8), labels=labels)
            os.replace(partial, self.kept_in)
        except OSError as exc:
            log.warning("could not keep the room's digits in %s: %s", self.kept_in, exc)
            return
        log.info("kept %d labelled digits in %s", len(labels), self.kept_in)

    def score(self, model: ModelWeights) -> None:
        """How many of the room's digits ``model`` reads right: a point on the run's curve (a
        new run starts a new curve; a later score at the same step replaces the point)."""
        self._stale = False
        if not self.digits:
            return
        if model.run_id != self.run_id:
            self.run_id = model.run_id
            self.scores = {"step": [], "accuracy": []}
        images = np.stack([d.image for d in self.digits])
        labels = np.array([d.label for d in self.digits])
        self.correct = int((probabilities(model, images).argmax(axis=1) == labels).sum())
        while self.scores["step"] and self.scores["step"][-1] >= model.step:
            for column in self.scores.values():  # the same step again, or a replay sent back
                column.pop()
        self.scores["step"].append(model.step)
        self.scores["accuracy"].append(round(self.correct / len(images), 4))
        self.version += 1

    def words(self) -> str:
        """What the pages say of the room's digits."""
        if not self.digits:
            return "Say which digit you meant, and it joins the room's own test set."
        if self.model is None or not self.scores["step"]:
            return f"The room has labelled {len(self.digits)} digits; no model has read them yet."
        return (
            f"The model as of step {self.model.step:,} reads {self.correct} of the room's "
            f"{len(self.digits)} digits correctly."
        )


room = Room()
"""This process's room."""
