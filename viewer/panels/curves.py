"""Loss and accuracy over steps: streamed curves, the previous run faintly underneath.

Sources: ``loss`` (every metrics message: raw and smoothed loss and batch accuracy, with the
trainer's ``sent_at``), ``accuracy`` (evaluations on the test subset), ``test_accuracy``
(whole test set at epoch ends), ``loss_previous`` and ``accuracy_previous`` (the run before),
``tunings`` (the presenter's changes of learning rate and momentum: a vertical line at the step
with the new values beside it, on both plots; a run's few changes are sent whole).
The log scale is the same loss figure with another scale, ticker and formatter, swapped in the
browser by the toggle (client-side only): a second figure would cost every page ~75 models, a
sixth of it, each serialized and read when the page opens.

On the wire every value carries the digits a reader can use (:func:`wire_rows`: a loss to five
significant digits, a fraction to four decimals, a time to the millisecond), and a session that
joins late gets each curve's history thinned to what its plot can draw
(:func:`history`, M4), as compact arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from bokeh.models import (
    CustomJS,
    DataRange1d,
    HoverTool,
    LogScale,
    LogTicker,
    LogTickFormatter,
    Range1d,
)
from bokeh.models.annotations import LabelSet, Legend, LegendItem
from bokeh.models.widgets import Toggle
from bokeh.plotting import figure

from viewer.panels.ids import named_source, shared
from viewer.panels.looks import Look
from viewer.runs.columns import ROWS_KEPT
from viewer.runs.decimate import decimated
from viewer.runs.state import CURVES, RunHistory

PART = "tunings"

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
DRAWN = {
    "loss": ("loss", "loss_smooth", "accuracy_smooth"),
    "accuracy": ("accuracy", "loss"),
    "test_accuracy": ("accuracy", "loss"),
}
"""The columns each curve source's lines draw: what decimation must keep the extremes of."""
DTYPES: dict[str, type] = {
    "step": np.int32,
    "epoch": np.int32,
    "sent_at": np.float64,  # seconds since 1970: float32 would keep only minutes
    **dict.fromkeys(("loss", "loss_smooth", "accuracy_smooth", "accuracy"), np.float32),
}


def _significant(digits: int) -> Callable[[float], float]:
    return lambda v: float(f"{v:.{digits}g}")


def _decimals(digits: int) -> Callable[[float], float]:
    return lambda v: round(v, digits)


ROUNDING: dict[str, Callable[[float], float]] = {
    "loss": _significant(5),
    "loss_smooth": _significant(5),
    "accuracy_smooth": _decimals(4),
    "accuracy": _decimals(4),
    "sent_at": _decimals(3),
}


PAGE_COLUMNS = {
    name: tuple(c for c in columns if c != "batch_accuracy") for name, columns in CURVES.items()
}
"""What a page's curve sources hold: what the plots draw, plus ``sent_at`` (how old a row is
when it arrives); the raw batch accuracy, drawn nowhere, stays in the hub (and the CSV)."""


def wire_rows(name: str, rows: dict[str, list[float]]) -> dict[str, list[float]]:
    """New rows of curve ``name`` with the columns a page holds and the digits worth sending
    (about half the JSON of full floats)."""
    out = {}
    for field in PAGE_COLUMNS[name]:
        shorten, values = ROUNDING.get(field), rows[field]
        out[field] = [shorten(v) for v in values] if shorten is not None else values
    return out


def history(name: str, data: dict[str, Any]) -> dict[str, np.ndarray]:
    """A curve source's rows for a session that joins: thinned by M4 to what the plot can
    draw, as arrays (binary on the wire, float32 where that keeps what the plot shows)."""
    return decimated(data, "step", DRAWN[name], DTYPES)


OVERLAY_COLUMNS = {"loss_previous": ("step", "loss"), "accuracy_previous": ("step", "accuracy")}
TUNING_COLUMNS = ("step", "label")


def render(run: RunHistory) -> dict[str, Any]:
    """The presenter's changes, as the ``tunings`` source's columns: each at the step it
    applies from, labelled with what it set (``lr 0.01``, ``lr 0.01 m 0.95``)."""
    steps, labels = [], []
    for change in run.tunings:
        label = f"lr {change.learning_rate:g}"
        if change.momentum is not None and change.momentum != change.previous_momentum:
            label += f" m {change.momentum:g}"
        steps.append(change.step + 1)
        labels.append(label)
    return {PART: {"step": steps, "label": labels}}


