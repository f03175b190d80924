"""Playback controls for a replayed recording: play/pause, speed, and a time slider over the run.

The clock they drive belongs to the process (:class:`viewer.sources.playback.ReplayHub`), so every
session of it shows the same moment and a room follows whoever holds the controls. Who does
is decided once per session: every session when the viewer serves only this machine, else only
the presenter's URL; every callback checks it again on the server, since hidden widgets are no
protection. Sessions without controls get the position as a line of text. The widgets follow
the clock on the dashboard's frame tick, changed only when what they show changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import LayoutDOM
from bokeh.models.widgets import Div, RadioButtonGroup, Slider, Toggle

from protocol.cli.durations import format_duration
from viewer.runs.state import RunHistory
from viewer.sources.playback import SPEEDS, ReplayHub

log = logging.getLogger("viewer")


def speed_label(speed: float) -> str:
    return f"{speed:g}x"


class PlaybackControls:
    """One session's view of the process's playback; ``allowed`` says if it may change it."""

    def __init__(self, hub: ReplayHub, allowed: Callable[[], bool], interactive: bool) -> None:
        self.hub = hub
        self.allowed = allowed
        self.interactive = interactive
        self.shown: tuple[bool, str, float, float] | None = None
        self.duration_text = format_duration(hub.duration)  # a recording's length never changes
        self.position_text = Div(text="", name="playback_position", styles={"margin": "6px 8px"})
        # A toggle, not a button: its state is the clock's, so every session shows it.
        self.play = Toggle(label="Play", name="play", button_type="success", width=80)
        self.speed = RadioButtonGroup(
            labels=[speed_label(s) for s in SPEEDS], active=0, name="speed", width=260
        )
        duration = max(hub.duration, 0.1)
        self.position = Slider(
            start=0,
            end=duration,
            value=0,
            step=1.0 if duration >= 60 else 0.1,
            show_value=False,
            title=None,
            name="position",
            sizing_mode="stretch_width",
            min_width=200,
        )
        self.layout: LayoutDOM
        if interactive:
            self.play.on_change("active", self._play_changed)
            self.speed.on_change("active", self._speed_changed)
            self.position.on_change("value_throttled", self._scrubbed)
            self.layout = row(
                self.play,
                self.speed,
                self.position,
                self.position_text,
                name="playback",
                sizing_mode="stretch_width",
            )
        else:
            self.layout = column(self.position_text, name="playback")
        self.refresh(None)

    # -- callbacks (checked on the server) -------------------------------------------------------

    def _authorised(self, action: str) -> bool:
        if self.allowed():
            return True
        log.warning("refused playback %s from a session without the presenter token", action)
        return False

    def _play_changed(self, _attr: str, _old: Any, new: Any) -> None:
        """Also called when :meth:`refresh` shows the clock's state: then it changes nothing."""
        if not self._authorised("play/pause"):
            return
        if new:
            self.hub.play()  # from the end: from the start again
        else:
            self.hub.pause()
        self.refresh(None)

    def _speed_changed(self, _attr: str, _old: Any, new: Any) -> None:
        if not self._authorised("speed"):
            return
        try:
            self.hub.set_speed(SPEEDS[int(new)])
        except (TypeError, ValueError, IndexError):
            return
        self.refresh(None)

    def _scrubbed(self, _attr: str, _old: Any, new: Any) -> None:
        if not self._authorised("seek"):
            return
        try:
            position = float(new)
        except (TypeError, ValueError):
            return
        self.hub.seek(position)
        self.refresh(None)

    # -- the frame tick -------------------------------------------------------------------------

    def refresh(self, run: RunHistory | None) -> None:
        """Show the clock as it is now; touches a widget only when what it shows changed."""
        playing, position, speed = self.hub.state()
        text = f"{format_duration(position)} / {self.duration_text}"
        value = round(position / self.position.step) * self.position.step
        shown = (playing, text, speed, value)
        if shown == self.shown:
            return
        old = self.shown or (None, None, None, None)
        self.shown = shown
        if text != old[1] or speed != old[2] or playing != old[0]:
            state = "playing" if playing else "paused"
            self.position_text.text = f"replay {state} at {speed_label(speed)} &middot; {text}"
        if not self.interactive:
            return
        if playing != old[0]:
            self.play.label = "Pause" if playing else "Play"
            self.play.button_type = "warning" if playing else "success"
            if self.play.active != playing:
                self.play.active = playing
        if speed != old[2] and speed in SPEEDS and self.speed.active != SPEEDS.index(speed):
            self.speed.active = SPEEDS.index(speed)
        if value != old[3]:
            self.position.value = min(value, self.position.end)
