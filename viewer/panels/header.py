"""The header: what is running and how it is going, plus this session's own figures.

The run's part (dataset, architecture, optimizer, status, step, epoch bar, speed, ETA) is
rendered by :func:`render` once per change of the run, for every session; the session adds how
many viewers are connected and its own lag, refreshed at most once a second so an idle run
does not cost a message a frame. The Div is named ``header``; its text always holds the status
word and the step.
"""

from __future__ import annotations

import html
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import InlineStyleSheet, LayoutDOM
from bokeh.models.widgets import Div, Toggle

from protocol.cli.durations import format_duration
from viewer.panels.ids import shared
from viewer.panels.looks import Look
from viewer.runs.state import RunHistory

TITLE = "<h1>MNIST Live</h1>"
WAITING = '<span class="status waiting">waiting</span> for a trainer&hellip;'
PART = "header"


def render(run: RunHistory) -> dict[str, Any]:
    """The run's part of the header as HTML, and its status word (which, when it changes, is
    shown at once)."""
    return {"html": run_html(run), "status": run.status}


def run_html(run: RunHistory) -> str:
    status = run.status
    parts = [f'<span class="status {status}">{status}</span>']
    if status == "waiting" and run.run_status is not None:  # the trainer waits for Start
        parts[0] += " for the presenter to press Start"
    progress = ""
    if started := run.started:
        data, hp = started.dataset, started.hyperparameters
        name = html.escape(data.name)
        if data.synthetic:
            name = f'<span class="synthetic">SYNTHETIC</span> {name}'
        learning_rate, momentum = run.hyperparameters_now() or (hp.learning_rate, None)
        optimizer = f"{html.escape(hp.optimizer)} lr {learning_rate:g}"
        if momentum:
            optimizer += f" m {momentum:g}"
        if hp.weight_decay:
            optimizer += f" wd {hp.weight_decay:g}"
        optimizer += f", {html.escape(hp.schedule)}, batch {hp.batch_size}"
        epoch, fraction = run.epoch_progress()
        parts += [
            f"<b>data</b> {name} ({data.train_size:,} train / {data.test_size:,} test)",
            f"<b>model</b> {started.architecture.label}",
            f"<b>optimizer</b> {optimizer}",
            f"<b>step</b> {run.step:,} / {started.total_steps:,}",
        ]
        progress = (
            f'<div class="progress">epoch {epoch} / {hp.epochs}'
            f'<span class="bar"><span style="width:{fraction:.1%}"></span></span></div>'
        )
    else:
        parts.append(f"<b>step</b> {run.step:,}")
    if speed := run.samples_per_second():
        parts.append(f"{speed:,.0f} samples/s")
    eta = run.eta_seconds()
    if eta is not None and not run.finished:
        parts.append(f"ETA {format_duration(eta, words=True)}")
    if run.finished and run.finished.test_accuracy is not None:
        parts.append(f"<b>test accuracy</b> {run.finished.test_accuracy:.2%}")
    message = run.finished.message if run.finished else ""
    if pending := run.pictures_pending():
        message = f"this recording starts mid-run: pictures {pending}"
    note = f'<div class="note">{html.escape(message)}</div>' if message else ""
    parts.append(f'<span class="run-id">run {html.escape(run.run_id)}</span>')
    return " &middot; ".join(parts) + progress + note


class Header:
    def __init__(self, look: Look, toggles: list[LayoutDOM], controls: LayoutDOM | None) -> None:
        self.run_html = WAITING
        self.session_html = ""
        self.div = shared(
            Div,
            "header",
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
    def session_part(
        viewers: int, lag_ms: float | None, pinned: bool, alarm: str | None = None
    ) -> str:
        """``alarm``: what has gone quiet ("trainer silent for 3 s"), shown instead of the lag."""
        parts = [f"{viewers} viewer{'s' if viewers != 1 else ''} connected"]
        if alarm is not None:
            parts.append(f'<span class="silent">{html.escape(alarm)}</span>')
        elif lag_ms is not None:
            parts.append(f"lag {lag_ms:,.0f} ms")
        if pinned:
            parts.append("pinned")
        parts.append('<a href="compare" target="_blank" rel="noopener">compare runs</a>')
        return f'<div class="session">{" &middot; ".join(parts)}</div>'