SCALE_SWAP_JS = """
// This browser's loss plot on a log scale or back, without the server: the scale, the axis's
// ticker and formatter, and the range's hint (a log range leaves out values at or below 0).
const to = cb_obj.active ? log : linear;
fig.y_range.setv({scale_hint: cb_obj.active ? "log" : "auto"}, {sync: false});
axis.setv({ticker: to.ticker, formatter: to.format}, {sync: false});
fig.setv({y_scale: to.scale}, {sync: false});
"""


class Curves:
    def __init__(self, look: Look) -> None:
        self.look = look
        self.sources = {name: named_source(name, columns) for name, columns in PAGE_COLUMNS.items()}
        self.previous = {
            name: named_source(name, columns) for name, columns in OVERLAY_COLUMNS.items()
        }
        self.room = named_source("room_accuracy", ("step", "accuracy"))
        """The room's own digits read right, per model (:mod:`viewer.drawing.room`)."""
        self.tunings = named_source("tunings", TUNING_COLUMNS)
        """The presenter's changes of hyperparameters, marked on both plots."""
        self.x_range = DataRange1d(only_visible=True)
        self.linear = self._loss_figure()
        self.log_scale = Toggle(label="log scale", name="log_scale", active=False, width=110)
        self.log_scale.js_on_change("active", self._scale_swap(self.linear))
        self.loss_layout = self.linear
        self.accuracy_layout = self._accuracy_figure()

    @staticmethod
    def _scale_swap(fig: Any) -> CustomJS:
        """What the toggle runs in the browser: ``fig``'s y axis on a log scale, or back."""
        axis = fig.left[0]
        return CustomJS(
            args={
                "fig": fig,
                "axis": axis,
                "linear": {"scale": fig.y_scale, "ticker": axis.ticker, "format": axis.formatter},
                "log": {"scale": LogScale(), "ticker": LogTicker(), "format": LogTickFormatter()},
            },
            code=SCALE_SWAP_JS,
        )

    def _loss_figure(self) -> Any:
        fig = self._figure(
            "Loss",
            "cross-entropy",
            "loss",
            "loss_smooth",
            "training (smoothed)",
            "0.0000",
            raw=True,
        )
        fig.legend.location = "top_right"
        return fig

    def _accuracy_figure(self) -> Any:
        fig = self._figure(
            "Accuracy",
            "accuracy",
            "accuracy",
            "accuracy_smooth",
            "training batches (smoothed)",
            "0.0%",
            y_range=Range1d(start=0, end=1.0),
        )
        fig.legend.location = "bottom_right"
        return fig

    def _figure(
        self,
        title: str,
        label: str,
        y: str,
        smooth: str,
        training: str,
        shown: str,
        raw: bool = False,
        **options: Any,
    ) -> Any:
        """One curves figure: the previous run dashed underneath, the training curve (``raw``
        faintly, then ``smooth``), the test subset's and the full test set's ``y``."""
        look, sources = self.look, self.sources
        fig = figure(
            title=title,
            height=look.plot_height,
            sizing_mode="stretch_width",
            min_width=300,
            x_range=self.x_range,
            x_axis_label="step",
            y_axis_label=label,
            tools=TOOLS,
            toolbar_location="right" if look.tools else None,
            **options,
        )
        fig.toolbar.logo = None
        previous = self.previous["loss_previous" if y == "loss" else "accuracy_previous"]
        entries: list[tuple[str, Any]] = [
            (
                "previous run",
                fig.line(
                    "step",
                    y,
                    source=previous,
                    color=look.previous,
                    alpha=0.6,
                    line_width=2,
                    line_dash="dashed",
                ),
            ),
        ]
        if raw:
            fig.line("step", y, source=sources["loss"], color=look.ink, alpha=0.2)
        trained = fig.line("step", smooth, source=sources["loss"], color=look.ink, line_width=2)
        entries += [
            (training, trained),
            (
                "test subset",
                fig.line(
                    "step",
                    y,
                    source=sources["accuracy"],
                    color=look.evaluation,
                    line_width=2 if y == "loss" else 3,
                ),
            ),
            *(
                [
                    (
                        "the room's digits",
                        fig.line(
                            "step",
                            "accuracy",
                            source=self.room,
                            color=look.wrong,
                            line_width=2,
                            line_dash="dotdash",
                        ),
                    )
                ]
                if y == "accuracy"
                else []
            ),
            (
                "full test (epoch end)",
                fig.scatter(
                    "step",
                    y,
                    source=sources["test_accuracy"],
                    color=look.test,
                    size=9 if y == "loss" else 10,
                ),
            ),
        ]
        entries.append(("presenter's change", self._tuning_marks(fig, figure_key := title.lower())))
        # Entries with ids shared by every session: a frame shows each once its line has data
        # (:meth:`_legends`), encoded once for all (:mod:`viewer.panels.ids`).
        figure_key = f"{figure_key}-linear"
        items = [
            shared(
                LegendItem,
                f"legend-{figure_key}-{i}",
                label=label,
                renderers=[renderer],
                visible=False,
            )
            for i, (label, renderer) in enumerate(entries)
        ]
        fig.add_layout(Legend(items=items, click_policy="hide"))
        fig.add_tools(
            HoverTool(
                renderers=[trained],
                mode="vline",
                tooltips=[("step", "@step"), (y, f"@{smooth}{{{shown}}}")],
            )
        )
        # Two invisible points, so an empty plot has axes from the start (a range with no
        # data has no extent, and Bokeh then draws no axis at all).
        fig.scatter(x=[0, 1], y=[0, 1], alpha=0, size=0)
        return fig

    def _tuning_marks(self, fig: Any, key: str) -> Any:
        """A dotted vertical line at each change, its new values written up beside it."""
        look = self.look
        line = fig.vspan(
            x="step", source=self.tunings, line_color=look.muted, line_dash="dotted", line_width=2
        )
        fig.add_layout(
            LabelSet(
                x="step",
                y=6,
                y_units="screen",
                text="label",
                source=self.tunings,
                angle=math.pi / 2,
                x_offset=-4,
                text_color=look.muted,
                text_font_size=look.px(12),
                text_baseline="bottom",
                name=f"tuning-labels-{key}",
            )
        )
        return line

    def show_tunings(self, piece: dict[str, dict[str, list[Any]]]) -> None:
        """The run's changes of hyperparameters (:func:`render`'s piece), whole (a handful:
        assigned, not streamed)."""
        self.tunings.data = {c: list(piece[PART][c]) for c in TUNING_COLUMNS}
        self._legends({})

    def show(
        self, rows: dict[str, dict[str, list[float]]], previous: dict[str, list[float]] | None
    ) -> None:
        """A different run: assign its curves whole, ``previous`` (or nothing) underneath.

        Assigned, not streamed into emptied sources: under ``doc.hold`` an assignment is sent
        at the end of the frame with its value *then*, so a stream into the same lists would
        arrive twice.
        """
        for name, source in self.sources.items():
            whole = rows.get(name)
            source.data = wire_rows(name, whole) if whole else {c: [] for c in PAGE_COLUMNS[name]}
        previous = previous or {"step": [], "loss": [], "accuracy": []}
        for name, columns in OVERLAY_COLUMNS.items():
            self.previous[name].data = {c: previous[c] for c in columns}
        if self.tunings.data["step"]:
            self.tunings.data = {c: [] for c in TUNING_COLUMNS}
        self._legends(rows, previous)

    def apply(self, rows: dict[str, dict[str, list[float]]]) -> None:
        for name, new in rows.items():
            self.sources[name].stream(wire_rows(name, new), rollover=ROWS_KEPT)  # type: ignore[arg-type]
        self._legends(rows)

    def show_room(self, scores: dict[str, list[float]]) -> None:
        """The room's digits' curve as it is now (one point per model: small, sent whole)."""
        self.room.data = {c: list(v) for c, v in scores.items()}
        self._legends({})

    def _legends(
        self, rows: dict[str, dict[str, list[float]]], previous: dict | None = None
    ) -> None:
        """Show each legend entry once its line has data (hide them all for a new run)."""
        fresh = previous is not None
        for fig in (self.linear, self.accuracy_layout):
            for item in fig.legend[0].items:
                source = item.renderers[0].data_source
                shown = bool(source.data.get("step")) if fresh or not item.visible else True
                if item.visible != shown:
                    item.visible = shown
