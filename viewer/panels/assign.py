"""Assigning a piece to a source: only the columns that changed go to the browser."""

from __future__ import annotations

import functools
from typing import Any

from bokeh.models import ColumnDataSource


@functools.lru_cache(maxsize=64)
def same_list(values: tuple[Any, ...]) -> list[Any]:
    """One list for equal contents, so :func:`refresh` can tell an unchanged column by identity.

    Shared by every piece that has these contents: never mutate what this returns.
    """
    return list(values)


def refresh(source: ColumnDataSource, new: dict[str, Any]) -> None:
    """Give ``source`` the columns of ``new``, sending only those that changed.

    Columns the panels' renderers reuse from one piece to the next (class names, the confusion
    matrix's factors: :func:`same_list`) are the same objects, so ``is`` tells an unchanged
    column for free, and an update of the others skips Bokeh's validation and comparison of the
    whole value. A change of columns or of length replaces the data whole,
    since a partial update must leave every column the same length.
    """
    old = source.data
    if old.keys() != new.keys() or any(len(old[k]) != len(v) for k, v in new.items()):
        source.data = new
        return
    changed = {k: v for k, v in new.items() if old[k] is not v}
    if changed:
        source.data.update(changed)
