"""Light and dark looks, and large type for projectors: colours, Bokeh themes, page CSS.

A look is chosen per session (``?theme=dark``, ``?large=1``, ``?tools=1`` for the plots'
toolbars; defaults from the viewer's settings) and applied three ways: a Bokeh
:class:`Theme` for plots, CSS variables for the page template, and a stylesheet for the
header (Bokeh 3 draws widgets in shadow DOM, so page CSS cannot reach inside them).
"""

from __future__ import annotations

from dataclasses import dataclass

from bokeh.document import Document
from bokeh.model import Model
from bokeh.models import CustomJS
from bokeh.themes import Theme

from viewer.server.settings import THEMES, ViewerSettings


@dataclass(frozen=True)
class Look:
    name: str
    large: bool
    page: str
    panel: str
    text: str
    muted: str
    grid: str
    ink: str
    evaluation: str
    test: str
    previous: str
    true_class: str
    wrong: str
    bar: str
    synthetic: str
    tools: bool = False
    """The plots' toolbars (``?tools=1``): hidden by default, a room watches rather than
    explores, and a projected toolbar is noise."""

    @property
    def scale(self) -> float:
        return 1.5 if self.large else 1.0

    @property
    def plot_height(self) -> int:
        return round(260 * self.scale)

    def vw(self, size: float) -> str:
        """``size`` px at 1920 px wide, growing with a wider screen (never below ``size``)."""
        scaled = size * self.scale
        return f"max({scaled:g}px, {scaled / 19.2:.3f}vw)"

    def px(self, size: float) -> str:
        return f"{round(size * self.scale)}px"

    def widget_css(self) -> list[str]:
        """Buttons and sliders in this look's colours (Bokeh's own are light on any page)."""
        if self.name != "dark":
            return []
        return [
            f""":host {{ color: {self.text}; }}
.bk-btn-default {{ background-color: {self.panel}; color: {self.text}; border-color: {self.grid}; }}
.bk-btn-default:hover {{ background-color: {self.grid}; }}
.bk-btn-default.bk-active {{ background-color: {self.bar}; border-color: {self.ink}; }}"""
        ]

    def theme(self) -> Theme:
        widgets = {"stylesheets": self.widget_css()}
        return Theme(
            json={
                "attrs": {
                    "AbstractButton": widgets,
                    "ToggleButtonGroup": widgets,  # the pad's "I meant", a replay's speeds
                    "AbstractSlider": widgets,
                    "Plot": {
                        "background_fill_color": self.panel,
                        "border_fill_color": self.page,
                        "outline_line_color": None,
                    },
                    "Title": {"text_font_size": self.px(15), "text_color": self.text},
                    "Axis": {
                        "axis_line_color": self.muted,
                        "major_tick_line_color": self.muted,
                        "minor_tick_line_color": None,
                        "major_label_text_color": self.muted,
                        "major_label_text_font_size": self.px(12),
                        "axis_label_text_font_style": "normal",
                        "axis_label_text_color": self.muted,
                        "axis_label_text_font_size": self.px(13),
                    },
                    "Grid": {"grid_line_color": self.grid},
                    "Legend": {
                        "background_fill_color": self.panel,
                        "background_fill_alpha": 0.7,
                        "border_line_color": None,
                        "label_text_color": self.text,
                        "label_text_font_size": self.px(12),
                    },
                    "ColorBar": {
                        "background_fill_color": self.page,
                        "major_label_text_color": self.muted,
                    },
                }
            }
        )

    def template_variables(self) -> dict[str, str]:
        return {
            "page_background": self.page,
            "page_text": self.text,
            "page_font_size": self.vw(15),
            "widget_font_size": WIDGET_FONT,
            "look": f"{self.name}{' large' if self.large else ''}",
        }

    def header_css(self) -> str:
        return f"""
:host {{ color: {self.text}; font-size: {self.vw(15)}; }}
h1 {{ font-size: {self.vw(26)}; margin: 0.4em 0 0.2em; font-weight: 600; }}
.status {{ font-weight: 700; text-transform: uppercase; letter-spacing: 0.05em; }}
.status.training {{ color: {self.evaluation}; }}
.status.paused, .status.waiting, .status.replay {{ color: {self.synthetic}; }}
.status.stopped, .status.diverged {{ color: {self.wrong}; }}
.session .silent {{ color: {self.wrong}; font-weight: bold; }}
.synthetic {{ color: {self.synthetic}; font-weight: 700; }}
.progress {{ margin-top: 0.2em; }}
.bar {{ display: inline-block; width: 12em; height: 0.7em; margin-left: 0.5em;
        background: {self.grid}; border-radius: 0.35em; overflow: hidden; vertical-align: middle; }}
.bar span {{ display: block; height: 100%; background: {self.ink}; }}
.session, .run-id, .session a {{ color: {self.muted}; }}
.note {{ color: {self.muted}; margin-top: 0.2em; }}
"""


