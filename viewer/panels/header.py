"""The header: what is running and how it is going, plus this session's own figures.

The run's part (dataset, architecture, optimizer, status, step, epoch bar, speed, ETA) is
precomputed by the hub once per message; the session adds how many viewers are connected and
its own lag, refreshed at most once a second so an idle run does not cost a message a frame.
The Div is named ``header``; its text always holds the status word and the step.
"""

from __future__ import annotations

from bokeh.layouts import column, row
from bokeh.models import InlineStyleSheet, LayoutDOM
from bokeh.models.widgets import Div, Toggle

from viewer.panels.looks import Look

TITLE = "<h1>MNIST Live</h1>"
WAITING = '<span class="status waiting">waiting</span> for a trainer&hellip;'


class Header:
    def __init__(self, look: Look, toggles: list[LayoutDOM], controls: LayoutDOM | None) -> None:
        self.run_html = WAITING
        self.session_html = ""
        self.div = Div(
            text=self._text(),
            name="header",
            sizing_mode="stretch_width",
            stylesheets=[InlineStyleSheet(css=look.header_css())],
        )
        self.pin = Toggle(
            label="pin this run",
            name="pin",
            active=False,
            width=130,
            styles={"font-size": look.px(13)},
        )
        widgets = [self.pin, *toggles, *([controls] if controls is not None else [])]
        self.layout = column(self.div, row(*widgets), sizing_mode="stretch_width")

    def _text(self) -> str:
        return f'{TITLE}<div class="run">{self.run_html}</div>{self.session_html}'

    def show(self, run_html: str | None = None, session_html: str | None = None) -> None:
        """Update either part; assigns the Div only when its text really changes."""
        if run_html is not None:
            self.run_html = run_html
        if session_html is not None:
            self.session_html = session_html
        text = self._text()
        if text != self.div.text:
            self.div.text = text

    @staticmethod
    def session_part(viewers: int, lag_ms: float | None, pinned: bool) -> str:
        parts = [f"{viewers} viewer{'s' if viewers != 1 else ''} connected"]
        if lag_ms is not None:
            parts.append(f"lag {lag_ms:,.0f} ms")
        if pinned:
            parts.append("pinned")
        return f'<div class="session">{" &middot; ".join(parts)}</div>'
