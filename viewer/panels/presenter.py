"""The presenter's controls: Start, Pause, Resume, Stop, a pace slider, the learning rate and
momentum (applied by the trainer from its next step), and a full-screen QR code.

Only a session whose URL carried ``?token=<presenter token>`` gets them, and every callback
checks that again on the server before it acts, so hiding widgets is never the protection.
Commands travel as the broker's ``control`` request on its snapshot endpoint (the same channel
as ``mnist-live control``); the broker relays them upstream to the trainers. The request runs
on a worker thread, so a missing broker never stalls the server's event loop: its answer comes
back as a line under the buttons.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import LayoutDOM
from bokeh.models.widgets import Button, Div, NumericInput, Slider
from pydantic import ValidationError

from broker.clients.control_cli import describe
from broker.clients.request import ask
from protocol import ControlCommand
from protocol.codec import first_error
from protocol.errors import CommandError
from protocol.messages import MAX_LEARNING_RATE
from protocol.snapshot import ControlRequest
from viewer.panels import qr
from viewer.panels.looks import fullscreen
from viewer.server.settings import ViewerSettings

if TYPE_CHECKING:
    from viewer.runs.state import RunHistory
    from viewer.sources.live import Hub

log = logging.getLogger("viewer")

ButtonType = Literal["success", "warning", "primary", "danger"]

COMMAND_TIMEOUT = 2.0
"""Seconds to wait for the broker's acknowledgement of a command."""
PACE_MAX = 200
"""The pace slider's top, in steps per second; 0 on the slider lifts the limit."""
PACE_ANSWER_SECONDS = 3.0
"""How long the slider stays where the presenter put it before it shows the trainer's pace
again (the trainer answers a pace command with its new status within a second)."""
ACTIVE = ("waiting", "training", "paused", "replay")
"""Run statuses a trainer (or a replay) can still be commanded in."""

BUTTONS: tuple[tuple[str, ButtonType], ...] = (
    ("start", "success"),
    ("pause", "warning"),
    ("resume", "primary"),
    ("stop", "danger"),
)

TUNING_NAMES = ("learning_rate", "momentum", "set")
CONTROL_NAMES = frozenset(
    {*(name for name, _ in BUTTONS), "pace", *TUNING_NAMES, "show_qr", "close_qr"}
    | {"show_wall", "close_wall"}  # the wall of drawings (viewer.drawing.wall)
)

_audience_url: str | None = None


def set_audience_url(url: str | None) -> None:
    """The URL the room should open (set by ``mnist-live view`` from its LAN address)."""
    global _audience_url
    _audience_url = url


def _request(doc: Document) -> Any:
    """The HTTP request that opened this session (None outside a server)."""
    return getattr(doc.session_context, "request", None)


def _request_arguments(doc: Document) -> dict[str, list[bytes]]:
    request = _request(doc)
    return dict(request.arguments) if request is not None else {}


def is_presenter(doc: Document, settings: ViewerSettings) -> bool:
    """True only when this session's URL carried the presenter token (constant-time compare)."""
    if not settings.presenter_token:
        return False
    values = _request_arguments(doc).get("token") or []
    expected = settings.presenter_token.encode()
    return len(values) == 1 and hmac.compare_digest(_as_bytes(values[0]), expected)


def _as_bytes(value: bytes | str) -> bytes:
    """Arguments arrive as bytes from tornado, as text from a browser session's token."""
    return value.encode() if isinstance(value, str) else bytes(value)


def guard_audience(doc: Document, settings: ViewerSettings) -> None:
    """Log what an audience session sends at presenter controls it does not have.

    Nothing there could act (its document holds no control callbacks); this makes an attempt
    visible. Called from ``on_session_created``, before the session's document is built.
    """
    if is_presenter(doc, settings):
        return

    def refuse_event(event: Any) -> None:
        model = getattr(event, "model", None)
        if model is None:
            return
        if model.name in CONTROL_NAMES or doc.get_model_by_id(model.id) is None:
            target = model.name or model.id
            log.warning("refused %s on %s from an audience session", event.event_name, target)

    def refuse_change(event: Any) -> None:
        if getattr(event, "setter", None) is None:  # the server's own change: most of them
            return
        name = getattr(getattr(event, "model", None), "name", None)
        if name in CONTROL_NAMES:
            log.warning("refused a change to %s from an audience session", name)

    doc.callbacks.on_message("bokeh_event", refuse_event)
    doc.on_change(refuse_change)


