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
from bokeh.model.util import collect_models
from bokeh.models import ColumnDataSource

PREFIX = "mnist-live-"
PLACE = "ml"
"""Ids by place (:func:`settle`); Bokeh's own are ``p`` and a number."""
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


def settle(*roots: Model) -> None:
    """Give every model under ``roots`` that has no shared id one made from its place.

    Documents built by the same code then have the same ids throughout, so they serialize to
    the same JSON: a viewer serializes the page once for all the sessions that open it in the
    same frame (:mod:`viewer.broadcast`). Pass the document's root before it joins the
    document (which indexes its models by id) and the document's ``config`` (which it does
    not index). Models added later (a log-scale figure) keep Bokeh's own ids.
    """
    for place, model in enumerate(collect_models(*roots)):
        if not is_shared(model):
            model._id = ID(f"{PLACE}{place}")  # type: ignore[attr-defined]
