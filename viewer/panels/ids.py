"""Models that every session's document builds with the same id.

A frame changes only a few models of the dashboard: the named sources, the header's text and
the factor ranges of the class axes. Built with one id in every session
(:func:`shared`), their changes serialize to the same bytes for every session, so a viewer
process encodes a frame once and writes it to every websocket (:mod:`viewer.broadcast`).
Every other model keeps Bokeh's own unique id.

Bokeh accepts an id only through ``Model.__new__`` with no property (its deserializer builds
models that way); the properties are then given to ``__init__`` as usual.
"""

from __future__ import annotations

from typing import Any, TypeVar

from bokeh.core.types import ID
from bokeh.model import Model
from bokeh.models import ColumnDataSource

PREFIX = "mnist-live-"
M = TypeVar("M", bound=Model)


def shared(cls: type[M], key: str, **properties: Any) -> M:
    """A ``cls`` with the id ``PREFIX + key`` in every document, initialised with ``properties``."""
    model = cls.__new__(cls, id=ID(PREFIX + key))
    model.__init__(**properties)  # type: ignore[misc]
    return model


def is_shared(model: Model) -> bool:
    return model.id.startswith(PREFIX)


def named_source(name: str, columns: tuple[str, ...]) -> ColumnDataSource:
    """An empty source called ``name`` with ``columns``, its id shared by every session."""
    return shared(ColumnDataSource, name, data={c: [] for c in columns}, name=name)
