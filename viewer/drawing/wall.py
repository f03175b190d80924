"""The wall: the room's latest drawings with what the model reads in each, for the presenter.

Only drawings whose authors opted in ("Show my drawing on the wall" under their pad) appear,
newest first, at most :data:`WALL_SIZE`; a closed page takes its drawing with it. The wall is a
full-screen overlay on the presenter's page (the projector), one Div of small PNGs redrawn at
most once a second while it is open, and only when a tile changed. Each viewer process has its
own room, so with ``--num-procs`` the wall shows the drawings of the presenter's process.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from bokeh.layouts import column
from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Button, Div

from viewer.drawing.room import Room
from viewer.panels.looks import Look, fullscreen

WALL_SIZE = 24
"""Drawings on the wall at most: a projected grid still readable from the back."""
EMPTY = (
    "No drawing on the wall yet: under the pad, each person can press "
    "<b>Show my drawing on the wall</b>."
)


@dataclass(frozen=True)
class Tile:
    png: str
    reads: str | None
    probability: float


def tiles(room: Room, limit: int = WALL_SIZE) -> list[Tile]:
    """The opted-in drawings of the room's pads, newest first."""
    shown = [p for p in room.pads if p.on_wall.active and p.png is not None]
    shown.sort(key=lambda p: p.drawn_at, reverse=True)
    return [
        Tile(p.png, p.read_as[0] if p.read_as else None, p.read_as[1] if p.read_as else 0.0)  # type: ignore[arg-type]
        for p in shown[:limit]
    ]


def wall_html(shown: list[Tile], step: int | None) -> str:
    model = f"the model as of step {step:,}" if step is not None else "no model yet"
    head = f"<h2>The room's drawings ({len(shown)}), read by {model}</h2>"
    if not shown:
        return f'{head}<p class="empty">{EMPTY}</p>'
    cells = "".join(
        f'<figure><img src="{tile.png}" alt="a drawing"><figcaption>'
        + (
            f"reads <b>{html.escape(tile.reads)}</b> {tile.probability:.0%}"
            if tile.reads is not None
            else "not read yet"
        )
        + "</figcaption></figure>"
        for tile in shown
    )
    return f'{head}<div class="tiles">{cells}</div>'


class Wall:
    """The presenter's button that opens the wall, and the wall itself."""

    def __init__(self, look: Look, room: Room, authorised: Callable[[str], bool]) -> None:
        self.room, self.authorised = room, authorised
        self.button = Button(label="Wall of drawings", name="show_wall", width=140)
        self.tiles = Div(
            text="", name="wall_tiles", sizing_mode="stretch_width",
            stylesheets=[InlineStyleSheet(css=self._css(look))],
        )  # fmt: skip
        self.close = Button(label="Close", name="close_wall", width=120)
        self.overlay = column(
            self.tiles,
            self.close,
            name="wall_overlay",
            visible=False,
            sizing_mode="stretch_width",
            styles=fullscreen(look.page),
        )
        self.button.on_click(lambda _event: self.show(True))
        self.close.on_click(lambda _event: self.show(False))

    @staticmethod
    def _css(look: Look) -> str:
        return f"""
:host {{ color: {look.text}; font-size: {look.vw(18)}; }}
h2 {{ margin: 0 0 0.6em; font-weight: 600; }}
.tiles {{ display: grid; gap: 1.2vw; grid-template-columns: repeat(auto-fill, minmax(9em, 1fr)); }}
figure {{ margin: 0; text-align: center; }}
img {{ width: 100%; aspect-ratio: 1; image-rendering: pixelated; border-radius: 0.3em; }}
figcaption {{ margin-top: 0.3em; }}
.empty {{ color: {look.muted}; }}
"""

    def show(self, visible: bool) -> None:
        if not self.authorised("show_wall"):
            return
        self.overlay.visible = visible
        if visible:
            self.refresh()

    def refresh(self) -> None:
        """Redraw the open wall when a tile changed (a periodic callback of the session)."""
        if not self.overlay.visible:
            return
        model = self.room.model
        text = wall_html(tiles(self.room), model.step if model is not None else None)
        if text != self.tiles.text:
            self.tiles.text = text
