"""``/compare``: two or more runs overlaid, aligned by samples seen or wall time, with their
recipes side by side.

The runs are the ones this process holds: the broker's (up to the hub's four) for a live
viewer, every run of every file for ``view --replay a.mcap --replay b.mcap``
(:meth:`~viewer.sources.RunSource.comparable`). Each session picks its own runs, so the page
draws its own frames, once a second, and only when a chosen run or the alignment changed.
Each plot has :data:`MAX_RUNS` lines built with the page, one per colour, which a choice fills
or hides: choosing runs changes data, never the page's models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bokeh.core.properties import value
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, InlineStyleSheet, Range1d
from bokeh.models.annotations import Legend, LegendItem
from bokeh.models.widgets import Div, MultiChoice, RadioButtonGroup
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from jinja2 import Environment, FileSystemLoader

from viewer import sources
from viewer.compare.overlay import ALIGNMENTS, Align, aligned, snapshot, table_html
from viewer.panels.looks import Look, session_look
from viewer.server import settings

log = logging.getLogger("viewer")

MAX_RUNS = 6
"""Runs one comparison overlays: more lines than this are no longer told apart."""
REFRESH_MS = 1000
TEMPLATES = Path(__file__).parent.parent / "app" / "templates"
ORDER: tuple[Align, ...] = tuple(ALIGNMENTS)


class ComparePage:
    """One session's comparison: the picker, the alignment, two plots and the table."""

    def __init__(self, doc: Document, source: sources.RunSource, look: Look) -> None:
        self.doc, self.source, self.look = doc, source, look
        self.colours = [Category10_10[i] for i in (0, 1, 2, 3, 4, 6)]
        self.picker = MultiChoice(
            title="Runs to compare", options=[], value=[], name="compare_runs",
            sizing_mode="stretch_width",
        )  # fmt: skip
        self.align = RadioButtonGroup(
            labels=list(ALIGNMENTS.values()), active=0, name="compare_align", width=300
        )
        self.lines: list[dict[str, ColumnDataSource]] = [
            {plot: ColumnDataSource({"x": [], "y": []}, name=f"compare_{plot}_{i}")
             for plot in ("loss", "accuracy")}
            for i in range(MAX_RUNS)
        ]  # fmt: skip
        self.items: list[list[LegendItem]] = [[] for _ in range(MAX_RUNS)]
        self.loss = self._figure("Loss (training, smoothed)", "cross-entropy", "loss")
        self.accuracy = self._figure(
            "Accuracy (test subset)", "accuracy", "accuracy", y_range=Range1d(start=0, end=1)
        )
        self.table = Div(
            text="", name="compare_table", sizing_mode="stretch_width",
            stylesheets=[InlineStyleSheet(css=self._table_css())],
        )  # fmt: skip
        self.note = Div(text="", name="compare_note", sizing_mode="stretch_width")
        self.layout = column(
            Div(
                text='<h1>Compare runs</h1><a href="./">back to the live page</a>',
                stylesheets=[InlineStyleSheet(css=self._title_css())],
            ),
            row(self.picker, self.align, sizing_mode="stretch_width"),
            self.note,
            row(self.loss, self.accuracy, sizing_mode="stretch_width"),
            self.table,
            sizing_mode="stretch_width",
            name="compare",
        )
        self._shown: object = None
        self._chose = False
        """The session chose its runs (else it follows every run held, newest last)."""
        self._offering = False
        self.picker.on_change("value", self._chosen)
        self.align.on_change("active", lambda _a, _o, _n: self.refresh())

    def _figure(self, title: str, label: str, plot: str, **options: Any) -> Any:
        fig = figure(
            title=title, height=round(340 * self.look.scale), sizing_mode="stretch_width",
            min_width=300, x_axis_label=ALIGNMENTS["samples"], y_axis_label=label,
            tools="pan,wheel_zoom,box_zoom,reset,save", toolbar_location="right", **options,
        )  # fmt: skip
        fig.toolbar.logo = None
        items = []
        for i, lines in enumerate(self.lines):
            renderer = fig.line("x", "y", source=lines[plot], color=self.colours[i], line_width=2)
            item = LegendItem(label="", renderers=[renderer], visible=False)  # type: ignore[list-item]
            self.items[i].append(item)
            items.append(item)
        fig.add_layout(
            Legend(items=items, location="top_right" if plot == "loss" else "bottom_right")
        )
        return fig

    def _title_css(self) -> str:
        look = self.look
        return f"""
:host {{ color: {look.text}; font-size: {look.vw(15)}; }}
h1 {{ font-size: {look.vw(26)}; margin: 0.3em 0 0.1em; font-weight: 600; }}
a {{ color: {look.ink}; }}
"""

    def _table_css(self) -> str:
        look = self.look
        return f"""
:host {{ color: {look.text}; font-size: {look.vw(14)}; }}
table.runs {{ border-collapse: collapse; margin-top: 0.6em; }}
table.runs th, table.runs td {{ padding: 0.25em 0.8em; text-align: left;
                                border-bottom: 1px solid {look.grid}; }}
table.runs th {{ color: {look.muted}; font-weight: 600; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
          border-radius: 0.2em; vertical-align: -0.1em; }}
"""

    def _chosen(self, _attr: str, _old: Any, _new: Any) -> None:
        if not self._offering:  # the session's own choice, not the page's default
            self._chose = True
            self.refresh()

    def refresh(self) -> None:
        """Offer the runs held now, and draw the chosen ones when any of them (or the
        alignment) changed since the last drawing: a second's frame where nothing did costs a
        comparison of version numbers."""
        runs = self.source.comparable()
        keys = list(runs)
        if self.picker.options != keys:
            self.picker.options = keys  # type: ignore[assignment]
        if not self._chose and self.picker.value != keys[-MAX_RUNS:]:
            self._offering = True
            try:
                self.picker.value = keys[-MAX_RUNS:]
            finally:
                self._offering = False
        chosen = [k for k in list(self.picker.value)[:64] if k in runs][:MAX_RUNS]
        active = self.align.active  # a browser's: any integer at all
        by = ORDER[active] if isinstance(active, int) and 0 <= active < len(ORDER) else ORDER[0]
        shown = (tuple((k, runs[k].version) for k in chosen), by)
        if shown == self._shown:
            return
        self._shown = shown
        colours = {k: self.colours[i] for i, k in enumerate(chosen)}
        with self.source.lock:  # copies only: the hub's thread waits on this lock
            copies = {k: snapshot(runs[k]) for k in chosen}
            table = table_html({k: runs[k] for k in chosen}, colours)
        curves = {k: aligned(copy, by) for k, copy in copies.items()}
        self._draw(chosen, curves, by, table)

    def _draw(
        self, chosen: list[str], curves: dict[str, dict[str, Any]], by: Align, table: str
    ) -> None:
        for i, lines in enumerate(self.lines):
            key = chosen[i] if i < len(chosen) else None
            for plot, source in lines.items():
                data = curves[key][plot] if key is not None else {"x": [], "y": []}
                source.data = {"x": list(map(float, data["x"])), "y": list(map(float, data["y"]))}
            for item in self.items[i]:
                item.label = value(key or "")  # a plain string would name a column
                item.visible = key is not None
        for fig in (self.loss, self.accuracy):
            fig.xaxis[0].axis_label = ALIGNMENTS[by]
        if self.table.text != table:
            self.table.text = table
        held = len(self.picker.options)
        self.note.text = (
            "" if len(chosen) >= 2
            else f"{held} run{'s' if held != 1 else ''} held here: choose two or more to compare."
        )  # fmt: skip


def session(doc: Document) -> None:
    """Build one comparison page (Bokeh's FunctionHandler calls this per session)."""
    config = settings.current()
    look = session_look(doc, config)
    doc.template = Environment(loader=FileSystemLoader(TEMPLATES)).get_template("compare.html")
    doc.title = "MNIST Live: compare runs"
    doc.theme = look.theme()
    doc.template_variables.update(look.template_variables())
    page = ComparePage(doc, sources.current(), look)
    doc.add_root(page.layout)
    page.refresh()
    doc.add_periodic_callback(page.refresh, REFRESH_MS)
