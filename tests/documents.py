"""Helpers for tests that look at a dashboard's document: its sources, header and buttons."""

from __future__ import annotations

import re
import sys

from bokeh.client import ClientSession
from bokeh.document import Document

SOURCES = (
    "loss",
    "accuracy",
    "test_accuracy",
    "sample",
    "probabilities",
    "confusion",
    "per_class",
    "weights",
    "misclassified",
    "misclassified_images",
)


def rows(doc: Document, name: str) -> int:
    source = doc.get_model_by_name(name)
    assert source is not None, f"no source named {name!r}"
    return len(next(iter(source.data.values())))  # type: ignore[attr-defined]


def header(doc: Document) -> str:
    div = doc.get_model_by_name("header")
    assert div is not None, "no Div named 'header'"
    return re.sub(r"<[^>]*>", " ", div.text)  # type: ignore[attr-defined]


def receive(sessions: list[ClientSession], seconds: float) -> None:
    """Let every session take in what the server pushes for ``seconds``.

    Bokeh 3's client has no public way to do this (``loop_until_closed`` is gone, and
    ``force_roundtrip`` drops every patch that arrives while it waits for its reply), so this
    runs the connection's own receive loop and stops it by a timer. That loop recurses once per
    message; the limit is raised so a test's few hundred patches stay well inside it.
    """
    for session in sessions:
        if not getattr(session, "receiving", False):
            sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
            connection = session._connection
            connection._until_predicate = None
            connection._loop.add_callback(connection._next)  # reads and applies PATCH-DOCs
            session.receiving = True  # type: ignore[attr-defined]
    for loop in {session._connection._loop for session in sessions}:  # pass one to share
        loop.call_later(seconds, loop.stop)
        loop.start()


FIND_BUTTON = """
const find = (root, label) => {
  for (const button of root.querySelectorAll('button')) {
    if (button.textContent.trim() === label) return button;
  }
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) {
      const hit = find(element.shadowRoot, label);
      if (hit) return hit;
    }
  }
  return null;
};
return find(document, arguments[0]);
"""
