"""The drawing pad: a digit drawn on this laptop or phone, read by the model as it is now.

Each session has its own pad (Bokeh's ``FreehandDrawTool`` on a ``drawing`` source, which works
with a mouse, a finger or a pen) and a Clear button. When a stroke ends, the browser sends the
strokes; the session's server side makes them into a 28x28 digit as MNIST's were made
(:mod:`.raster`), runs the latest published model on it (:mod:`protocol.network`) and shows
the digit as the model sees it, its ten probabilities (``drawing_probabilities``) and which
step's model read it. When new weights arrive the prediction is made again
(:mod:`.room`), so the room sees the answer improve while the network learns.

Nothing here is on the shared broadcast path: the pad's sources change only in its own
session. Its input is bounded (:mod:`.strokes`).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    FactorRange,
    FreehandDrawTool,
    InlineStyleSheet,
    Range1d,
)
from bokeh.models.widgets import Button, Div, RadioButtonGroup, Toggle
from bokeh.plotting import figure

from protocol import ModelWeights
from protocol.network import probabilities
from viewer.drawing import strokes as bounds
from viewer.drawing.raster import SIZE, rasterize
from viewer.panels.digit import class_bars
from viewer.panels.ids import shared
from viewer.panels.looks import Look
from viewer.server.batching import one_message

if TYPE_CHECKING:
    from viewer.drawing.room import Digit, Room

log = logging.getLogger("viewer.drawing")

PROBABILITY_COLUMNS = ("class_name", "probability", "kind")
TITLE = "Draw a digit"
ASK = "Draw a digit: the network reads it as it is this second."

Model = Callable[[], tuple[ModelWeights | str, list[str]]]
"""Where a pad gets the latest model and the class names of the run on show (or why there is
no model)."""


SEEN_CSS = """
:host { margin: 2.2em 0.4em 0 0; }
.seen { width: 6.5em; height: 6.5em; display: block; image-rendering: pixelated;
        border: 1px solid rgba(128, 128, 128, 0.5); }
