"""The test digit the network is looking at, and its predicted probabilities.

Sources ``sample`` (its caption, true and predicted label), ``sample_image`` (its 28x28 image,
as a wire source: :mod:`viewer.panels.pictures`) and ``probabilities``
(one bar per class, coloured by ``kind``: the true class, the predicted one if it is wrong,
or neither; ``mark`` names them above the bars). :func:`render` makes all three from the run's
latest sample, once per sample for every session.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import FactorRange, Image, LinearColorMapper, Range1d
from bokeh.palettes import Greys256
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from viewer.panels.assign import refresh, same_list
from viewer.panels.ids import named_source, shared
from viewer.panels.images import image_figure, say_if_empty, shared_title
from viewer.panels.looks import Look
from viewer.panels.pictures import Picture, PictureStream, empty
from viewer.runs.state import RunHistory

PART = "sample"
SEES = "What the network sees"
SAMPLE_COLUMNS = ("caption", "label", "predicted", "index", "step")
PROBABILITY_COLUMNS = ("class_name", "probability", "kind", "mark")


def render(run: RunHistory) -> dict[str, Any]:
    """The latest sample as the ``sample`` and ``probabilities`` sources' columns."""
    s = run.sample
    if s is None:
        return {
            "sample": {c: [] for c in SAMPLE_COLUMNS},
            "sample_image": empty(),
            "probabilities": {c: [] for c in PROBABILITY_COLUMNS},
        }
    names = run.class_names(len(s.probabilities))
    predicted = s.predicted
    marks = [""] * len(names)
    marks[predicted] = "predicted"
    marks[s.label] = "true" if predicted != s.label else "true \N{CHECK MARK}"
    verdict = "\N{CHECK MARK}" if predicted == s.label else "\N{BALLOT X}"
    caption = f"#{s.index}: true {names[s.label]}, predicted {names[predicted]} {verdict}"
    return {
        "sample": {
            "caption": [caption],
            "label": [names[s.label]],
            "predicted": [names[predicted]],
            "index": [s.index],
            "step": [s.step],
        },
        "sample_image": run.pictures.setdefault(PART, PictureStream()).update(
            np.flipud(s.image), s.sent_at
        ),
        "probabilities": {
            "class_name": same_list(tuple(names)),
            "probability": [round(p, 4) for p in s.probabilities],  # more than the bars show
            "kind": same_list(
                tuple(
                    "true" if i == s.label else "predicted" if i == predicted else "other"
                    for i in range(len(names))
                )
            ),
            "mark": same_list(tuple(marks)),
        },
    }


def class_bars(fig: Any, source: Any, colours: dict[str, str]) -> None:
    """One bar per class of ``source`` (columns ``class_name``, ``probability``, ``kind``),
    coloured by its kind: the network's probabilities, for the test digit or a drawn one."""
    fig.vbar(
        x="class_name",
        top="probability",
        width=0.8,
        source=source,
        color=factor_cmap("kind", palette=list(colours.values()), factors=list(colours)),
    )


class Digit:
    def __init__(self, look: Look) -> None:
        self.sample = named_source("sample", SAMPLE_COLUMNS)
        self.picture = Picture("sample_image")
        self.probabilities = named_source("probabilities", PROBABILITY_COLUMNS)
        size = look.plot_height
        self.image_figure = image_figure(
            shared_title("digit", f"{SEES}\nno sample yet"),
            size,
            x_range=Range1d(start=0, end=28),
            y_range=Range1d(start=-4, end=28),
        )
        dark_ink = Greys256 if look.name == "dark" else Greys256[::-1]
        mapper = LinearColorMapper(palette=dark_ink, low=0, high=255)
        glyph = Image(image="image", x=0, y=0, dw=28, dh=28, color_mapper=mapper)
        self.image_figure.add_glyph(self.picture.pixels, glyph)
        self.picture.drawn_in(self.image_figure)
        self.image_figure.text(
            x=14,
            y=-0.5,
            text="caption",
            source=self.sample,
            text_align="center",
            text_baseline="top",
            text_color=look.text,
            text_font_size=look.px(13),
        )
        self.bars = figure(
            title="Predicted probabilities",
            height=size,
            sizing_mode="stretch_width",
            min_width=280,
            x_range=shared(FactorRange, "probability-classes", factors=[str(d) for d in range(10)]),
            y_range=Range1d(start=0, end=1.15),
            toolbar_location=None,
            tools="hover",
            tooltips=[("class", "@class_name"), ("p", "@probability{0.000}"), ("", "@mark")],
        )
        class_bars(
            self.bars,
            self.probabilities,
            {"true": look.true_class, "predicted": look.wrong, "other": look.bar},
        )
        self.bars.text(
            x="class_name",
            y="probability",
            text="mark",
            source=self.probabilities,
            text_align="center",
            text_baseline="bottom",
            y_offset=-4,
            text_color=look.text,
            text_font_size=look.px(12),
        )
        self.bars.xgrid.visible = False

    def reset(self, run: RunHistory | None) -> None:
        self.sample.data = {c: [] for c in SAMPLE_COLUMNS}
        self.picture.reset()
        self.probabilities.data = {c: [] for c in PROBABILITY_COLUMNS}
        pending = run.pictures_pending() if run is not None else None
        say_if_empty(self.image_figure, SEES, True, pending or "no sample yet")

    def apply(self, piece: dict[str, Any]) -> None:
        names = piece["probabilities"]["class_name"]
        factors: Any = self.bars.x_range
        if names and list(factors.factors) != names:
            factors.factors = names
        self.sample.data = piece["sample"]
        self.picture.show(piece["sample_image"])
        say_if_empty(self.image_figure, SEES, not piece["sample"]["caption"], "no sample yet")
        refresh(self.probabilities, piece["probabilities"])