def only_this_machine(url: str) -> str | None:
    """What to tell the presenter when ``url`` (the audience's) names this machine's loopback:
    no laptop in the room can open it."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        loopback = host == "localhost" or host.endswith(".localhost")
    if not loopback:
        return None
    return (
        f"{host} is this machine only: the room cannot open this address. Serve the page to "
        "the network with 'mnist-live view --address 0.0.0.0' (or 'demo --address 0.0.0.0')."
    )


def audience_url(doc: Document) -> str:
    """The page's URL without the token: what the QR code shows the room."""
    if _audience_url:
        return _audience_url
    request = _request(doc)
    headers: dict[str, Any] = dict(request.headers) if request is not None else {}
    host = headers.get("Host") or headers.get("host") or "localhost:5006"
    if isinstance(host, list):
        host = host[0]
    arguments = {
        name: _as_bytes(values[0]).decode(errors="replace")
        for name, values in _request_arguments(doc).items()
        if name in ("theme", "large") and values
    }
    query = f"?{urlencode(arguments)}" if arguments else ""
    return f"http://{host}/{query}"


class PresenterControls:
    """The presenter's widgets for one session; build it only when :func:`is_presenter` holds."""

    def __init__(
        self,
        doc: Document,
        settings: ViewerSettings,
        hub: Hub | None,
        more: Sequence[LayoutDOM] = (),
        overlays: Sequence[LayoutDOM] = (),
    ) -> None:
        """``more``: further presenter widgets, after Show QR (the wall of drawings' button);
        ``overlays``: what they open (the wall)."""
        self.doc = doc
        self.settings = settings
        self.hub = hub
        self.run_id = "*"
        self.status: str | None = "unknown"  # so the first refresh sets every button
        self.buttons = {
            name: Button(label=name.capitalize(), name=name, button_type=kind, width=90)
            for name, kind in BUTTONS
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _event, name=name: self.command(name))
        self.pace = Slider(
            start=0,
            end=PACE_MAX,
            step=1,
            value=0,
            title="Pace (steps/s, 0 = full speed)",
            name="pace",
            width=220,
        )
        self.pace.on_change("value_throttled", self._pace_changed)
        self.pace.on_change("value", self._pace_moving)
        self._pace_moved_until = 0.0
        self._showing = False
        self.learning_rate = NumericInput(
            title="Learning rate", mode="float", low=0, high=MAX_LEARNING_RATE, format="0.[00000]",
            name="learning_rate", width=110,
        )  # fmt: skip
        self.momentum = NumericInput(
            title="Momentum", mode="float", low=0, high=0.999, format="0.[000]", name="momentum",
            width=90,
        )  # fmt: skip
        self.set_button = Button(label="Set", name="set", button_type="primary", width=60)
        self.set_button.on_click(lambda _event: self._set_clicked())
        self._tuning_shown: tuple[str, int] | None = None
        self.shown: RunHistory | None = None
        """The run on this page (pinned, or the newest): the one Set changes."""
        self.show_qr = Button(label="Show QR", name="show_qr", width=90)
        self.show_qr.on_click(lambda _event: self.toggle_qr(True))
        self.feedback = Div(text="", name="control_feedback")
        self.qr_image = Div(text="", name="qr_image")
        self.close_qr = Button(label="Close", name="close_qr", width=120)
        self.close_qr.on_click(lambda _event: self.toggle_qr(False))
        self.overlay = column(
            self.qr_image,
            self.close_qr,
            name="qr_overlay",
            visible=False,
            styles=fullscreen("white", {"align-items": "center", "justify-content": "center"}),
        )
        self.feedback.text = html.escape(only_this_machine(audience_url(doc)) or "")
        self.layout: LayoutDOM = column(
            row(*self.buttons.values(), self.pace, self.show_qr, *more),
            row(self.learning_rate, self.momentum, self.set_button),
            self.feedback,
            self.overlay,
            *overlays,
            name="presenter_controls",
        )
        self.refresh(None)

    def authorised(self, action: str) -> bool:
        """The server-side check behind every callback: hidden widgets are not protection."""
        if is_presenter(self.doc, self.settings):
            return True
        log.warning("refused %s from a session without the presenter token", action)
        return False

    def refresh(self, run: RunHistory | None) -> None:
        """Enable the buttons that make sense for the shown run, and show its pace (called
        every frame): Start only while a trainer waits for it, nothing without a live run."""
        self._show_pace(run)
        self._show_tuning(run)
        self.shown = run
        status = run.status if run is not None else None
        run_id = run.run_id if run is not None and status in ACTIVE else "*"
        if status == self.status and run_id == self.run_id:
            return
        self.status, self.run_id = status, run_id
        live = status in ACTIVE
        enabled = {
            "start": status == "waiting",
            "pause": status in ("training", "replay"),
            "resume": status == "paused",
            "stop": live,
        }
        for name, button in self.buttons.items():
            if button.disabled == enabled[name]:
                button.disabled = not enabled[name]
        tunable = status in ("waiting", "training", "paused") and not (run and run.replayed)
        for widget in (self.learning_rate, self.set_button):
            if widget.disabled == tunable:
                widget.disabled = not tunable
        has_momentum = tunable and self._tuning(run)[1] is not None
        if self.momentum.disabled == has_momentum:
            self.momentum.disabled = not has_momentum

    @staticmethod
    def _tuning(run: RunHistory | None) -> tuple[float | None, float | None]:
        """The shown run's base learning rate and momentum now (momentum None: sgd has none)."""
        now = run.hyperparameters_now() if run is not None else None
        return now or (None, None)

    def _show_tuning(self, run: RunHistory | None) -> None:
        """The inputs at the run's values when a run begins and after each change it announces
        (in between, they keep what the presenter types)."""
        shown = (run.run_id, len(run.tunings)) if run is not None else None
        if shown == self._tuning_shown:
            return
        self._tuning_shown = shown
        self.learning_rate.value, self.momentum.value = self._tuning(run)

    def _set_clicked(self) -> None:
        """Send what the presenter changed in the inputs (only that: an unchanged momentum is
        not sent again, nor one to an optimizer without it)."""
        learning_rate, momentum = self._tuning(self.shown)  # the run the inputs show
        wanted = {"learning_rate": self.learning_rate.value, "momentum": self.momentum.value}
        now = {"learning_rate": learning_rate, "momentum": momentum}
        values = {
            name: value
            for name, value in wanted.items()
            if value is not None and now[name] is not None and value != now[name]
        }
        if not values:
            self._show("set: nothing changed (type a new learning rate or momentum)")
            return
        self.command("set", **values)

    def _show_pace(self, run: RunHistory | None) -> None:
        """The slider at the trainer's own pace (0: full speed), unless the presenter is
        moving it, or moved it a moment ago and the trainer has not answered yet."""
        if time.monotonic() < self._pace_moved_until:
            return
        status = run.run_status if run is not None else None
        pace = status.steps_per_second if status is not None else None
        shown = min(PACE_MAX, max(1, round(pace))) if pace else 0
        if self.pace.value != shown:
            self._showing = True  # our own change: not the presenter's hand
            try:
                self.pace.value = shown
            finally:
                self._showing = False

    def _pace_moving(self, _attr: str, _old: Any, _new: Any) -> None:
        """The presenter drags the handle (``value`` changes before ``value_throttled``)."""
        if not self._showing:
            self._pace_moved_until = time.monotonic() + PACE_ANSWER_SECONDS

    def _pace_changed(self, _attr: str, _old: Any, new: Any) -> None:
        try:
            value = float(new)
        except (TypeError, ValueError):
            return
        self._pace_moved_until = time.monotonic() + PACE_ANSWER_SECONDS
        self.command("pace", steps_per_second=value if value > 0 else None)

    def command(self, action: str, **values: float | None) -> None:
        """Send ``action`` (with its ``values``: ``steps_per_second``, ``learning_rate``,
        ``momentum``) for the shown run through the broker, off the event loop."""
        if not self.authorised(action):
            return
        try:
            command = ControlCommand(
                command=action,  # type: ignore[arg-type]
                run_id=self.run_id,
                **values,  # type: ignore[arg-type]
            )
        except ValidationError as exc:
            self._show(f"{action} not sent: {first_error(exc)}")
            return
        self._show(f"sending {action}...")
        threading.Thread(
            target=self._send, args=(command,), name=f"presenter-{action}", daemon=True
        ).start()

    def _send(self, command: Any) -> None:
        endpoint = self.settings.snapshot_endpoint
        body = ControlRequest(
            type="control",
            command=command.model_dump(exclude_none=True),
            token=self.settings.presenter_token,
        )
        try:
            ask(endpoint, body, COMMAND_TIMEOUT, self.settings.curve_keys)
        except CommandError as exc:
            log.warning("presenter %s not sent via %s: %s", command.command, endpoint, exc)
            outcome = f"{command.command} not sent: {exc}"
        else:
            target = "every run" if command.run_id == "*" else f"run {command.run_id}"
            what = describe(command)
            log.info("presenter sent %s to %s via %s", what, target, endpoint)
            outcome = f"{what} sent"
        self.doc.add_next_tick_callback(lambda: self._show(outcome))

    def _show(self, text: str) -> None:
        self.feedback.text = html.escape(text)

    def toggle_qr(self, visible: bool) -> None:
        if not self.authorised("show_qr"):
            return
        if visible and not self.qr_image.text:
            self.qr_image.text = self._qr_html()
        self.overlay.visible = visible

    def _qr_html(self) -> str:
        url = audience_url(self.doc)
        try:
            image = qr.svg(url)
        except qr.QRError as exc:  # the URL is still useful without the picture
            log.warning("no QR code for %s: %s", url, exc)
            image = ""
        hint = only_this_machine(url)
        warning = (
            f'<p style="font-size:3vh;text-align:center;color:#b00020">{html.escape(hint)}</p>'
            if hint
            else ""
        )
        return (
            f'<div style="width:min(82vh,94vw);margin:auto">{image}</div>'
            f'<p style="font-size:4vh;text-align:center;font-family:monospace;margin:0.3em">'
            f"{html.escape(url)}</p>{warning}"
        )