PALETTE = (
    # role          light      dark
    ("page",        "#fafafa", "#15171c"),
    ("panel",       "#ffffff", "#1d2027"),
    ("text",        "#222222", "#e6e6e6"),
    ("muted",       "#666666", "#a0a4ad"),
    ("grid",        "#e8e8e8", "#2c313a"),
    ("ink",         "#1f77b4", "#5aa9e6"),
    ("evaluation",  "#2ca02c", "#6cd47a"),
    ("test",        "#9467bd", "#c59cf5"),
    ("previous",    "#999999", "#6b707a"),
    ("true_class",  "#2ca02c", "#6cd47a"),
    ("wrong",       "#d62728", "#ff6b6b"),
    ("bar",         "#9ecae1", "#3d5a80"),
    ("synthetic",   "#d9822b", "#ffb347"),
)  # fmt: skip
"""Each colour of a look, in the light and the dark theme."""
LOOKS: dict[str, dict[str, str]] = {
    theme: {role: colours[i] for role, *colours in PALETTE} for i, theme in enumerate(THEMES)
}


WIDGET_FONT = f"max(13px, {13 / 19.2:.3f}vw)"
"""Buttons' and sliders' text (Bokeh's ``--bokeh-font-size``, which reaches into their shadow
DOM): 13 px up to 1920 px wide, in proportion beyond, as :data:`SCALE_TEXT_JS` widens them."""

SCALE_TEXT_JS = """
// A screen wider than 1920 px gets the plots' text in proportion, as the page's own text
// grows with it (the template's CSS): canvas text is sized by these properties, not by CSS.
// Widgets' text grows by CSS (WIDGET_FONT); their fixed widths grow here to hold it.
const k = Math.min(3, window.innerWidth / 1920);
if (k > 1.05) {
  for (const widget of widgets) {
    if (typeof widget.width === "number") {
      widget.setv({width: Math.round(widget.width * k)}, {sync: false});
    }
  }
  const props = ["text_font_size", "major_label_text_font_size", "axis_label_text_font_size",
                 "label_text_font_size"];
  for (const model of models) {
    for (const prop of props) {
      const value = model.properties[prop] == null ? null : model[prop];
      const size = typeof value === "string" ? value : (value && value.value);
      if (typeof size === "string" && size.endsWith("px")) {
        const scaled = `${Math.round(parseFloat(size) * k)}px`;
        model.setv({[prop]: typeof value === "string" ? scaled : {value: scaled}}, {sync: false});
      }
    }
  }
  // A plot measures its title when it lays itself out, and a font size alone does not make it
  // do so again (a figure without axes would cut the larger title off at the top): a border
  // set to the value it already stands for (null means min_border) does.
  for (const plot of plots) {
    if (plot.min_border_top == null) {
      plot.setv({min_border_top: plot.min_border ?? 5}, {sync: false});
    }
  }
}
"""


def fullscreen(background: str, more: dict[str, str] | None = None) -> dict[str, str]:
    """The styles of an overlay over the whole page (the QR code, the wall of drawings),
    and ``more`` of them."""
    return {
        "position": "fixed", "inset": "0", "z-index": "1000", "overflow": "auto",
        "background": background, "padding": "2vh 2vw", **(more or {}),
    }  # fmt: skip


def text_scaler(models: list[Model], widgets: list[Model], plots: list[Model]) -> CustomJS:
    """What makes ``models``' text (titles, axes, legends, text glyphs) and ``widgets``' widths
    grow on a screen wider than 1080p, and ``plots`` lay out again to fit it; client-side only
    (run on ``document_ready``)."""
    return CustomJS(args={"models": models, "widgets": widgets, "plots": plots}, code=SCALE_TEXT_JS)


def look(theme: str, large: bool, tools: bool = False) -> Look:
    return Look(name=theme, large=large, tools=tools, **LOOKS[theme])


def session_look(doc: Document, settings: ViewerSettings) -> Look:
    """The look this session asked for in its URL, else the viewer's defaults."""
    arguments = _arguments(doc)
    theme = arguments.get("theme", settings.theme)
    large = arguments.get("large")
    return look(
        theme if theme in THEMES else settings.theme,
        settings.large if large is None else _yes(large),
        _yes(arguments.get("tools", "")),
    )


def _yes(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _arguments(doc: Document) -> dict[str, str]:
    context = doc.session_context
    request = getattr(context, "request", None)
    if request is None:
        return {}
    return {
        name: bytes(values[0]).decode(errors="replace")
        for name, values in request.arguments.items()
        if values
    }
