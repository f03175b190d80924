"""What a browser may send as its drawing, and how often: the pad's only way in.

The pad's ``drawing`` source is the one place where a browser sends data to this server:
Bokeh's ``FreehandDrawTool`` sends the source's whole ``data`` (``xs``, ``ys``: a list of
strokes, each a list of coordinates) when a stroke ends. That input is untrusted, so it is
bounded twice: :func:`acceptable` looks at the serialized change before Bokeh applies it
(size and shape only, cheaply), and :func:`strokes` reads the applied data strictly. A
session may have its drawing read at most :data:`READS_PER_SECOND` times a second
(:class:`Allowance`); whatever is refused or late is counted in :data:`tally`, never raised.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from viewer.drawing.raster import Stroke
from viewer.server.stats import stats

MAX_STROKES = 24
"""Strokes a drawing keeps (the tool drops the oldest beyond it): a digit takes one to four."""
MAX_POINTS = 4_000
"""Points in all strokes together: a minute of drawing at 60 points a second is 3,600."""
MAX_NUMBERS = 2 * MAX_POINTS + 64
"""Numbers a serialized drawing change may hold at most (its coordinates and a little)."""
MAX_NODES = MAX_NUMBERS + 4 * MAX_STROKES + 64
"""Values of any kind (numbers, lists, keys, strings) a serialized drawing may hold: each
costs memory once Bokeh applies it, whatever it is."""
MAX_TEXT = 16
"""The longest string a drawing holds (a key: ``xs``, ``ys``, ``type``, ``entries``)."""
LIMIT = 0.05
"""How far past the pad's unit square a point may lie (a stroke that leaves the pad)."""
READS_PER_SECOND = 10.0
BURST = 5.0

tally: Counter[str] = stats.drawings
"""Drawings ``read``, and those dropped, by why (the viewer's ``/metrics`` shows them)."""


class DrawingRefused(ValueError):
    """A drawing that is not strokes within the bounds; its message says why."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(detail)
        self.why = why


def acceptable(value: Any) -> str | None:
    """Why a drawing change, as serialized, is refused before Bokeh applies it (too many
    numbers, too deep, or something other than lists, maps and numbers), or None."""
    numbers = nodes = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"a drawing of more than {MAX_POINTS:,} points"
        if depth > 8:
            return "a drawing nested too deep"
        if isinstance(item, str):
            if len(item) > MAX_TEXT:
                return "a drawing holding text"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            numbers += 1
            if numbers > MAX_NUMBERS:
                return f"a drawing of more than {MAX_POINTS:,} points"
        elif isinstance(item, list):
            if len(item) > MAX_NUMBERS:
                return f"a drawing of more than {MAX_POINTS:,} points"
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            if "id" in item or item.get("type") not in (None, "map"):  # a model, or a reference
                return f"a drawing holding {str(item.get('type', 'a reference'))[:20]!r}"
            if len(item) > 4:
                return "a drawing with more than its columns"
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        else:
            return "a drawing holding something other than numbers"
    return None


def strokes(data: dict[str, Any]) -> list[Stroke]:
    """The strokes of a ``drawing`` source's data; raises :class:`DrawingRefused`."""
    xs, ys = data.get("xs"), data.get("ys")
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise DrawingRefused("malformed", "xs and ys must be lists of strokes of the same length")
    if len(xs) > MAX_STROKES:
        raise DrawingRefused("size", f"{len(xs)} strokes, more than {MAX_STROKES}")
    found: list[Stroke] = []
    points = 0
    for stroke_x, stroke_y in zip(xs, ys, strict=True):
        stroke = (_coordinates(stroke_x), _coordinates(stroke_y))
        if len(stroke[0]) != len(stroke[1]):
            raise DrawingRefused("malformed", "a stroke's xs and ys differ in length")
        points += len(stroke[0])
        if points > MAX_POINTS:
            raise DrawingRefused("size", f"more than {MAX_POINTS:,} points")
        found.append(stroke)
    return found


def _coordinates(values: Any) -> list[float]:
    if hasattr(values, "tolist"):  # Bokeh may hand a column back as a NumPy array
        values = values.tolist()
    if not isinstance(values, list):
        raise DrawingRefused("malformed", "a stroke is not a list of coordinates")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise DrawingRefused("malformed", "a coordinate is not a number")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer of hundreds of digits
            finite = False
        if not finite:
            raise DrawingRefused("malformed", "a coordinate is not a finite number")
        if not -LIMIT <= v <= 1 + LIMIT:
            raise DrawingRefused("malformed", f"a coordinate {v:g} is off the pad")
    return [float(v) for v in values]


class Allowance:
    """A token bucket: how many drawing reads a session has left (:data:`READS_PER_SECOND`,
    up to :data:`BURST` at once)."""

    def __init__(self, rate: float = READS_PER_SECOND, burst: float = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
