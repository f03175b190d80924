"""Presenter controls end to end: a real broker, a real viewer, a trainer-side publisher socket.

The presenter's Pause press must reach the trainer's socket through the broker; an audience
session (no token, or a wrong one) has no controls, and events it sends at the presenter's
widgets trigger no command and are logged as refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bokeh.client import ClientSession, pull_session
from bokeh.events import ButtonClick
from bokeh.models import Button

from broker.clients.publisher import Publisher
from protocol import Architecture, DatasetInfo, Hyperparameters, RunStarted, RunStatus
from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from protocol.tokens import TOKEN_ENV
from tests.conftest import Programs, wait_until

TOKEN = "room-secret-42"
CONTROLS = {"start", "pause", "resume", "stop", "pace", "show_qr"}
pytestmark = pytest.mark.slow  # real broker and viewer processes, ~20 s in all

QUIET = 1.5
"""Seconds an audience attempt is given to (wrongly) reach the trainer."""


class Room:
    def __init__(self, programs: Programs, publisher: Publisher, port: int, viewer) -> None:
        self.programs = programs
        self.publisher = publisher
        self.url = f"http://127.0.0.1:{port}/"
        self.viewer = viewer

    def session(self, token: str | None = None) -> ClientSession:
        """A page; the room's run says it is alive first (the broker relays commands only to
        a run heard from lately, as a trainer's heartbeat keeps it)."""
        self.publisher.send(RunStatus, step=0, state="training")
        return pull_session(url=self.url, arguments={"token": token} if token else None)

    def log(self) -> str:
        return self.programs.output(self.viewer)

    def commands(self, count: int, timeout: float) -> list:
        found: list = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            found += self.publisher.poll_commands()
            time.sleep(0.02)
        return found


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Iterator[Room]:
    programs = Programs(tmp_path_factory.mktemp("room"))
    broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    port = free_tcp_port()
    publisher = None
    try:
        programs.start("broker", "--in", broker_in, "--out", broker_out, env={TOKEN_ENV: TOKEN})
        viewer = programs.start(
            "view", "--connect", broker_out, "--port", str(port), "--presenter-token", TOKEN
        )
        publisher = Publisher(broker_in)
        assert publisher.wait_for_subscriber(15), "the broker did not subscribe"
        publisher.send(RunStarted, **run_started_fields())
        wait_until(lambda: "new run" in programs.output(viewer), 20, message="viewer has the run")
        yield Room(programs, publisher, port, viewer)
    finally:
        if publisher is not None:
            publisher.close()
        programs.stop_all()


def run_started_fields() -> dict:
    return {
        "dataset": DatasetInfo(
            name="synthetic",
            synthetic=True,
            train_size=100,
            test_size=10,
            class_names=[str(i) for i in range(10)],
        ),
        "architecture": Architecture(layer_sizes=[784, 16, 10], activation="relu"),
        "hyperparameters": Hyperparameters(
            optimizer="sgd", learning_rate=0.1, batch_size=16, epochs=1, seed=0
        ),
        "total_steps": 100,
    }


def names(session: ClientSession) -> set[str]:
    return {model.name for model in session.document.models if model.name}


def click(session: ClientSession, button_id: str) -> None:
    """Send a ButtonClick for ``button_id`` from this connection, as a browser would.

    bokeh.client delivers only the first such event of a session here, so tests click once
    per session.
    """
    button = session.document.get_model_by_id(button_id)
    if button is None:  # a doctored client: a stand-in carrying another session's id
        button = Button()
        button._id = button_id  # type: ignore[attr-defined]
    session.document.callbacks.send_event(ButtonClick(button))
    flush(session)


def flush(session: ClientSession) -> None:
    """Run the client's loop until what it queued has gone out (two server round trips)."""
    session.request_server_info()
    session.request_server_info()


def test_presenter_gets_controls_and_pause_reaches_the_trainer(room: Room) -> None:
    presenter = room.session(TOKEN)
    try:
        assert names(presenter) >= CONTROLS
        pause = presenter.document.select_one({"name": "pause"})
        click(presenter, pause.id)
        commands = room.commands(1, timeout=5)
        assert [c.command for c in commands] == ["pause"]
        assert commands[0].run_id in (room.publisher.run_id, "*")
        wait_until(lambda: "presenter sent pause" in room.log(), 5, message="the log line")
    finally:
        presenter.close()


@pytest.mark.parametrize("token", [None, "wrong-token-00", TOKEN + "x"])
def test_audience_sessions_have_no_controls(room: Room, token: str | None) -> None:
    audience = room.session(token)
    try:
        assert not CONTROLS & names(audience)
        assert {"loss", "header"} <= names(audience)
    finally:
        audience.close()


def test_audience_clicks_on_presenter_widgets_do_nothing_and_are_refused(room: Room) -> None:
    presenter = room.session(TOKEN)
    try:
        room.commands(10, timeout=0.3)  # nothing left over from other tests
        before = room.log().count("from an audience session")
        for name in ("pause", "stop", "show_qr"):
            audience = room.session()
            try:
                click(audience, presenter.document.select_one({"name": name}).id)
            finally:
                audience.close()
        assert room.commands(1, timeout=QUIET) == []
        wait_until(
            lambda: room.log().count("from an audience session") >= before + 3,
            5,
            message="three refusals in the viewer's log",
        )
    finally:
        presenter.close()


