"""Every pad of this viewer process, and the model they read with.

A pad reads its drawing when a stroke ends; when the trainer publishes new weights, every pad
with a drawing reads it again, so the room watches the answers change as the network learns.
The process's frame tick (:mod:`viewer.broadcast`) tells the room which model is the latest;
each pad's reading then runs in its own session, under its document's lock.
"""

from __future__ import annotations

import functools
import weakref

from protocol import ModelWeights
from viewer.drawing.pad import Pad


class Room:
    def __init__(self) -> None:
        self.pads: weakref.WeakSet[Pad] = weakref.WeakSet()
        self.model: ModelWeights | None = None

    def join(self, pad: Pad) -> None:
        self.pads.add(pad)

    def leave(self, pad: Pad) -> None:
        self.pads.discard(pad)

    def latest(self, model: ModelWeights | None) -> None:
        """``model`` is the latest: pads with a drawing read it again with it, if it is new."""
        if model is None or model is self.model:
            return
        self.model = model
        for pad in list(self.pads):
            if pad.drawn and pad.doc is not None:
                pad.doc.add_next_tick_callback(functools.partial(pad.refresh, model.step))


room = Room()
"""This process's room."""