.what { font-size: 0.85em; opacity: 0.8; margin-top: 0.2em; }
"""


def png_data(image: np.ndarray | None) -> str:
    """A 28x28 digit (white ink on black, as MNIST stores digits) as a PNG data URI."""
    pixels = np.zeros((SIZE, SIZE), np.uint8) if image is None else image
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)  # uint8: "L"
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def seen_html(image: np.ndarray | None, data: str | None = None) -> str:
    """The digit as the network sees it, as a PNG in the page (``data``: its data URI, made
    already): one Div, where a figure would be two dozen models on every page."""
    data = data or png_data(image)
    return (
        f'<img class="seen" alt="the drawing as the network sees it" '
        f'src="{data}"><div class="what">as it sees it</div>'
    )


class Pad:
    """One session's pad, its digit as the model sees it, and the model's reading of it."""

    def __init__(self, look: Look) -> None:
        self.look = look
        size = look.plot_height
        self.strokes = ColumnDataSource({"xs": [], "ys": []}, name="drawing")
        self.figure = figure(
            title=TITLE,
            width=size,
            height=size,
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=0, end=1),
            tools="",
            toolbar_location=None,
            x_axis_location=None,
            y_axis_location=None,
            name="drawing_pad",
        )
        self.figure.grid.visible = False
        self.figure.background_fill_color = look.panel
        lines = self.figure.multi_line(
            "xs",
            "ys",
            source=self.strokes,
            line_width=round(12 * look.scale),
            line_color=look.text,
            line_cap="round",
            line_join="round",
        )
        pen = FreehandDrawTool(renderers=[lines], num_objects=bounds.MAX_STROKES)  # type: ignore[list-item]
        self.figure.add_tools(pen)
        self.figure.toolbar.active_drag = pen
        self.clear = Button(label="Clear", name="drawing_clear", width=90)
        self.seen = Div(
            text=seen_html(None),
            name="drawing_image",
            styles={"flex": "0 0 auto"},
            stylesheets=[InlineStyleSheet(css=SEEN_CSS)],
        )
        self.probabilities = ColumnDataSource(
            {c: [] for c in PROBABILITY_COLUMNS}, name="drawing_probabilities"
        )
        self.classes = FactorRange(factors=[str(d) for d in range(10)])
        self.bars = figure(
            title="It reads",
            height=size,
            x_range=self.classes,
            y_range=Range1d(start=0, end=1.05),
            toolbar_location=None,
            tools="",
            name="drawing_bars",
        )
        class_bars(self.bars, self.probabilities, {"predicted": look.wrong, "other": look.bar})
        self.bars.xgrid.visible = False
        self.caption = Div(text=ASK, name="drawing_caption", sizing_mode="stretch_width")
        self.meant = RadioButtonGroup(
            labels=[str(d) for d in range(10)], active=None, name="drawing_label"
        )
        self.room_words = shared(
            Div, "room-digits", text="", name="room_digits", sizing_mode="stretch_width"
        )
        self.on_wall = Toggle(
            label="Show my drawing on the wall", active=False, name="drawing_wall", width=220
        )
        """Opt in: the presenter's wall of the room's drawings may show this one."""
        """What the room's digits score: the same for every page (drawn by the frames)."""
        self.bars.sizing_mode = "stretch_both"
        self.pad_layout = column(self.figure, sizing_mode="stretch_both")
        """The pad: one cell of the page's grid."""
        self.reading_layout = column(
            row(self.clear, self.caption, sizing_mode="stretch_width"),
            row(self.seen, self.bars, sizing_mode="stretch_both"),
            row(Div(text="I meant:"), self.meant, sizing_mode="stretch_width"),
            self.room_words,
            self.on_wall,
            sizing_mode="stretch_both",
        )
        """What the model reads in the drawing: the cell beside the pad's (below, on a phone)."""
        self.doc: Document | None = None
        self.model: Model = lambda: ("No model to read it with.", [])
        self.read_model: ModelWeights | None = None
        """The model that made the reading on show (None: none on show)."""
        self._redrawn = False
        self._drawing: list[bounds.Stroke] = []
        self._allowance = bounds.Allowance()
        self._read_pending = False
        self.image: np.ndarray | None = None
        """The drawing as the model sees it (None: nothing drawn)."""
        self.png: str | None = None
        """``image`` as a PNG data URI (the page's picture; the wall's too)."""
        self.drawn_at = 0.0
        self.read_as: tuple[str, float] | None = None
        """What the model reads in it: the class's name and its probability."""
        self.room: Room | None = None
        self.digit: Digit | None = None
        """This drawing among the room's digits, once its author said what it is."""

    def attach(self, doc: Document, model: Model) -> None:
        """Serve this pad in ``doc``'s session, reading with ``model``'s latest."""
        self.doc, self.model = doc, model
        self.strokes.on_change("data", self._drawn)
        self.clear.on_click(self.forget)
        self.meant.on_change("active", self._labelled)

    @property
    def drawn(self) -> bool:
        return bool(self._drawing)

    # -- the session's callbacks (under its document lock) ---------------------------------------

    def _drawn(self, _attr: str, _old: Any, new: dict[str, Any]) -> None:
        try:
            drawing = bounds.strokes(new)
        except bounds.DrawingRefused as refused:
            bounds.tally[refused.why] += 1
            log.debug("a drawing was dropped: %s", refused)
            return
        except Exception as exc:  # whatever a browser sent, the session goes on
            bounds.tally["malformed"] += 1
            log.debug("a drawing was dropped: %s: %s", type(exc).__name__, exc)
            return
        before, self._drawing = self._drawing, drawing
        if drawing[: len(before)] != before or len(drawing) <= len(before):
            self.digit = None  # not a stroke added to the drawing: a new drawing, unlabelled
            self.meant.active = None
        self._redrawn = True
        if self._allowance.take(time.monotonic()):
            self.read()
        elif not self._read_pending and self.doc is not None:  # read once the allowance is back
            bounds.tally["rate"] += 1
            self._read_pending = True
            self.doc.add_timeout_callback(self._late_read, round(1000 / bounds.READS_PER_SECOND))

    def _late_read(self) -> None:
        self._read_pending = False
        self._allowance.take(time.monotonic())  # the read it waited for (may dip below one)
        self.read()

    def _labelled(self, _attr: str, _old: Any, label: int | None) -> None:
        if label is None or self.room is None:
            return
        if self.image is None or not 0 <= label < 10:
            self.meant.active = None
            self.caption.text = "Draw a digit first, then say which one it is."
            return
        self.digit = self.room.label(self.image, label, self.digit)

    def forget(self) -> None:
        """Back to the pad as built: no drawing, no reading, no label."""
        self._drawing = []
        self.image = self.digit = self.read_model = self.png = self.read_as = None
        self.meant.active = None
        self.strokes.data = {"xs": [], "ys": []}
        self.seen.text = seen_html(None)
        self.probabilities.data = {c: [] for c in PROBABILITY_COLUMNS}
        self.caption.text = ASK

    def read(self) -> None:
        """Make the drawing into a digit and show what the latest model reads in it (in one
        message to the browser: picture, bars and words change together)."""
        if self.doc is None:
            self._read()
            return
        with one_message(self.doc):
            self._read()

    def _read(self) -> None:
        if self._redrawn or self.image is None:  # a new model alone reads the same picture
            image = rasterize(self._drawing)
            if image is None:
                return
            self.image = image
            if self._redrawn and self.digit is not None and self.room is not None:
                self.digit = self.room.label(image, self.digit.label, self.digit, redrawn=True)
            self._redrawn = False
            self.png, self.drawn_at = png_data(image), time.time()
            self.seen.text = seen_html(image, self.png)
        image = self.image
        model, names = self.model()
        if isinstance(model, str):
            self.read_model = self.read_as = None
            self.caption.text = html.escape(model)
            return
        p = probabilities(model, image[None])[0]  # its layers are views: nothing to keep
        predicted = int(p.argmax())
        names = names if len(names) == len(p) else [str(i) for i in range(len(p))]
        if list(self.classes.factors) != names:  # another dataset's classes
            self.classes.factors = names
        self.probabilities.data = {
            "class_name": names,
            "probability": [round(float(v), 4) for v in p],
            "kind": ["predicted" if i == predicted else "other" for i in range(len(p))],
        }
        self.read_model = model
        self.read_as = (names[predicted], float(p[predicted]))
        self.caption.text = (
            f"The model as of step {model.step:,} reads <b>{html.escape(names[predicted])}</b> "
            f"({p[predicted]:.0%})."
        )
        bounds.tally["read"] += 1

    def refresh(self, model: ModelWeights) -> None:
        """New weights arrived: read the drawing again with them, if there is one."""
        if self._drawing and self.read_model is not model:
            self.read()
