"""Curve columns, and the bookkeeping of what one session has been sent of a run.

Curves are kept as columns (a list per field) because that is the shape a Bokeh
``ColumnDataSource`` streams; a :class:`Cursor` remembers how many rows of each curve and which
version of each part a session has, so :class:`Changes` carries only what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROWS_KEPT = 50_000
"""Curve rows a run keeps (and a session shows): ~40 minutes of metrics at 20 a second."""


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
class Cursor:
    """What one session has already been sent of one run: rows per curve, version per part."""

    rows: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    version: int = -1


@dataclass
class Changes:
    """What a session must send to catch up: new curve rows, and the parts of the run that
    changed (the panels that draw them render them, :meth:`RunHistory.rendered`)."""

    rows: dict[str, dict[str, list[float]]]
    parts: frozenset[str]
    sent_at: float

    def __bool__(self) -> bool:
        return bool(self.rows or self.parts)
