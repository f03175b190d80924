"""What the first layer's units look for: their weights as a mosaic of 28x28 tiles.

The hub builds the mosaic once per weights message (:func:`viewer.history.weights_piece`);
the ``weights`` source holds that one image. A diverging colour map shows sign (blue
negative, red positive, white zero); the gaps between tiles are transparent.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, Image, LinearColorMapper
from bokeh.palettes import RdBu11, interp_palette
from bokeh.plotting import figure

from viewer.panels.looks import Look

WEIGHT_COLUMNS = ("image", "dw", "dh", "step")
DIVERGING = interp_palette(RdBu11[::-1], 255)


class Weights:
    def __init__(self, look: Look) -> None:
        self.source = ColumnDataSource({c: [] for c in WEIGHT_COLUMNS}, name="weights")
        size = look.plot_height
        self.figure = figure(
            title="First-layer weights",
            width=size,
            height=size,
            tools="",
            toolbar_location=None,
            x_axis_location=None,
            y_axis_location=None,
            match_aspect=True,
        )
        mapper = LinearColorMapper(
            palette=DIVERGING, low=0.5, high=255, low_color="rgba(0, 0, 0, 0)"
        )
        glyph = Image(image="image", x=0, y=0, dw="dw", dh="dh", color_mapper=mapper)
        self.figure.add_glyph(self.source, glyph)

    def reset(self) -> None:
        self.source.data = {c: [] for c in WEIGHT_COLUMNS}

    def apply(self, piece: dict[str, Any]) -> None:
        self.source.data = piece["weights"]
