"""Pictures made of 28x28 tiles, and the bare figure that shows one.

The digit, the weight mosaic and the mistakes gallery all draw uint8 images with a
:class:`~bokeh.models.Image` glyph in a figure without axes or tools; tiles are laid out into
one picture so that a frame carries one binary buffer, not one per tile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.models.annotations import Title
from bokeh.plotting import figure

from viewer.panels.ids import shared

TILE = 28


def image_figure(title: str | Title, size: int, **options: Any) -> Any:
    """A ``size`` x ``size`` figure for an image: no axes, no grid, no tools. Stretched to a
    page's cell, the image keeps its aspect and the rest of the cell stays blank."""
    fig = figure(
        title=title,
        width=size,
        height=size,
        tools="",
        toolbar_location=None,
        x_axis_location=None,
        y_axis_location=None,
        match_aspect=True,
        **options,
    )
    fig.grid.visible = False
    fig.outline_line_color = None
    return fig


def shared_title(key: str, text: str) -> Title:
    """A figure's title that frames may change (:func:`say_if_empty`): its id is the same in
    every session, so the change is encoded once for all (:mod:`viewer.panels.ids`)."""
    return shared(Title, f"title-{key}", text=text)


def say_if_empty(fig: Any, title: str, empty: bool, words: str) -> None:
    """``fig``'s title, with ``words`` on a line below it while it has nothing to draw ("no
    sample yet"): a blank box looks broken exactly when a room first opens the page. A line of
    its own, because a phone's column has no room for both on one."""
    text = f"{title}\n{words}" if empty else title
    if fig.title.text != text:
        fig.title.text = text


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
