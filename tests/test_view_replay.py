"""``mnist-live view --replay``: a recording played back on a shared clock, scrubbed to any time."""

from __future__ import annotations

import json
import math
import re
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from bokeh.client import pull_session
from bokeh.document import Document

from protocol import Envelope
from protocol.cli.durations import format_duration
from protocol.endpoints import free_tcp_port
from tests.conftest import FakeClock, Programs, run_cli, wait_until
from tests.documents import SOURCES, header, receive, rows
from tests.recordings import RUN_SECONDS, START, Feed, piece, realistic_run, write_recording
from viewer.cli import LOCAL_ADDRESSES
from viewer.dashboard import Dashboard
from viewer.panels.pictures import CODEC_COLUMNS, decode
from viewer.panels.playback import PlaybackControls
from viewer.runs.state import RunHistory
from viewer.server.settings import ViewerSettings
from viewer.sources.playback import ReplayHub
from viewer.sources.recording import ModelThinning, load


def reference(messages: list, until: float) -> RunHistory:
    """The plain fold, message by message, of everything sent up to ``until`` seconds in."""
    history = RunHistory(messages[0].run_id)
    history.replayed = history.played_back = True
    for message in messages:
        if message.sent_at - START <= until + 1e-9 and message.kind != "model":
            history.apply(message)
    return history


def assert_same(history: RunHistory, expected: RunHistory) -> None:
    for name, columns in expected.curves.items():
        assert history.curves[name].data == columns.data, name
    for name in ("sample", "weights", "evaluation"):
        got, want = piece(history, name), piece(expected, name)
        assert (history.versions[name] > 0) == (expected.versions[name] > 0), name
        for part, columns in want.items():
            if "row" in columns:  # a picture's rows: the same picture, whatever its keys
                want_picture, got_picture = decode(columns), decode(got[part])
                assert (want_picture is None) == (got_picture is None), f"{name}.{part}"
                assert want_picture is None or np.array_equal(got_picture, want_picture), part
                columns = {c: v for c, v in columns.items() if c not in CODEC_COLUMNS}
            for column, values in columns.items():
                assert np.array_equal(np.asarray(got[part][column]), np.asarray(values)), (
                    f"{name}.{part}.{column}"
                )
    assert piece(history, "header") == piece(expected, "header")
    assert history.step == expected.step and history.status == expected.status


@pytest.fixture
def run_messages() -> list:
    return realistic_run(Feed("run-replay"))


@pytest.fixture
def recording(tmp_path: Path, run_messages: list) -> Path:
    return write_recording(tmp_path / "run.mcap", run_messages)


def test_loading_keeps_every_shown_message_in_order_and_models_spread_over_the_run(
    recording: Path, run_messages: list
) -> None:
    loaded = load(recording)
    assert loaded.note == "whole" and list(loaded.runs) == ["run-replay"]
    run = loaded.pick(None)
    models = [m for m in run_messages if m.kind == "model"]
    assert [m.sent_at - START for m in models] == pytest.approx([2.0, 4.5, 6.5])  # a pause
    kept = models[:1]  # the next ones come sooner than MODEL_GAP after it
    shown = [m for m in run_messages if m.kind != "model" or m in kept]
    assert [m.seq for m in run.messages] == [m.seq for m in shown]
    assert run.duration == pytest.approx(shown[-1].sent_at - START)
    assert run.offsets == sorted(run.offsets)


def test_a_long_runs_models_are_thinned_to_a_few_spread_over_it_without_decoding_the_rest() -> None:
    thinning = ModelThinning(kept=12, gap=10.0)
    times = [5.0 * i for i in range(1000)]  # a model every 5 s for 83 minutes
    decoded = [t for t in times if thinning("model", t)]
    assert thinning("metrics", 1.0) and thinning("sample", 2.0), "other kinds all go through"
    doublings = math.ceil(math.log2(times[-1] / (10.0 * 12)))
    assert 6 <= len(thinning.times) <= 12 and len(decoded) <= 12 + 7 * doublings
    assert len(decoded) < len(times) / 10, "most are never decoded"
    assert thinning.times[0] == 0.0 and thinning.times[-1] >= times[-1] - thinning.gap
    gaps = np.diff(thinning.times)
    assert gaps.max() <= thinning.gap + 5.0, "spread over the whole run, no hole"