def test_a_missing_broker_is_reported_not_fatal(tmp_path: Path, programs: Programs) -> None:
    """The viewer stays up and says so when no broker answers the command."""
    port = free_tcp_port()
    out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    viewer = programs.start(  # DEBUG: the access log is on, and must not show the token
        "view", "--connect", out, "--port", str(port), "--presenter-token", TOKEN,
        "--log-level", "DEBUG",
    )  # fmt: skip
    wait_until(lambda: "presenter view at" in programs.output(viewer), 20, message="viewer up")
    session = pull_session(url=f"http://127.0.0.1:{port}/", arguments={"token": TOKEN})
    try:
        click(session, session.document.select_one({"name": "start"}).id)
        wait_until(
            lambda: "no answer from a broker" in programs.output(viewer), 10, message="the warning"
        )
        assert viewer.poll() is None
        assert session.request_server_info()  # the server still answers
        output = programs.output(viewer)
        assert output.count(TOKEN) == 1, "the token is printed once, never logged"
        assert "token=***" in output  # Tornado's access log line, redacted
    finally:
        session.close()


def test_a_replay_can_be_paused_resumed_and_stopped_like_a_run() -> None:
    from bokeh.document import Document

    from tests.recordings import Feed
    from viewer.panels.presenter import PresenterControls
    from viewer.runs.state import RunHistory
    from viewer.server.settings import ViewerSettings

    controls = PresenterControls(Document(), ViewerSettings(presenter_token=TOKEN), None)
    feed = Feed()
    run = RunHistory(feed.run_id)
    run.apply(feed.metrics(3).model_copy(update={"replayed": True}))

    def enabled() -> set[str]:
        controls.refresh(run)
        return {name for name, button in controls.buttons.items() if not button.disabled}

    assert run.status == "replay" and enabled() == {"pause", "stop"}
    run.apply(feed.status(3, "paused").model_copy(update={"replayed": True}))
    assert run.status == "replay", "a pause the recorded run went through is not the replay's"
    run.apply(feed.status(3, "paused"))  # the replay's own, as a presenter's Pause makes it
    assert run.status == "paused" and enabled() == {"resume", "stop"}


def presenter_and_run() -> tuple:
    from bokeh.document import Document

    from tests.recordings import Feed
    from viewer.panels.presenter import PresenterControls
    from viewer.runs.state import RunHistory
    from viewer.server.settings import ViewerSettings

    controls = PresenterControls(Document(), ViewerSettings(presenter_token=TOKEN), None)
    feed = Feed()
    return controls, feed, RunHistory(feed.run_id)


def test_start_is_offered_only_while_a_trainer_waits_for_it() -> None:
    controls, feed, run = presenter_and_run()

    def enabled(shown) -> set[str]:
        controls.refresh(shown)
        return {name for name, button in controls.buttons.items() if not button.disabled}

    assert enabled(None) == set(), "no run: nothing to command"
    run.apply(feed.status(0, "waiting"))
    assert enabled(run) == {"start", "stop"}
    run.apply(feed.status(0, "training"))
    assert enabled(run) == {"pause", "stop"}
    run.apply(feed.finished(40, "stopped"))
    assert enabled(run) == set(), "after Stop, Start would reach nobody"


def test_the_pace_slider_shows_the_trainers_pace() -> None:
    controls, feed, run = presenter_and_run()
    controls.refresh(run)
    assert controls.pace.value == 0
    run.apply(feed.status(0, "training").model_copy(update={"steps_per_second": 20.0}))
    controls.refresh(run)
    assert controls.pace.value == 20
    run.apply(feed.status(0, "training").model_copy(update={"steps_per_second": 5000.0}))
    controls.refresh(run)
    assert controls.pace.value == controls.pace.end, "beyond the slider: at its top"
    controls._pace_moved_until = time.monotonic() + 60  # the presenter just moved it
    controls.pace.value = 7
    run.apply(feed.status(0, "training"))  # full speed, but the answer is not in yet
    controls.refresh(run)
    assert controls.pace.value == 7


def test_a_page_served_to_this_machine_only_tells_the_presenter_how_to_let_the_room_in() -> None:
    from viewer.panels.presenter import only_this_machine

    for url in ("http://localhost:5006/", "http://127.0.0.1:5006/?theme=dark", "http://[::1]:80/"):
        hint = only_this_machine(url)
        assert hint is not None and "--address 0.0.0.0" in hint, url
    for url in ("http://192.168.1.20:5006/", "http://talk.example.org/"):
        assert only_this_machine(url) is None, url
    controls, _, _ = presenter_and_run()  # no request: the URL falls back to localhost
    assert "--address 0.0.0.0" in controls.feedback.text
    overlay = controls._qr_html()
    assert "<svg" in overlay and "min(82vh,94vw)" in overlay and "--address 0.0.0.0" in overlay
