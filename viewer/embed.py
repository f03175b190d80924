"""``/embed``: the curves and the current sample, sized to sit in a slide.

A talk's slides (a reveal.js ``<iframe src=".../embed">``) show the run without the page's
header, controls or pad: four panels in a grid that fills the frame
(``app/templates/embed.html``). Served beside the dashboard by the same process, from the same
subscription. An embedded page draws its own frames: it holds fewer models than an audience
page, so the broadcast's one message for every page does not fit it (a handful of slides, not
a room).
"""

from __future__ import annotations

from pathlib import Path

from bokeh.document import Document
from jinja2 import Environment, FileSystemLoader

from viewer import sources
from viewer.dashboard import Dashboard, Page
from viewer.panels.looks import session_look
from viewer.server import settings

TEMPLATES = Path(__file__).parent / "app" / "templates"


def session(doc: Document) -> None:
    """Build one embedded page (Bokeh's FunctionHandler calls this per session)."""
    config = settings.current()
    look = session_look(doc, config)
    doc.template = Environment(loader=FileSystemLoader(TEMPLATES)).get_template("embed.html")
    Dashboard(
        doc,
        sources.current(),
        config,
        look=look,
        live=not config.replay,
        page=Page(look, embed=True),
    )
