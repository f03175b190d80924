"""Models that every session's document builds with the same id.

A frame changes only a few models of the dashboard: the named sources, the header's text, the
factor ranges of the class axes, the titles that say a panel is still empty and the legend
entries that show with their data. Built with one id in every session
(:func:`shared`), their changes serialize to the same bytes for every session, so a viewer
process encodes a frame once and writes it to every websocket (:mod:`viewer.broadcast`).
Every other model keeps Bokeh's own unique id.

Bokeh accepts an id only through ``Model.__new__`` with no property (its deserializer builds
models that way); the properties are then given to ``__init__`` as usual.

Every other model of an audience page gets the same id in every session too, so that whole
pages serialize alike (:func:`same_ids`): Bokeh numbers models from one counter, which is set
to the same place before a page is built and put back after. Where Bokeh makes random ids
instead (``BOKEH_SIMPLE_IDS=no``), the page's models are renumbered by their place in it
(:func:`settle`), which costs a walk over the page (as long as building it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

from bokeh.core.types import ID
from bokeh.model import Model
from bokeh.model.util import collect_models
from bokeh.models import ColumnDataSource
from bokeh.settings import settings
from bokeh.util import serialization

PREFIX = "mnist-live-"
PLACE = "ml"
"""Ids by place (:func:`settle`); Bokeh's own are ``p`` and a number."""
PAGE_IDS_FROM = 1_000_000_000
"""Where Bokeh's id counter stands while an audience page is built: far above the ids it
makes otherwise (it counts from 1,000), so a later model never takes one of them."""
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
    not index). Models added later keep Bokeh's own ids.
    """
    for place, model in enumerate(collect_models(*roots)):
        if not is_shared(model):
            model._id = ID(f"{PLACE}{place}")  # type: ignore[attr-defined]


@contextlib.contextmanager
def same_ids(enabled: bool = True) -> Iterator[bool]:
    """Models made inside get the same ids each time the same code runs inside (``enabled``);
    yields whether they do (with random ids they do not: :func:`settle` the page afterwards).

    Runs on the server's event loop, where every session's page is built, one at a time; the
    counter is Bokeh's own (``bokeh.util.serialization._simple_id``, pinned with Bokeh).
    """
    if not enabled or not settings.simple_ids():
        yield False
        return
    with serialization._simple_id_lock:
        saved = serialization._simple_id
        serialization._simple_id = PAGE_IDS_FROM
    try:
        yield True
    finally:
        with serialization._simple_id_lock:
            serialization._simple_id = saved