def test_a_replays_pad_reads_with_the_latest_model_before_the_position(recording: Path) -> None:
    hub = ReplayHub(load(recording).pick(None), clock=FakeClock())
    _doc, dash, _controls = dashboard(hub, allowed=True)
    model, _names = dash._latest_model()
    assert isinstance(model, str) and "No model yet at this point" in model
    hub.seek(3.0)
    hub.advance()
    model, names = dash._latest_model()
    assert not isinstance(model, str) and model.step == 40 and names == [str(d) for d in range(10)]
    pad = dash.page.pad
    assert pad is not None and not pad.on_wall.visible, "no presenter's wall in a replay"
    pad._drawn("data", None, {"xs": [[0.5, 0.5]], "ys": [[0.1, 0.9]]})
    assert "as of step 40" in pad.caption.text


@pytest.mark.parametrize("until", [0.0, 0.05, 1.0, 2.52, 3.0, 3.2, 3.5, 4.37, RUN_SECONDS, 99.0])
def test_a_jump_holds_exactly_what_was_logged_up_to_that_moment(
    recording: Path, run_messages: list, until: float
) -> None:
    hub = ReplayHub(load(recording).pick(None))
    before = hub.current
    hub.seek(until)
    hub.advance()
    assert hub.current is not before, "a jump gives sessions a new run to render whole"
    expected = reference(run_messages, min(until, hub.duration))
    assert_same(hub.current, expected)
    metrics = sum(1 for m in run_messages if m.kind == "metrics" and m.sent_at - START <= until)
    assert rows_of(hub.current, "loss") == metrics


def rows_of(history: RunHistory, curve: str) -> int:
    return len(history.curves[curve])


def test_the_status_says_replay_until_the_run_ends(recording: Path) -> None:
    hub = ReplayHub(load(recording).pick(None))
    assert hub.current.status == "replay"
    assert 'class="status replay"' in piece(hub.current, "header")["html"]
    hub.seek(3.2)  # the trainer was paused then; the replay still says what it is
    hub.advance()
    assert hub.current.status == "replay"
    hub.seek(hub.duration)
    hub.advance()
    assert hub.current.status == "finished"


def test_playing_folds_messages_as_the_clock_passes_them_and_stops_at_the_end(
    recording: Path, run_messages: list
) -> None:
    clock = FakeClock(now=0.0)  # so that 0.3 s of it is exactly 0.3
    hub = ReplayHub(load(recording).pick(None), clock=clock)
    hub.set_speed(4)
    hub.play()
    began = clock()
    clock.advance(0.3)
    hub.advance()
    elapsed = clock() - began
    playing, position, speed = hub.state()
    assert playing and speed == 4
    assert 0.3 * 4 <= position <= elapsed * 4 + 0.2, (position, elapsed)
    folded = rows_of(hub.current, "loss")
    assert 0 < folded < rows_of(reference(run_messages, RUN_SECONDS), "loss")
    shown_at = hub.recorded.offsets[hub.current.messages - 1]
    assert shown_at <= position

    hub.set_speed(50)
    same_run = hub.current
    for _ in range(100):  # 2 s of the clock at a time, at 50x: the run's end comes
        clock.advance(2.0)
        hub.advance()
        if not hub.state()[0]:
            break
    assert hub.current is same_run, "playing forward folds into the run sessions hold"
    playing, position, _ = hub.state()
    assert not playing and position == hub.duration, "paused at the end"
    assert_same(hub.current, reference(run_messages, hub.duration))

    hub.play()  # from the end: again from the start
    hub.advance()
    assert hub.state()[1] < 1.0 and rows_of(hub.current, "loss") < 30
    assert hub.current is not same_run


