"""A curve's history thinned to what a plot can show: M4, per pixel column.

A late joiner at minute 30 of a run would otherwise be sent every metrics row (~36,000), most of
which land on the same pixel column of a plot a few hundred pixels wide. M4 (Jugel et al.,
"M4: A Visualization-Oriented Time Series Data Aggregation", VLDB 2014) keeps, for each pixel
column, the first and last row and the rows holding each drawn value's minimum and maximum: a
line drawn through them lights exactly the pixels the full series would. A minimum or maximum
within one pixel row of the column's first and last values lights no other pixel, so it is
left out (a smoothed curve then costs two rows a column, a noisy one four). Written here because
it is a dozen lines of NumPy and no maintained library does it on plain arrays; the hub keeps
every row (export and the CSV are whole).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

PIXEL_COLUMNS = 800
"""Buckets across the x range: a curves plot's width in pixels on a 1080p screen."""
PIXEL_ROWS = 400
"""Pixel rows over a series' range: at least a curves plot's height (390 px with ``--large``),
so what is left out is invisible."""


def m4_rows(
    x: np.ndarray, ys: Sequence[np.ndarray], columns: int = PIXEL_COLUMNS, rows: int = PIXEL_ROWS
) -> np.ndarray:
    """Indices (sorted) of the rows M4 keeps: per bucket of ``x``, first, last, and each ``y``'s
    argmin and argmax where they stand out by more than one of ``rows`` pixel rows from the
    bucket's first and last values. ``x`` must be non-decreasing; NaNs are never extremes."""
    n = len(x)
    if n <= 4 * columns or n == 0:
        return np.arange(n)
    span = float(x[-1] - x[0]) or 1.0
    bucket = np.minimum(((x - x[0]) * (columns / span)).astype(np.int64), columns - 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n] - 1
    keep = [starts, ends]
    for y in ys:
        values = np.asarray(y, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            continue
        pixel = (values[finite].max() - values[finite].min()) / rows
        low = np.where(np.isnan(values), np.inf, values)
        high = np.where(np.isnan(values), -np.inf, values)
        ends_low = np.fmin(values[starts], values[ends])
        ends_high = np.fmax(values[starts], values[ends])
        lowest = _arg_per_bucket(low, starts, np.minimum)
        highest = _arg_per_bucket(high, starts, np.maximum)
        keep.append(lowest[~(low[lowest] >= ends_low - pixel)])
        keep.append(highest[~(high[highest] <= ends_high + pixel)])
    return np.unique(np.concatenate(keep))


def _arg_per_bucket(values: np.ndarray, starts: np.ndarray, best: np.ufunc) -> np.ndarray:
    """For each bucket (``starts`` of contiguous runs), the index of its ``best`` value."""
    extreme = best.reduceat(values, starts)
    bucket_of_row = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(values)]))
    hits = np.flatnonzero(values == extreme[bucket_of_row])
    buckets, first_hit = np.unique(bucket_of_row[hits], return_index=True)
    found = np.full(len(starts), -1)
    found[buckets] = hits[first_hit]
    return np.where(found >= 0, found, starts)  # an all-NaN bucket: its first row


def decimated(
    columns: Mapping[str, Sequence[float]],
    x: str,
    drawn: Sequence[str],
    dtypes: Mapping[str, type],
    pixel_columns: int = PIXEL_COLUMNS,
) -> dict[str, np.ndarray]:
    """``columns`` thinned by M4 over the ``drawn`` columns, each as an array of its dtype."""
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    rows = m4_rows(arrays[x], [arrays[name] for name in drawn], pixel_columns)
    return {name: values[rows].astype(dtypes[name]) for name, values in arrays.items()}
