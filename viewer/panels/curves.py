"""Loss and accuracy over steps: streamed curves, the previous run faintly underneath.

Sources: ``loss`` (every metrics message: raw and smoothed loss and batch accuracy, with the
trainer's ``sent_at``), ``accuracy`` (evaluations on the test subset), ``test_accuracy``
(whole test set at epoch ends), ``loss_previous`` and ``accuracy_previous`` (the run before).
The log scale is a second loss figure on the same sources, built only when a session first
asks for it (a figure is the costliest part of opening a session) and then swapped in.
"""

from __future__ import annotations

from typing import Any, Literal

from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    HoverTool,
    Range1d,
)
from bokeh.models.widgets import Toggle
from bokeh.plotting import figure

from viewer.history import CURVES, ROWS_KEPT
from viewer.panels.looks import Look

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
OVERLAY_COLUMNS = {"loss_previous": ("step", "loss"), "accuracy_previous": ("step", "accuracy")}


class Curves:
    def __init__(self, look: Look) -> None:
        self.look = look
        self.sources = {
            name: ColumnDataSource({c: [] for c in columns}, name=name)
            for name, columns in CURVES.items()
        }
        self.previous = {
            name: ColumnDataSource({c: [] for c in columns}, name=name)
            for name, columns in OVERLAY_COLUMNS.items()
        }
        self.x_range = DataRange1d(only_visible=True)
        self.linear = self._loss_figure("linear")
        self.log: Any = None
        self.log_scale = Toggle(label="log scale", name="log_scale", active=False, width=110)
        self.log_scale.on_change("active", self._scale_changed)
        self.loss_layout = column(self.linear, sizing_mode="stretch_width", min_width=300)
        self.accuracy_layout = self._accuracy_figure()

    def _loss_figure(self, scale: Literal["linear", "log"]) -> Any:
        look, sources = self.look, self.sources
        fig = figure(
            title="Loss",
            height=self.look.plot_height,
            sizing_mode="stretch_width",
            min_width=300,
            x_range=self.x_range,
            y_axis_type=scale,
            x_axis_label="step",
            y_axis_label="cross-entropy",
            tools=TOOLS,
        )
        fig.line(
            "step",
            "loss",
            source=self.previous["loss_previous"],
            color=look.previous,
            alpha=0.6,
            line_width=2,
            line_dash="dashed",
            legend_label="previous run",
        )
        fig.line("step", "loss", source=sources["loss"], color=look.ink, alpha=0.2)
        smooth = fig.line(
            "step",
            "loss_smooth",
            source=sources["loss"],
            color=look.ink,
            line_width=2,
            legend_label="training (smoothed)",
        )
        fig.line(
            "step",
            "loss",
            source=sources["accuracy"],
            color=look.evaluation,
            line_width=2,
            legend_label="test subset",
        )
        fig.scatter(
            "step",
            "loss",
            source=sources["test_accuracy"],
            color=look.test,
            size=9,
            legend_label="full test (epoch end)",
        )
        fig.add_tools(
            HoverTool(
                renderers=[smooth],
                mode="vline",
                tooltips=[("step", "@step"), ("loss", "@loss_smooth{0.0000}")],
            )
        )
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        return fig

    def _accuracy_figure(self) -> Any:
        look, sources = self.look, self.sources
        fig = figure(
            title="Accuracy",
            height=self.look.plot_height,
            sizing_mode="stretch_width",
            min_width=300,
            x_range=self.x_range,
            y_range=Range1d(start=0, end=1.0),
            x_axis_label="step",
            y_axis_label="accuracy",
            tools=TOOLS,
        )
        fig.line(
            "step",
            "accuracy",
            source=self.previous["accuracy_previous"],
            color=look.previous,
            alpha=0.6,
            line_width=2,
            line_dash="dashed",
            legend_label="previous run",
        )
        smooth = fig.line(
            "step",
            "accuracy_smooth",
            source=sources["loss"],
            color=look.ink,
            line_width=2,
            legend_label="training batches (smoothed)",
        )
        fig.line(
            "step",
            "accuracy",
            source=sources["accuracy"],
            color=look.evaluation,
            line_width=3,
            legend_label="test subset",
        )
        fig.scatter(
            "step",
            "accuracy",
            source=sources["test_accuracy"],
            color=look.test,
            size=10,
            legend_label="full test (epoch end)",
        )
        fig.add_tools(
            HoverTool(
                renderers=[smooth],
                mode="vline",
                tooltips=[("step", "@step"), ("accuracy", "@accuracy_smooth{0.0%}")],
            )
        )
        fig.legend.location = "bottom_right"
        fig.legend.click_policy = "hide"
        return fig

    def _scale_changed(self, _attr: str, _old: bool, log: bool) -> None:
        if log and self.log is None:
            self.log = self._loss_figure("log")
        self.loss_layout.children = [self.log if log else self.linear]

    def show(
        self, rows: dict[str, dict[str, list[float]]], previous: dict[str, list[float]] | None
    ) -> None:
        """A different run: assign its curves whole, ``previous`` (or nothing) underneath.

        Assigned, not streamed into emptied sources: under ``doc.hold`` an assignment is sent
        at the end of the frame with its value *then*, so a stream into the same lists would
        arrive twice.
        """
        for name, source in self.sources.items():
            source.data = rows.get(name) or {c: [] for c in CURVES[name]}
        previous = previous or {"step": [], "loss": [], "accuracy": []}
        for name, columns in OVERLAY_COLUMNS.items():
            self.previous[name].data = {c: previous[c] for c in columns}

    def apply(self, rows: dict[str, dict[str, list[float]]]) -> None:
        for name, new in rows.items():
            self.sources[name].stream(new, rollover=ROWS_KEPT)  # type: ignore[arg-type]