def test_a_jump_within_a_long_run_is_well_under_a_second(tmp_path: Path) -> None:
    """Ten minutes of a trainer's output at its default cadences (a 30-minute run: ~0.2 s)."""
    seconds = 600
    feed = Feed("run-long")
    timed: list[tuple[float, Envelope]] = [(0.0, feed.started(total_steps=seconds * 20))]
    for tick in range(seconds * 20):
        t = tick / 20
        timed.append((t, feed.metrics(tick + 1, loss=1.0 / (tick + 1))))
        if tick % 5 == 0:
            timed.append((t, feed.sample(tick + 1)))
        if tick % 20 == 0:
            timed += [(t, feed.evaluation(tick + 1, mistakes=8)), (t, feed.weights(tick, 64))]
    path = write_recording(
        tmp_path / "long.mcap", [m.model_copy(update={"sent_at": START + t}) for t, m in timed]
    )
    hub = ReplayHub(load(path).pick(None))
    hub.seek(hub.duration)
    began = time.perf_counter()
    hub.advance()
    took = time.perf_counter() - began
    print(f"jump to the end of {len(timed)} messages ({seconds} s of run): {took * 1000:.0f} ms")
    assert rows_of(hub.current, "loss") == seconds * 20
    assert took < 0.5


# -- the controls, in a session's document ------------------------------------------------------


def dashboard(hub: ReplayHub, allowed: bool) -> tuple[Document, Dashboard, PlaybackControls]:
    doc = Document()
    controls = PlaybackControls(hub, lambda: allowed, interactive=allowed)
    return doc, Dashboard(doc, hub, ViewerSettings(), controls, live=False), controls


def test_the_controls_scrub_the_whole_page_and_show_the_position(
    recording: Path, run_messages: list
) -> None:
    clock = FakeClock()
    hub = ReplayHub(load(recording).pick(None), clock=clock)
    doc, dash, controls = dashboard(hub, allowed=True)
    assert "replay" in header(doc) and rows(doc, "loss") == 0

    controls._scrubbed("value_throttled", None, 2.5)
    hub.advance()
    dash.tick()
    expected = reference(run_messages, 2.5)
    assert rows(doc, "loss") == rows_of(expected, "loss") == 50
    assert rows(doc, "accuracy") == rows_of(expected, "accuracy") == 5
    sample = doc.get_model_by_name("sample").data  # type: ignore[union-attr]
    assert sample["step"] == [50]
    assert doc.get_model_by_name("weights").data["step"] == [40]  # type: ignore[union-attr]
    mistakes = rows(doc, "misclassified")
    assert mistakes == len(piece(expected, "evaluation")["misclassified"]["x"]) == 6
    text = doc.get_model_by_name("playback_position").text  # type: ignore[union-attr]
    assert f"0:02 / {format_duration(hub.duration)}" in text and "paused" in text
    assert doc.get_model_by_name("position").value == 2.5  # type: ignore[union-attr]

    controls.speed.active = 4  # 50x, as a click does
    controls.play.active = True
    assert hub.state()[:1] == (True,) and hub.speed == 50
    clock.advance(0.06)
    hub.advance()
    dash.tick()
    assert rows(doc, "loss") > 50 and controls.play.label == "Pause"


def figure_titles(doc: Document) -> list[str]:
    return [m.title.text for m in doc.models if type(m).__name__ == "figure"]


