"""Strokes on the pad made into a 28x28 digit the way MNIST's digits were made.

MNIST's authors size-normalised each digit to fit a 20x20 box keeping its aspect ratio, which
anti-aliases it into grey levels, then centred it in 28x28 by its centre of mass. A network
trained on those images reads a digit drawn any other way (thin, off-centre, filling the
square) much worse, so the pad's strokes go through the same steps: drawn thick with round
ends on a fine canvas (Pillow, anti-aliased by the downscale), the ink's bounding box fitted
into 20x20, and the result shifted so its centre of mass sits at the centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

SIZE = 28
BOX = 20
FINE = 200
"""Pixels of the fine canvas's longer side: ten per pixel of the 20x20 box."""
PEN = 0.12
"""The pen's width as a fraction of the fine canvas's longer side: MNIST strokes are about 2.5
pixels of the 20-pixel box."""

Stroke = tuple[Sequence[float], Sequence[float]]


def rasterize(strokes: Sequence[Stroke]) -> np.ndarray | None:
    """The strokes (pad coordinates, y up) as a uint8 28x28 image, ink 255 on 0; None when
    there is no point to draw."""
    points = [np.column_stack([xs, ys]).astype(np.float64) for xs, ys in strokes if len(xs)]
    if not points:
        return None
    every = np.concatenate(points)
    low, high = every.min(axis=0), every.max(axis=0)
    extent = float(max(high - low))
    pen = PEN * FINE
    scale = (FINE - pen) / extent if extent > 1e-9 else 1.0
    width = max(1, round((high[0] - low[0]) * scale + pen))
    height = max(1, round((high[1] - low[1]) * scale + pen))
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in points:
        at = [
            ((x - low[0]) * scale + pen / 2, height - ((y - low[1]) * scale + pen / 2))
            for x, y in stroke
        ]
        if len(at) > 1:
            draw.line(at, fill=255, width=round(pen), joint="curve")
        for x, y in (at[0], at[-1]) if len(at) > 1 else at:  # round ends (and a lone dot)
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    fitted = BOX / max(width, height)
    small = canvas.resize(
        (max(1, round(width * fitted)), max(1, round(height * fitted))), Image.Resampling.LANCZOS
    )
    return _centred(np.asarray(small, dtype=np.float64))


def _centred(ink: np.ndarray) -> np.ndarray:
    """``ink`` placed in 28x28 so that its centre of mass is the image's centre (as near as
    whole pixels go, and never past the edge)."""
    rows, cols = np.indices(ink.shape)
    total = ink.sum()
    if total <= 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    centre_row, centre_col = (rows * ink).sum() / total, (cols * ink).sum() / total
    top = int(np.clip(round((SIZE - 1) / 2 - centre_row), 0, SIZE - ink.shape[0]))
    left = int(np.clip(round((SIZE - 1) / 2 - centre_col), 0, SIZE - ink.shape[1]))
    image = np.zeros((SIZE, SIZE), np.float64)
    image[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
