"""Where the network still goes wrong, from the latest evaluation.

Sources ``confusion`` (one cell per true/predicted pair: row-normalised ``rate`` for the
colour, ``count`` for the hover), ``per_class`` (accuracy per true class) and
``misclassified`` (the current mistakes, one row each: where its tile sits, its caption true ->
predicted, its test-set index) with ``misclassified_images`` (all their 28x28 images as one
mosaic, so a frame carries one image rather than a dozen).
"""

from __future__ import annotations

from typing import Any

from bokeh.models import (
    ColumnDataSource,
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

from viewer.history import TILE
from viewer.panels.looks import Look
from viewer.panels.sources import refresh

CONFUSION_COLUMNS = ("true", "predicted", "rate", "count")
PER_CLASS_COLUMNS = ("class_name", "accuracy")
GALLERY_SOURCE_COLUMNS = ("x", "y", "label", "index")
GALLERY_IMAGE_COLUMNS = ("image", "x", "y", "dw", "dh")


class EvaluationPanels:
    def __init__(self, look: Look) -> None:
        self.look = look
        self.confusion = ColumnDataSource({c: [] for c in CONFUSION_COLUMNS}, name="confusion")
        self.per_class = ColumnDataSource({c: [] for c in PER_CLASS_COLUMNS}, name="per_class")
        self.misclassified = ColumnDataSource(
            {c: [] for c in GALLERY_SOURCE_COLUMNS}, name="misclassified"
        )
        self.misclassified_images = ColumnDataSource(
            {c: [] for c in GALLERY_IMAGE_COLUMNS}, name="misclassified_images"
        )
        names = [str(d) for d in range(10)]
        height = look.plot_height
        self.confusion_figure = figure(
            title="Confusion, latest evaluation (rows normalised)",
            height=height,
            sizing_mode="stretch_width",
            min_width=260,
            x_range=FactorRange(factors=list(names)),
            y_range=FactorRange(factors=list(reversed(names))),
            x_axis_label="predicted",
            y_axis_label="true",
            toolbar_location=None,
            tools="hover",
            tooltips=[
                ("true", "@true"),
                ("predicted", "@predicted"),
                ("count", "@count"),
                ("of the row", "@rate{0.0%}"),
            ],
        )
        palette = Blues256 if look.name == "dark" else Blues256[::-1]
        rates = LinearColorMapper(palette=palette, low=0, high=1)
        self.confusion_figure.rect(
            x="predicted",
            y="true",
            width=0.95,
            height=0.95,
            source=self.confusion,
            fill_color={"field": "rate", "transform": rates},
            line_color=None,
        )
        self.confusion_figure.grid.visible = False
        self.confusion_figure.axis.major_tick_line_color = None

        self.per_class_figure = figure(
            title="Accuracy per class",
            height=height,
            sizing_mode="stretch_width",
            min_width=260,
            x_range=FactorRange(factors=list(names)),
            y_range=Range1d(start=0, end=1.0),
            toolbar_location=None,
            tools="hover",
            tooltips=[("class", "@class_name"), ("accuracy", "@accuracy{0.0%}")],
        )
        self.per_class_figure.vbar(
            x="class_name", top="accuracy", width=0.8, source=self.per_class, color=look.evaluation
        )
        self.per_class_figure.xgrid.visible = False

        self.gallery_figure = figure(
            title="Current mistakes (true \N{RIGHTWARDS ARROW} predicted)",
            height=height,
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
        self.gallery_figure.add_glyph(self.misclassified_images, glyph)
        tiles = self.gallery_figure.rect(
            x=dodge("x", TILE / 2),
            y=dodge("y", TILE / 2),
            width=TILE,
            height=TILE,
            source=self.misclassified,
            fill_alpha=0,
            line_alpha=0,
        )
        self.gallery_figure.grid.visible = False
        self.gallery_figure.add_tools(
            HoverTool(renderers=[tiles], tooltips=[("", "@label"), ("test image", "#@index")])
        )
        self.gallery_figure.text(
            x="x",
            y="y",
            text="label",
            source=self.misclassified,
            x_offset=2,
            text_baseline="top",
            text_color=look.wrong,
            text_font_size=look.px(11),
        )

    def reset(self) -> None:
        self.confusion.data = {c: [] for c in CONFUSION_COLUMNS}
        self.per_class.data = {c: [] for c in PER_CLASS_COLUMNS}
        self.misclassified.data = {c: [] for c in GALLERY_SOURCE_COLUMNS}
        self.misclassified_images.data = {c: [] for c in GALLERY_IMAGE_COLUMNS}

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
        self.misclassified_images.data = piece["misclassified_images"]