def test_a_recording_begun_mid_run_says_from_when_it_has_pictures(tmp_path: Path) -> None:
    """A recorder that joins at 8 s gets the curves from 0:00 but pictures only from 0:08 (the
    broker keeps the latest sample and weights): until then the page says so, not "no sample
    yet", and a whole recording says nothing of the kind."""
    messages = realistic_run(Feed("run-late"), seconds=10.0)
    late = [m for m in messages if m.kind not in ("sample", "weights") or m.sent_at - START >= 8]
    whole = load(write_recording(tmp_path / "whole.mcap", messages)).pick(None)
    assert whole.pictures_from is None
    cut = load(write_recording(tmp_path / "late.mcap", late)).pick(None)
    assert cut.pictures_from == pytest.approx(8.0)

    clock = FakeClock()
    hub = ReplayHub(cut, clock=clock)
    doc, dash, controls = dashboard(hub, allowed=True)
    assert "this recording starts mid-run: pictures from 0:08" in header(doc)
    titles = figure_titles(doc)
    assert "What the network sees\nfrom 0:08" in titles, titles
    assert "First-layer weights\nfrom 0:08" in titles, titles
    assert rows(doc, "loss") == 0

    controls._scrubbed("value_throttled", None, 9.0)
    hub.advance()
    dash.tick()
    titles = figure_titles(doc)
    assert "What the network sees" in titles and "First-layer weights" in titles, titles
    dash.header_due = 0  # the header refreshes once a second
    dash.tick()
    assert "mid-run" not in header(doc)
    assert rows(doc, "loss") == rows_of(reference(late, 9.0), "loss")


def test_a_session_without_the_controls_cannot_move_the_clock(recording: Path) -> None:
    hub = ReplayHub(load(recording).pick(None))
    doc, _, controls = dashboard(hub, allowed=False)
    for name in ("play", "speed", "position"):
        assert doc.get_model_by_name(name) is None, f"{name} shown to the audience"
    controls._play_changed("active", False, True)
    controls._speed_changed("active", 0, 4)
    controls._scrubbed("value_throttled", None, 3.0)
    assert hub.state() == (False, 0.0, 1.0), "refused on the server"
    assert "0:00 /" in doc.get_model_by_name("playback_position").text  # type: ignore[union-attr]


# -- the real program ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "missing.mcap", "no such recording"),
        (
            lambda p: (p / "junk.mcap").write_bytes(b"not mcap at all" * 10) and p / "junk.mcap",
            "is not an MCAP recording",
        ),
    ],
)
def test_a_bad_file_is_a_one_line_error_before_serving(tmp_path: Path, make, words: str) -> None:
    result = run_cli("view", "--replay", str(make(tmp_path)), "--port", str(free_tcp_port()))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "dashboard at" not in result.stderr


def test_an_unknown_run_is_a_one_line_error(recording: Path) -> None:
    result = run_cli(
        "view", "--replay", str(recording), "--run", "nope", "--port", str(free_tcp_port())
    )
    assert result.returncode == 2 and "has no run 'nope'" in result.stderr
    assert "its runs: run-replay (" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_served_replay_says_replay_and_plays_to_a_full_page(
    programs: Programs, tmp_path: Path, run_messages: list
) -> None:
    other = realistic_run(Feed("run-other"), seconds=1.0, start=START + 100)
    path = write_recording(tmp_path / "two.mcap", other, run_messages)
    port = free_tcp_port()
    viewer = programs.start(
        "view", "--replay", str(path), "--run", "run-replay", "--port", str(port)
    )
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    log = programs.output(viewer)
    assert re.search(r"recording loaded in \d+\.\d+ s: run run-replay", log), log
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
        health = json.load(reply)
    assert health["ok"] and health["hub"]["connected"], health
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:
        doc = session.document
        assert "replay" in header(doc) and "run-replay" in header(doc)
        doc.get_model_by_name("speed").active = 4  # type: ignore[union-attr]
        doc.get_model_by_name("play").active = True  # type: ignore[union-attr]
        wait_until(
            lambda: receive([session], 0.3) or "finished" in header(session.document),
            20,
            message="the replay to reach the end",
        )
        doc = session.document
        for name in SOURCES:
            assert rows(doc, name) > 0, f"source {name!r} is empty"
        assert rows(doc, "loss") == sum(1 for m in run_messages if m.kind == "metrics")
        wait_until(  # the toggle's change may arrive a frame after the header's "finished"
            lambda: (
                receive([session], 0.1) or not session.document.get_model_by_name("play").active
            ),  # type: ignore[union-attr]
            5,
            message="paused at the end",
        )
        doc = session.document
        text = doc.get_model_by_name("playback_position").text  # type: ignore[union-attr]
        assert "0:06 / 0:06" in text and "paused" in text, text
    finally:
        session.close()
    assert programs.stop(viewer, signal.SIGTERM) == 0
    assert "Traceback" not in programs.output(viewer)


