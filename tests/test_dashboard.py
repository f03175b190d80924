"""The dashboard: per-session rendering from the shared hub, in process and as real programs."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest
from bokeh.client import ClientSession, pull_session
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent, DocumentChangedEvent
from tornado.ioloop import IOLoop

from protocol.endpoints import free_tcp_port, free_tcp_port_pair
from tests.conftest import Programs, wait_until
from tests.documents import SOURCES, header, receive, rows
from tests.recordings import Feed
from viewer.dashboard import Dashboard
from viewer.server.settings import ViewerSettings
from viewer.server.stats import stats
from viewer.sources.live import Hub

OVERLAYS = ("loss_previous", "accuracy_previous")
CURVE_NAMES = ("loss", "accuracy", "test_accuracy")


def feed_run(hub: Hub, feed: Feed, steps: int = 30, tick=lambda: None) -> None:
    """A whole small run, every kind of message, calling ``tick`` after each one."""
    messages = [feed.started(total_steps=steps, steps_per_epoch=10), feed.status(0, "training")]
    for step in range(1, steps + 1):
        messages.append(feed.metrics(step, loss=2.0 / step, accuracy=min(1.0, step / steps)))
        if step % 5 == 0:
            messages += [feed.sample(step), feed.evaluation(step), feed.weights(step)]
        if step % 10 == 0:
            messages.append(feed.evaluation(step, split="test"))
    messages.append(feed.finished(steps))
    for message in messages:
        hub.apply(message)
        tick()


def new_dashboard(hub: Hub) -> tuple[Document, Dashboard]:
    doc = Document()
    return doc, Dashboard(doc, hub, ViewerSettings())


def test_a_new_session_renders_the_whole_run_at_once() -> None:
    hub = Hub("tcp://127.0.0.1:1")  # never started: the test applies messages itself
    feed_run(hub, Feed("run-a"))
    doc, _ = new_dashboard(hub)
    for name in SOURCES:
        assert rows(doc, name) > 0, f"source {name!r} is empty"
    assert (
        rows(doc, "loss") == 30 and rows(doc, "accuracy") == 6 and rows(doc, "test_accuracy") == 3
    )
    assert rows(doc, "confusion") == 100 and rows(doc, "misclassified") == 3
    text = header(doc)
    assert "finished" in text and "30 / 30" in text and "SYNTHETIC" in text


def test_a_late_session_matches_one_that_watched_live() -> None:
    hub = Hub("tcp://127.0.0.1:1")
    live_doc, live = new_dashboard(hub)
    assert "waiting" in header(live_doc)
    feed_run(hub, Feed("run-a"), tick=live.tick)
    late_doc, _ = new_dashboard(hub)
    for name in CURVE_NAMES:
        live_source, late_source = (d.get_model_by_name(name) for d in (live_doc, late_doc))
        assert live_source.data["step"] == late_source.data["step"], name  # type: ignore[union-attr]
    for name in SOURCES:
        assert rows(live_doc, name) == rows(late_doc, name), name
    assert header(live_doc).split("viewer")[0] == header(late_doc).split("viewer")[0]


def test_a_frame_streams_only_new_rows_and_an_idle_frame_sends_nothing() -> None:
    hub, feed = Hub("tcp://127.0.0.1:1"), Feed("run-a")
    hub.apply(feed.started())
    hub.apply(feed.metrics(1))
    doc, dashboard = new_dashboard(hub)
    events: list[DocumentChangedEvent] = []
    doc.on_change(events.append)
    sent_before = stats.updates_sent

    hub.apply(feed.metrics(2))
    hub.apply(feed.metrics(3))
    dashboard.tick()
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert len(streamed) == 1 and streamed[0].data["step"] == [2, 3]
    assert stats.updates_sent == sent_before + 1

    events.clear()
    started = time.perf_counter()
    for _ in range(1000):
        dashboard.tick()
    idle = (time.perf_counter() - started) / 1000
    assert events == [], "an idle frame must not touch the document"
    assert idle < 0.001, f"an idle frame took {idle * 1e6:.0f} us"
    assert stats.updates_sent == sent_before + 1


def test_a_new_run_takes_over_leaving_an_overlay_and_a_pin_keeps_the_old_one() -> None:
    hub = Hub("tcp://127.0.0.1:1")
    feed_run(hub, Feed("run-a"), steps=20)
    follower_doc, follower = new_dashboard(hub)
    pinned_doc, pinned = new_dashboard(hub)
    pinned.header.pin.active = True
    assert rows(follower_doc, "loss_previous") == 0

    second = Feed("run-b")
    hub.apply(second.started())
    hub.apply(second.metrics(1))
    follower.tick()
    pinned.tick()
    assert "run-b" in header(follower_doc) and rows(follower_doc, "loss") == 1
    for name in OVERLAYS:
        assert rows(follower_doc, name) == 20, "run-a stays as the faint overlay"
    assert "run-a" in header(pinned_doc) and rows(pinned_doc, "loss") == 20
    assert rows(pinned_doc, "loss_previous") == 0

    pinned.header.pin.active = False
    pinned.tick()
    assert "run-b" in header(pinned_doc) and rows(pinned_doc, "loss_previous") == 20


# -- the real programs: broker, viewer and trainer as processes, sessions over the network -------


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Programs, str, str]]:
    """A broker and a viewer shared by the slow tests; each test runs its own trainers."""
    programs = Programs(tmp_path_factory.mktemp("stack"))
    try:
        broker_in = f"tcp://127.0.0.1:{free_tcp_port()}"
        broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
        port = free_tcp_port()
        programs.start("broker", "--in", broker_in, "--out", broker_out)
        viewer = programs.start("view", "--connect", broker_out, "--port", str(port))
        wait_until(lambda: "dashboard at" in programs.output(viewer), 20, message="the viewer")
        yield programs, broker_in, f"http://127.0.0.1:{port}/"
        assert programs.stop(viewer, signal.SIGTERM) == 0
        assert "Traceback" not in programs.output(viewer)
    finally:
        programs.stop_all()


def train(programs: Programs, broker_in: str, epochs: int = 3, pace: int = 60):
    """A small synthetic run with fast cadences; returns the process and its run id."""
    trainer = programs.start(
        "train",
        "--connect",
        broker_in,
        "--dataset",
        "synthetic",
        "--synthetic-size",
        "640,200",
        "--hidden",
        "32",
        "--epochs",
        str(epochs),
        "--steps-per-second",
        str(pace),
        "--sample-every",
        "0.1",
        "--eval-every",
        "0.2",
        "--eval-examples",
        "200",
        "--weights-every",
        "0.3",
        "--quiet",
    )
    found = wait_until(
        lambda: re.search(r"run (\S+) publishing", programs.output(trainer)), 20, message="run id"
    )
    return trainer, found.group(1)


def refreshed(session: ClientSession, seconds: float = 0.3) -> Document:
    """Let ``session`` take in what the server pushes for ``seconds``; its document then."""
    receive([session], seconds)
    return session.document


def finished(programs: Programs, trainer) -> None:
    wait_until(lambda: trainer.poll() is not None, 30, message="the run to finish")
    assert trainer.returncode == 0, programs.output(trainer)


@pytest.mark.slow
def test_sources_fill_live_and_a_late_session_gets_the_complete_run(stack) -> None:
    programs, broker_in, url = stack
    live = pull_session(url=url)
    try:
        trainer, run_id = train(programs, broker_in)
        filled: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = refreshed(live)
            if run_id in header(doc):
                filled |= {name for name in SOURCES if rows(doc, name)}
                if "finished" in header(doc):
                    break
            time.sleep(0.3)
        assert filled == set(SOURCES), f"never filled: {set(SOURCES) - filled}"
        finished(programs, trainer)
        time.sleep(0.5)  # more than two frames: the live session has been sent everything
        live_doc = refreshed(live)
        late = pull_session(url=url)
        try:
            late_doc = late.document
            assert run_id in header(late_doc) and "finished" in header(late_doc)
            for name in CURVE_NAMES:
                assert rows(late_doc, name) == rows(live_doc, name) > 0, (
                    name,
                    live_doc.get_model_by_name(name).data["step"],  # type: ignore[union-attr]
                    late_doc.get_model_by_name(name).data["step"],  # type: ignore[union-attr]
                )
                steps = [d.get_model_by_name(name).data["step"] for d in (live_doc, late_doc)]  # type: ignore[union-attr]
                assert list(steps[0]) == list(steps[1]), name
        finally:
            late.close()
    finally:
        live.close()


@pytest.mark.slow
def test_twenty_concurrent_sessions_all_receive_updates(stack) -> None:
    programs, broker_in, url = stack
    trainer, run_id = train(programs, broker_in, epochs=200, pace=40)
    loop = IOLoop()  # one loop for all twenty, so they all receive at once
    sessions = [pull_session(url=url, io_loop=loop) for _ in range(20)]
    try:
        wait_until(
            lambda: receive(sessions, 0.3) or all(run_id in header(s.document) for s in sessions),
            10,
            message="every session on the new run",
        )
        before = [rows(s.document, "loss") for s in sessions]
        receive(sessions, 1.5)
        after = [rows(s.document, "loss") for s in sessions]
        assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    finally:
        for session in sessions:
            session.close()
        programs.stop(trainer, signal.SIGINT)


@pytest.mark.slow
def test_a_new_run_takes_over_and_a_pinned_session_keeps_the_old_one(stack) -> None:
    programs, broker_in, url = stack
    first, first_id = train(programs, broker_in, epochs=2)
    finished(programs, first)
    follower, pinned = pull_session(url=url), pull_session(url=url)
    try:
        for session in (follower, pinned):
            wait_until(
                lambda s=session: first_id in header(refreshed(s)), 5, message="the first run"
            )
        first_rows = rows(pinned.document, "loss")
        pin = pinned.document.get_model_by_name("pin")
        pin.active = True  # type: ignore[attr-defined]
        refreshed(pinned)  # the click reaches the server

        second, second_id = train(programs, broker_in, epochs=2)
        wait_until(
            lambda: second_id in header(refreshed(follower)), 15, message="the follower to switch"
        )
        wait_until(lambda: rows(refreshed(follower), "loss") > 0, 10, message="the new run's curve")
        for name in OVERLAYS:
            assert rows(follower.document, name) > 0, f"{name}: no overlay of the previous run"
        finished(programs, second)
        doc = refreshed(pinned)
        assert first_id in header(doc) and second_id not in header(doc)
        assert rows(doc, "loss") == first_rows
    finally:
        follower.close()
        pinned.close()


def test_the_dark_look_styles_the_widgets_and_the_light_one_leaves_bokehs() -> None:
    hub = Hub("tcp://127.0.0.1:1")
    for theme, styled in (("dark", True), ("light", False)):
        doc = Document()
        Dashboard(doc, hub, ViewerSettings(theme=theme))
        pin = doc.get_model_by_name("pin")
        assert pin is not None
        css = " ".join(str(sheet) for sheet in pin.stylesheets)  # type: ignore[attr-defined]
        assert ("bk-btn-default" in css) is styled, theme


def test_toolbars_are_hidden_unless_asked_for_and_never_show_a_logo() -> None:
    from viewer.panels.looks import look

    for tools in (False, True):
        doc = Document()
        Dashboard(doc, Hub("tcp://127.0.0.1:1"), ViewerSettings(), look=look("light", False, tools))
        figures = [m for m in doc.models if type(m).__name__ == "figure"]
        with_tools = [f for f in figures if f.toolbar_location is not None]
        assert all(f.toolbar.logo is None for f in with_tools)
        if tools:
            assert {f.title.text for f in with_tools} >= {"Loss", "Accuracy"}
        else:
            assert with_tools == [], [f.title.text for f in with_tools]
