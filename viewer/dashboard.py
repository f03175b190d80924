"""One browser session's dashboard: the plots, their named sources, and the update tick.

Each session renders the hub's whole history when it opens, then on every tick streams only
the rows it has not sent yet. Ticks run at a fixed frame rate, so the cost per session follows
the frame rate rather than the trainer's message rate.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d
from bokeh.models.widgets import Div
from bokeh.palettes import Greys256
from bokeh.plotting import figure

from protocol import SamplePrediction
from viewer.history import EVALUATION_COLUMNS, METRIC_COLUMNS, RunHistory
from viewer.hub import Hub

FRAME_MS = 200
ROLLOVER = 100_000
INK = "#1f77b4"
TRUE_CLASS = "#2ca02c"
WRONG = "#d62728"
BAR = "#9ecae1"


class Dashboard:
    def __init__(self, doc: Document, hub: Hub) -> None:
        self.doc = doc
        self.hub = hub
        self.run_id: str | None = None
        self.metrics_sent = self.evaluations_sent = 0
        self.sample_seq = -1

        self.loss = ColumnDataSource({c: [] for c in METRIC_COLUMNS}, name="loss")
        self.accuracy = ColumnDataSource({c: [] for c in EVALUATION_COLUMNS}, name="accuracy")
        self.sample = ColumnDataSource(
            {"image": [], "label": [], "predicted": [], "index": [], "step": []}, name="sample"
        )
        self.probabilities = ColumnDataSource(
            {"class_name": [], "probability": [], "color": []}, name="probabilities"
        )
        self.header = Div(text=self._header_html(None), name="header", sizing_mode="stretch_width")

        doc.title = "MNIST Live"
        doc.add_root(
            column(
                self.header,
                row(self._loss_figure(), self._accuracy_figure(), sizing_mode="stretch_width"),
                row(self._sample_figure(), self._probability_figure(), sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            )
        )
        self.update()
        doc.add_periodic_callback(self.update, FRAME_MS)

    def _loss_figure(self):
        fig = figure(
            title="Training loss",
            height=320,
            sizing_mode="stretch_width",
            x_axis_label="step",
            y_axis_label="cross-entropy",
            tools="pan,wheel_zoom,box_zoom,reset,hover",
        )
        fig.line("step", "loss", source=self.loss, color=INK, line_width=2, legend_label="train")
        fig.legend.location = "top_right"
        return fig

    def _accuracy_figure(self):
        fig = figure(
            title="Accuracy",
            height=320,
            sizing_mode="stretch_width",
            x_axis_label="step",
            y_axis_label="accuracy",
            y_range=Range1d(0, 1.0),
            tools="pan,wheel_zoom,box_zoom,reset,hover",
        )
        fig.line(
            "step",
            "batch_accuracy",
            source=self.loss,
            color=INK,
            alpha=0.35,
            legend_label="training batches",
        )
        fig.line(
            "step",
            "accuracy",
            source=self.accuracy,
            color=TRUE_CLASS,
            line_width=3,
            legend_label="test subset",
        )
        fig.legend.location = "bottom_right"
        return fig

    def _sample_figure(self):
        fig = figure(
            title="What the network sees",
            width=360,
            height=360,
            toolbar_location=None,
            x_range=(0, 28),
            y_range=(0, 28),
            match_aspect=True,
        )
        fig.axis.visible = False
        fig.grid.visible = False
        mapper = LinearColorMapper(palette=Greys256[::-1], low=0, high=255)
        fig.image("image", x=0, y=0, dw=28, dh=28, source=self.sample, color_mapper=mapper)
        self._sample_title = fig.title
        return fig

    def _probability_figure(self):
        fig = figure(
            title="Predicted probabilities",
            height=360,
            sizing_mode="stretch_width",
            x_range=[str(d) for d in range(10)],
            y_range=Range1d(0, 1.0),
            toolbar_location=None,
            tools="hover",
            tooltips=[("class", "@class_name"), ("p", "@probability{0.000}")],
        )
        fig.vbar(
            x="class_name", top="probability", width=0.8, color="color", source=self.probabilities
        )
        self._probability_range = fig.x_range
        return fig

    def update(self) -> None:
        """Bring this session up to date with the hub: the whole run at first, then deltas."""
        run = self.hub.current
        if run is None:
            return
        with self.hub.lock:
            if run.run_id != self.run_id:
                self._switch_run(run)
            new_metrics = _rows_after(run.metrics, self.metrics_sent)
            new_evaluations = _rows_after(run.evaluations, self.evaluations_sent)
            sample = run.sample
            header = self._header_html(run)
        if new_metrics["step"]:
            self.loss.stream(new_metrics, rollover=ROLLOVER)
            self.metrics_sent += len(new_metrics["step"])
        if new_evaluations["step"]:
            self.accuracy.stream(new_evaluations, rollover=ROLLOVER)
            self.evaluations_sent += len(new_evaluations["step"])
        if sample is not None and sample.seq != self.sample_seq:
            self._show_sample(run, sample)
        if header != self.header.text:
            self.header.text = header

    def _switch_run(self, run: RunHistory) -> None:
        self.run_id = run.run_id
        self.metrics_sent = self.evaluations_sent = 0
        self.sample_seq = -1
        self.loss.data = {c: [] for c in METRIC_COLUMNS}
        self.accuracy.data = {c: [] for c in EVALUATION_COLUMNS}
        if run.started:
            self._probability_range.factors = list(run.started.dataset.class_names)

    def _show_sample(self, run: RunHistory, sample: SamplePrediction) -> None:
        self.sample_seq = sample.seq
        names = (
            run.started.dataset.class_names
            if run.started
            else [str(i) for i in range(len(sample.probabilities))]
        )
        predicted = sample.predicted
        verdict = "\N{CHECK MARK} right" if predicted == sample.label else "\N{BALLOT X} wrong"
        synthetic = run.started is not None and run.started.dataset.synthetic
        kind = "Synthetic test" if synthetic else "Test"
        self._sample_title.text = (
            f"{kind} #{sample.index}: true {names[sample.label]}, "
            f"predicted {names[predicted]} {verdict}"
        )
        self.sample.data = {
            "image": [np.flipud(sample.image)],
            "label": [names[sample.label]],
            "predicted": [names[predicted]],
            "index": [sample.index],
            "step": [sample.step],
        }
        colors = [BAR] * len(names)
        colors[predicted] = WRONG
        colors[sample.label] = TRUE_CLASS
        self.probabilities.data = {
            "class_name": list(names),
            "probability": list(sample.probabilities),
            "color": colors,
        }

    def _header_html(self, run: RunHistory | None) -> str:
        if run is None:
            return "<h2>MNIST Live</h2><p>Waiting for a trainer&hellip;</p>"
        parts = [f"<b>run</b> {html.escape(run.run_id)}", f"<b>status</b> {run.status}"]
        if started := run.started:
            data = started.dataset
            name = "SYNTHETIC digits" if data.synthetic else data.name
            arch = "-".join(str(s) for s in started.architecture.layer_sizes)
            hp = started.hyperparameters
            parts += [
                f"<b>data</b> {html.escape(name)} ({data.train_size:,} train)",
                f"<b>model</b> {arch} {started.architecture.activation}",
                f"<b>{html.escape(hp.optimizer)}</b> lr {hp.learning_rate:g}"
                f", batch {hp.batch_size}",
                f"<b>step</b> {run.step:,}/{started.total_steps:,}",
            ]
        if metrics := run.latest_metrics:
            parts.append(f"{metrics.samples_per_second:,.0f} samples/s")
        if run.finished and run.finished.test_accuracy is not None:
            parts.append(f"<b>test accuracy</b> {run.finished.test_accuracy:.2%}")
        if not run.finished:
            lag_ms = max(0.0, (run.last_received_at - run.last_sent_at) * 1000)
            parts.append(f"lag {lag_ms:,.0f} ms")
        return "<h2>MNIST Live</h2><p>" + " &middot; ".join(parts) + "</p>"


def _rows_after(columns: dict[str, list], start: int) -> dict[str, Any]:
    return {name: values[start:] for name, values in columns.items()}
