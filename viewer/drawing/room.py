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
import weakref
from collections import deque

import numpy as np

from protocol import ModelWeights
from protocol.network import probabilities
from viewer.drawing.pad import Pad

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
        if self.scores["step"] and self.scores["step"][-1] == model.step:
            for column in self.scores.values():
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