ROOM = "127.0.0.2"
"""An address that is not ``LOCAL_ADDRESSES``, so served "to a room", yet still loopback."""


@pytest.mark.slow
def test_in_a_room_only_the_presenter_gets_the_controls(
    programs: Programs, recording: Path
) -> None:
    assert ROOM not in LOCAL_ADDRESSES, "the viewer would give every page the controls"
    port = free_tcp_port()
    token = "replay-presenter-token"
    viewer = programs.start(
        "view", "--replay", str(recording), "--port", str(port), "--address", ROOM,
        "--presenter-token", token,
    )  # fmt: skip
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    url = f"http://{ROOM}:{port}/"
    audience = pull_session(url=url)
    presenter = pull_session(url=url, arguments={"token": token})
    try:
        for name in ("play", "speed", "position"):
            assert audience.document.get_model_by_name(name) is None, name
            assert presenter.document.get_model_by_name(name) is not None, name
        shown = audience.document.get_model_by_name("playback_position")
        assert "paused" in shown.text  # type: ignore[union-attr]
        presenter.document.get_model_by_name("play").active = True  # type: ignore[union-attr]
        wait_until(
            lambda: (
                receive([audience, presenter], 0.3)
                or "playing" in audience.document.get_model_by_name("playback_position").text
            ),  # type: ignore[union-attr]
            10,
            message="the audience to follow the presenter's clock",
        )
        wait_until(
            lambda: receive([audience], 0.3) or rows(audience.document, "loss") > 0,
            10,
            message="the audience's curves to grow",
        )
    finally:
        audience.close()
        presenter.close()


STATUS_SHOWN = """
const find = (root) => {
  for (const element of root.querySelectorAll('.status')) return element;
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) { const hit = find(element.shadowRoot); if (hit) return hit; }
  }
  return null;
};
const status = find(document);
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
const loss = doc && doc.get_model_by_name('loss');
const steps = loss ? (loss.data instanceof Map ? loss.data.get('step') : loss.data.step) : null;
return {status: status ? status.innerText : null, loss: steps ? steps.length : -1};
"""

SCRUB = """
const doc = Bokeh.documents[0];
doc.get_model_by_name('position').value_throttled = arguments[0];
"""


@pytest.mark.browser
def test_the_browser_shows_replay_plays_and_scrubs(
    programs: Programs, recording: Path, run_messages: list, browser
) -> None:
    from tests.documents import FIND_BUTTON

    port = free_tcp_port()
    viewer = programs.start("view", "--replay", str(recording), "--port", str(port))
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    browser.get(f"http://127.0.0.1:{port}/")
    shown = wait_until(
        lambda: (s := browser.execute_script(STATUS_SHOWN)) and s["status"] and s,
        15,
        message="the header's status",
    )
    assert shown["status"] == "REPLAY", shown
    wait_until(lambda: browser.execute_script(FIND_BUTTON, "50x"), 10, message="50x").click()
    browser.execute_script(FIND_BUTTON, "Play").click()
    metrics = sum(1 for m in run_messages if m.kind == "metrics")
    ended = wait_until(
        lambda: (s := browser.execute_script(STATUS_SHOWN))["loss"] == metrics and s,
        15,
        message="the replay to play to the end",
    )
    assert ended["status"] == "FINISHED"
    wait_until(lambda: browser.execute_script(FIND_BUTTON, "Play"), 5, message="paused at the end")
    browser.execute_script(SCRUB, 1.0)
    early = sum(1 for m in run_messages if m.kind == "metrics" and m.sent_at - START <= 1.0)
    back = wait_until(
        lambda: (s := browser.execute_script(STATUS_SHOWN))["loss"] == early and s,
        10,
        message="the page to go back to 0:01",
    )
    assert back["status"] == "REPLAY"
