"""Where the network still goes wrong, from the latest evaluation.

Sources ``confusion`` (one cell per true/predicted pair: row-normalised ``rate`` for the
colour, ``count`` for the hover), ``per_class`` (accuracy per true class) and
``misclassified`` (the current mistakes, one row each: where its tile sits, its caption true ->
predicted, its test-set index) with ``misclassified_images`` (all their 28x28 images as one
mosaic, so a frame carries one image rather than a dozen, on the wire as residuals from one
evaluation to the next: :mod:`viewer.panels.pictures`). :func:`render` makes them all from
the run's latest evaluation, once per evaluation for every session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.models import (
    DataRange1d,
    FactorRange,
    HoverTool,
    Image,
    LinearColorMapper,
    Range1d,
)
from bokeh.palettes import Blues256, Greys256
from bokeh.plotting import figure
from bokeh.transform import dodge

from viewer.panels.assign import refresh, same_list
from viewer.panels.ids import named_source, shared
from viewer.panels.images import TILE, say_if_empty, shared_title, tile_mosaic
from viewer.panels.looks import Look
from viewer.panels.pictures import Picture, PictureStream, empty, encoded
from viewer.runs.state import RunHistory

PART = "evaluation"
CONFUSION = "Confusion"
PER_CLASS = "Accuracy per class"
MISTAKES = "Current mistakes"
CONFUSION_COLUMNS = ("true", "predicted", "rate", "count")
PER_CLASS_COLUMNS = ("class_name", "accuracy")
GALLERY_SOURCE_COLUMNS = ("x", "y", "label", "index")
GALLERY_PLACEMENT = ("x", "y", "dw", "dh")
GALLERY_COLUMNS = 4
"""Mistakes side by side: the trainer sends up to eight, so two rows."""
GALLERY_GAP = 4
"""Pixels between two mistakes side by side."""
GALLERY_CAPTION = 12
"""Pixels below each mistake, for its caption."""


def render(run: RunHistory) -> dict[str, Any]:
    """Confusion (row-normalised rate + counts), per-class bars and the mistakes gallery."""
    e = run.evaluation
    if e is None:
        return {
            "confusion": {c: [] for c in CONFUSION_COLUMNS},
            "per_class": {c: [] for c in PER_CLASS_COLUMNS},
            "misclassified": {c: [] for c in GALLERY_SOURCE_COLUMNS},
            "misclassified_images": empty(GALLERY_PLACEMENT),
        }
    counts = np.asarray(e.confusion, dtype=np.int64)
    k = len(counts)
    names = run.class_names(k)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    true_index, predicted_index = np.divmod(np.arange(k * k), k)
    per_class = [math.nan if a is None else a for a in e.per_class_accuracy] or [math.nan] * k
    n = len(e.misclassified_images)
    row, col = np.divmod(np.arange(n), GALLERY_COLUMNS)
    return {
        "confusion": {
            "true": same_list(tuple(names[i] for i in true_index)),
            "predicted": same_list(tuple(names[j] for j in predicted_index)),
            # lists, not arrays: a binary buffer goes uncompressed, JSON deflated (mostly zeros)
            "rate": np.round(rates.ravel(), 3).tolist(),  # the hover shows 0.1%
            "count": counts.ravel().tolist(),
        },
        "per_class": {"class_name": same_list(tuple(names)), "accuracy": per_class},
        "misclassified": {
            "x": (col * (TILE + GALLERY_GAP)).tolist(),
            "y": (-row * (TILE + GALLERY_CAPTION)).tolist(),
            "label": [
                f"{names[t]} \N{RIGHTWARDS ARROW} {names[p]}"
                for t, p in zip(e.misclassified_label, e.misclassified_predicted, strict=True)
            ],
            "index": list(e.misclassified_index),
        },
        "misclassified_images": encoded(
            run.pictures.setdefault(PART, PictureStream()),
            gallery_mosaic(e.misclassified_images),
            e.sent_at,
        ),
    }


def gallery_mosaic(images: Sequence[np.ndarray] | np.ndarray) -> dict[str, list[Any]]:
    """The mistakes' images as one picture: one binary buffer a message instead of one each.

    Tile ``i`` sits where the ``misclassified`` row ``i`` says, its caption in the gap below
    it (the last row's gap too, so the picture's bounds hold the captions).
    """
    if len(images) == 0:
        return {"image": [], "x": [], "y": [], "dw": [], "dh": []}
    mosaic = tile_mosaic(
        images, GALLERY_COLUMNS, GALLERY_GAP, GALLERY_CAPTION, below=GALLERY_CAPTION
    )
    height, width = mosaic.shape
    return {
        "image": [np.flipud(mosaic)],
        "x": [0],
        "y": [TILE - height],  # the top row's tile starts at y = 0, as its misclassified row says
        "dw": [width],
        "dh": [height],
    }


def class_figure(
    key: str, title: str, height: int, y_range: Any, tooltips: list, **options: Any
) -> Any:
    """A figure with the classes along x, as the confusion matrix and per-class bars have;
    ``key`` names its class axis (shared by every session, :mod:`viewer.panels.ids`)."""
    return figure(
        title=shared_title(key, title),
        height=height,
        sizing_mode="stretch_width",
        min_width=260,
        x_range=shared(FactorRange, f"{key}-classes", factors=[str(d) for d in range(10)]),
        y_range=y_range,
        toolbar_location=None,
        tools="hover",
        tooltips=tooltips,
        **options,
    )


class EvaluationPanels:
    def __init__(self, look: Look) -> None:
        self.look = look
        self.confusion = named_source("confusion", CONFUSION_COLUMNS)
        self.per_class = named_source("per_class", PER_CLASS_COLUMNS)
        self.misclassified = named_source("misclassified", GALLERY_SOURCE_COLUMNS)
        self.gallery = Picture("misclassified_images", GALLERY_PLACEMENT)
        self.confusion_figure = self._confusion(look)
        self.per_class_figure = self._per_class(look)
        self.gallery_figure = self._gallery(look)

    def _confusion(self, look: Look) -> Any:
        fig = class_figure(
            "confusion",
            f"{CONFUSION}\nno evaluation yet",
            look.plot_height,
            shared(FactorRange, "confusion-true", factors=[str(d) for d in reversed(range(10))]),
            [
                ("true", "@true"),
                ("predicted", "@predicted"),
                ("count", "@count"),
                ("of the row", "@rate{0.0%}"),
            ],
            x_axis_label="predicted",
            y_axis_label="true (each row sums to 1)",
        )
        palette = Blues256 if look.name == "dark" else Blues256[::-1]
        rates = LinearColorMapper(palette=palette, low=0, high=1)
        fig.rect(
            x="predicted",
            y="true",
            width=0.95,
            height=0.95,
            source=self.confusion,
            fill_color={"field": "rate", "transform": rates},
            line_color=None,
        )
        fig.grid.visible = False
        fig.axis.major_tick_line_color = None
        return fig

    def _per_class(self, look: Look) -> Any:
        fig = class_figure(
            "per-class",
            f"{PER_CLASS}\nno evaluation yet",
            look.plot_height,
            Range1d(start=0, end=1.0),
            [("class", "@class_name"), ("accuracy", "@accuracy{0.0%}")],
        )
        fig.vbar(
            x="class_name", top="accuracy", width=0.8, source=self.per_class, color=look.evaluation
        )
        fig.xgrid.visible = False
        return fig

    def _gallery(self, look: Look) -> Any:
        fig = figure(
            title=shared_title("mistakes", f"{MISTAKES}\nno evaluation yet"),
            height=look.plot_height,
            sizing_mode="stretch_width",
            min_width=300,
            x_range=DataRange1d(range_padding=0.02),
            y_range=DataRange1d(range_padding=0.02),
            match_aspect=True,  # digits keep their shape, whatever the panel's width
            toolbar_location=None,
            x_axis_location=None,
            y_axis_location=None,
            tools="",
        )
        ink = Greys256 if look.name == "dark" else Greys256[::-1]
        mapper = LinearColorMapper(palette=ink, low=0.5, high=255, low_color="rgba(0, 0, 0, 0)")
        glyph = Image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper)
        fig.add_glyph(self.gallery.pixels, glyph)
        self.gallery.drawn_in(fig)
        tiles = fig.rect(
            x=dodge("x", TILE / 2),
            y=dodge("y", TILE / 2),
            width=TILE,
            height=TILE,
            source=self.misclassified,
            fill_alpha=0,
            line_alpha=0,
        )
        fig.grid.visible = False
        fig.add_tools(
            HoverTool(renderers=[tiles], tooltips=[("", "@label"), ("test image", "#@index")])
        )
        fig.text(
            x="x",
            y="y",
            text="label",
            source=self.misclassified,
            x_offset=2,
            text_baseline="top",
            text_color=look.wrong,
            text_font_size=look.px(11),
        )
        return fig

    def reset(self) -> None:
        self.confusion.data = {c: [] for c in CONFUSION_COLUMNS}
        self.per_class.data = {c: [] for c in PER_CLASS_COLUMNS}
        self.misclassified.data = {c: [] for c in GALLERY_SOURCE_COLUMNS}
        self.gallery.reset()
        for fig, title in ((self.confusion_figure, CONFUSION), (self.per_class_figure, PER_CLASS),
                           (self.gallery_figure, MISTAKES)):  # fmt: skip
            say_if_empty(fig, title, True, "no evaluation yet")

    def apply(self, piece: dict[str, Any]) -> None:
        names = piece["per_class"]["class_name"]
        confusion_x: Any = self.confusion_figure.x_range
        if list(confusion_x.factors) != names:
            confusion_x.factors = names
            self.confusion_figure.y_range.factors = list(reversed(names))  # type: ignore[attr-defined]
            self.per_class_figure.x_range.factors = names  # type: ignore[attr-defined]
        refresh(self.confusion, piece["confusion"])
        refresh(self.per_class, piece["per_class"])
        self.misclassified.data = piece["misclassified"]
        self.gallery.show(piece["misclassified_images"])
        evaluated = bool(piece["per_class"]["class_name"])
        say_if_empty(self.confusion_figure, CONFUSION, not evaluated, "no evaluation yet")
        say_if_empty(self.per_class_figure, PER_CLASS, not evaluated, "no evaluation yet")
        mistakes = bool(piece["misclassified"][next(iter(piece["misclassified"]))])
        words = "none in the latest evaluation" if evaluated else "no evaluation yet"
        say_if_empty(self.gallery_figure, MISTAKES, not mistakes, words)
