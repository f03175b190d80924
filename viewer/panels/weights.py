"""What the first layer's units look for: their weights as a mosaic of 28x28 tiles.

:func:`render` lays the latest weights message's tiles out as one near-square mosaic with 1px
gaps, once per message for every session; the ``weights`` wire source carries it as a key and
residuals within a byte budget (:mod:`viewer.panels.pictures`). A diverging colour map shows
sign (blue negative, red positive, white zero, 128 in the tiles); the gaps between tiles are
transparent.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from bokeh.models import Image, LinearColorMapper
from bokeh.palettes import RdBu11, interp_palette

from viewer.panels.images import image_figure, say_if_empty, shared_title, tile_mosaic
from viewer.panels.looks import Look
from viewer.panels.pictures import Picture, PictureStream, empty
from viewer.runs.state import RunHistory

PART = "weights"
TITLE = "First-layer weights"
PLACEMENT = ("dw", "dh")
DIVERGING = interp_palette(RdBu11[::-1], 255)
GAP = 1
RATE = 4_000
"""Bytes a second the mosaic may take on the wire: under a third of a laptop's budget (15 kB/s),
a thirteenth of sending it raw. It is exact whenever its changes fit; while the weights move
fast (the first seconds of a run) pixels lag the truth by 2.6 levels of 255 on average, 11 at
most (measured on real MNIST, :mod:`viewer.panels.pictures`)."""


def render(run: RunHistory) -> dict[str, Any]:
    """The latest weight tiles as the ``weights`` source's one mosaic."""
    w = run.weights
    if w is None:
        return {"weights": empty((*PLACEMENT, "step"))}
    columns = max(1, math.ceil(math.sqrt(len(w.tiles))))
    mosaic = tile_mosaic(w.tiles, columns, GAP, GAP)
    height, width = mosaic.shape
    stream = run.pictures.setdefault(PART, PictureStream(rate=RATE))
    at = time.monotonic()  # the budget is the browsers' real time, also in a fast replay
    rows = stream.update(np.flipud(mosaic), at, dw=width, dh=height, step=w.step)
    return {"weights": rows}


class Weights:
    def __init__(self, look: Look) -> None:
        self.picture = Picture("weights", PLACEMENT, labels=("step",))
        self.figure = image_figure(shared_title("weights", f"{TITLE}\nnone yet"), look.plot_height)
        mapper = LinearColorMapper(
            palette=DIVERGING, low=0.5, high=255, low_color="rgba(0, 0, 0, 0)"
        )
        glyph = Image(image="image", x=0, y=0, dw="dw", dh="dh", color_mapper=mapper)
        self.figure.add_glyph(self.picture.pixels, glyph)
        self.picture.drawn_in(self.figure)

    def reset(self, run: RunHistory | None) -> None:
        self.picture.reset()
        pending = run.pictures_pending() if run is not None else None
        say_if_empty(self.figure, TITLE, True, pending or "none yet")

    def apply(self, piece: dict[str, Any]) -> None:
        self.picture.show(piece["weights"])
        if piece["weights"]["row"]:  # a frame may bring no row: the picture stays as it was
            say_if_empty(self.figure, TITLE, False, "none yet")
