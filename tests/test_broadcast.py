"""Encoding a frame once for every session: shared ids, one message that fits every audience
page, a shared first page, the pin, and the thinned history a late joiner gets."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bokeh.client import pull_session
from bokeh.core.validation.check import check_integrity
from bokeh.document import Document
from bokeh.model.util import collect_models
from bokeh.models import Button

from broker.clients.publisher import Publisher
from protocol import FirstLayerWeights, RunStarted, SamplePrediction, TrainingMetrics
from tests.conftest import wait_until
from tests.documents import header, receive, rows
from tests.recordings import Feed
from tests.test_dashboard import feed_run
from tests.test_presenter import Room, room, run_started_fields  # noqa: F401 (a fixture)
from viewer.broadcast import Broadcast
from viewer.dashboard import Dashboard
from viewer.pages import Pages
from viewer.panels.curves import history
from viewer.panels.ids import PLACE, PREFIX, settle
from viewer.panels.images import tile_mosaic
from viewer.panels.looks import look
from viewer.runs.decimate import m4_rows
from viewer.server.settings import ViewerSettings
from viewer.server.stats import ViewerStats
from viewer.sources.live import Hub

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from fanout_client import open_sessions


def page_json(doc: Document) -> str:
    return json.dumps(doc.to_json(deferred=False), sort_keys=True)


def audience(hub: Hub) -> Dashboard:
    return Dashboard(Document(), hub, ViewerSettings(), frames=False)


@pytest.fixture
def hub() -> Hub:
    hub = Hub("tcp://127.0.0.1:1")  # never started: tests apply messages themselves
    feed_run(hub, Feed("run-a"), steps=20)
    return hub


def test_audience_pages_have_the_same_ids_and_serialize_alike(hub: Hub) -> None:
    broadcast = Broadcast(hub, ViewerSettings(), live=True, schedule=False)
    first, second = audience(hub), audience(hub)
    ids = [model.id for model in collect_models(*first.doc.roots)]
    assert ids == [model.id for model in collect_models(*second.doc.roots)]
    assert len(set(ids)) == len(ids)
    assert {i for i in ids if i.startswith(PREFIX)} >= {PREFIX + "loss", PREFIX + "header"}
    assert page_json(first.doc) == page_json(second.doc)
    broadcast.copy_into(first.doc, loud=False)
    assert page_json(first.doc) != page_json(second.doc)  # the copy brought the run
    broadcast.copy_into(second.doc, loud=False)
    assert page_json(first.doc) == page_json(second.doc)
    assert "run-a" in first.header.div.text


def test_pages_pass_bokehs_checks(hub: Hub) -> None:
    """The viewer skips Bokeh's per-session validation: this is where it is done."""
    for controls in (False, True):
        dashboard = audience(hub) if not controls else presenter_page(hub)
        issues = check_integrity(list(collect_models(*dashboard.doc.roots)))
        assert not issues.error and not issues.warning, issues


def presenter_page(hub: Hub) -> Dashboard:
    class Buttons:
        layout = Button(label="pause", name="pause")

        def refresh(self, run: object) -> None: ...

    return Dashboard(Document(), hub, ViewerSettings(), Buttons(), frames=False)


def test_page_ids_are_unique_and_a_page_with_controls_keeps_bokehs(hub: Hub) -> None:
    page_ids = {m.id for m in collect_models(*audience(hub).doc.roots)}
    own_ids = {m.id for m in collect_models(*presenter_page(hub).doc.roots)}
    shared = {i for i in page_ids if i.startswith(PREFIX)}
    assert shared == {i for i in own_ids if i.startswith(PREFIX)}
    assert not (page_ids - shared) & (own_ids - shared)
    later = Button()  # made after a page: never one of a page's ids
    assert later.id not in page_ids


def test_settle_keeps_shared_ids_and_numbers_the_rest_by_place(hub: Hub) -> None:
    """The way to alike pages where Bokeh makes random ids (BOKEH_SIMPLE_IDS=no)."""
    pages = [presenter_page(hub), presenter_page(hub)]  # unique ids, as random ones would be
    orders = []
    for page_ in pages:
        models = collect_models(*page_.doc.roots)
        assert len({m.id for m in models}) == len(models)
        settle(*page_.doc.roots, page_.doc.config)
        orders.append([m.id for m in collect_models(*page_.doc.roots, page_.doc.config)])
    assert orders[0] == orders[1]
    assert PREFIX + "loss" in orders[0] and PREFIX + "header" in orders[0]
    assert sum(i.startswith(PLACE) for i in orders[0]) > 200


def test_one_frame_message_brings_every_audience_page_to_the_shadow(hub: Hub) -> None:
    broadcast = Broadcast(hub, ViewerSettings(), live=True, schedule=False)
    pages = [audience(hub), audience(hub)]
    for dashboard in pages:
        broadcast.copy_into(dashboard.doc, loud=False)
    feed = Feed("run-a")
    feed.seq = 10_000
    for step in range(21, 26):
        hub.apply(feed.metrics(step, loss=0.5))
    hub.apply(feed.sample(25, label=7, predicted=7))
    message = broadcast.next_frame()
    assert message is not None and message is not False
    content = json.loads(message.content_json)
    touched = {event["model"]["id"] for event in content["events"]}
    assert touched and all(i.startswith(PREFIX) for i in touched), touched
    for dashboard in pages:
        message.apply_to_document(dashboard.doc)
        loss = dashboard.curves.sources["loss"].data
        assert list(loss["step"])[-5:] == [21, 22, 23, 24, 25]
        assert dashboard.digit.sample.data["label"] == ["7"]
    shadow = broadcast.shadow
    assert len(pages[0].curves.sources["loss"].data["step"]) == len(
        shadow.curves.sources["loss"].data["step"]
    )
    assert broadcast.next_frame() is False  # nothing new: nothing to send


def test_m4_keeps_every_pixel_columns_extremes() -> None:
    rng = np.random.default_rng(7)
    n = 50_000
    x = np.arange(n, dtype=np.float64)
    noisy = np.abs(rng.normal(1.0, 0.4, n)) * np.exp(-x / 20_000)
    noisy[1234] = np.nan
    smooth = np.exp(-x / 20_000)
    kept = m4_rows(x, [noisy, smooth], columns=500, rows=400)
    assert 2 * 500 <= len(kept) < n / 8
    assert kept[0] == 0 and kept[-1] == n - 1 and np.all(np.diff(kept) > 0)
    bucket = np.minimum((x * 500 / (n - 1)).astype(int), 499)
    for y in (noisy, smooth):
        pixel = (np.nanmax(y) - np.nanmin(y)) / 400
        for column in (0, 123, 250, 499):
            rows = np.flatnonzero(bucket == column)
            ours = np.intersect1d(rows, kept)
            assert abs(np.nanmax(y[ours]) - np.nanmax(y[rows])) <= pixel
            assert abs(np.nanmin(y[ours]) - np.nanmin(y[rows])) <= pixel
    assert np.nanmax(noisy[kept]) == np.nanmax(noisy)  # a spike is never lost
    only_smooth = m4_rows(x, [smooth], columns=500, rows=400)
    assert len(only_smooth) <= 2 * 500, "a curve that stays in its pixel rows costs two a column"
    small = m4_rows(x[:100], [noisy[:100]], columns=500)
    assert np.array_equal(small, np.arange(100))


def test_a_late_joiners_history_is_thinned_to_arrays() -> None:
    steps = list(range(1, 40_001))
    data = {
        "step": steps,
        "loss": [1 / s for s in steps],
        "loss_smooth": [1 / s for s in steps],
        "accuracy_smooth": [min(1.0, s / 1000) for s in steps],
        "sent_at": [1.7e9 + s / 20 for s in steps],
    }
    thinned = history("loss", data)
    rows = len(thinned["step"])
    assert rows < 8_000 and thinned["step"][-1] == 40_000 and thinned["step"][0] == 1
    assert thinned["loss"].dtype == np.float32 and thinned["sent_at"].dtype == np.float64
    assert thinned["sent_at"][-1] == pytest.approx(1.7e9 + 2000, abs=1e-3)


# -- a real viewer --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(room: Room) -> tuple[Publisher, str]:  # noqa: F811 (the fixture above)
    """The presenter tests' room (a real broker and viewer, a publisher with a run): these tests
    open audience pages only."""
    return room.publisher, room.url.removeprefix("http://").rstrip("/")


def send_metrics(publisher: Publisher, first: int, count: int) -> None:
    for step in range(first, first + count):
        publisher.send(
            TrainingMetrics,
            step=step,
            epoch=0,
            samples_seen=16 * step,
            loss=1.0 / step,
            batch_accuracy=0.5,
            learning_rate=0.1,
            samples_per_second=320.0,
        )


@pytest.mark.slow
def test_every_session_is_written_the_same_message(served) -> None:
    publisher, host = served

    async def watch() -> list:
        sessions = await open_sessions(f"ws://{host}/ws", 3, parallel=3, timeout=20)
        try:
            for round_ in range(6):
                send_metrics(publisher, 100 + 10 * round_, 10)
                await asyncio.sleep(0.3)
            late = (await open_sessions(f"ws://{host}/ws", 1, parallel=1, timeout=20))[0]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (late.last_step or 0) < 159:
                await asyncio.sleep(0.05)
            late.close()
            return [*sessions, late]
        finally:
            for session in sessions:
                session.close()

    *live, late = asyncio.run(watch())
    seen = [set(s.patch_headers) for s in live]
    common = seen[0] & seen[1] & seen[2]
    assert len(common) >= 5, "one message, written to every session"
    assert all(len(mine - common) <= 2 for mine in seen), "no session got messages of its own"
    for session in live:
        assert session.error is None and session.last_step == 159
        steps = [f.rows for f in session.frames]
        assert sum(steps) >= 50
    assert late.last_step == 159 and late.pull_bytes > 0
    with urllib.request.urlopen(f"http://{host}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    figures = {
        re.sub(r'process="\d+",?', "", name).replace("{}", ""): value
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    }
    assert float(figures["mnist_live_viewer_frames_encoded_total"]) >= 6
    pages = [float(v) for k, v in figures.items() if k.startswith("mnist_live_viewer_pages_total")]
    assert len(pages) == 2 and sum(pages) >= 4, "every first page was made or shared"


@pytest.mark.slow
def test_a_pinned_session_keeps_its_run_and_follows_again_when_unpinned(served) -> None:
    publisher, host = served
    pinned = pull_session(url=f"http://{host}/")
    watching = pull_session(url=f"http://{host}/")
    try:
        first_run = publisher.run_id
        assert first_run in header(pinned.document)
        pinned.document.get_model_by_name("pin").active = True  # type: ignore[union-attr]
        receive([pinned, watching], 0.5)
        publisher.begin_run("run-second")
        publisher.send(RunStarted, **run_started_fields())
        send_metrics(publisher, 1, 5)
        second_run = publisher.run_id
        assert second_run != first_run

        def shows(session, run_id: str) -> bool:
            receive([session], 0.3)
            return run_id in header(session.document)

        wait_until(lambda: shows(watching, second_run), 10, message="the new run on a page")
        receive([pinned], 1.0)
        assert first_run in header(pinned.document) and "pinned" in header(pinned.document)
        pinned.document.get_model_by_name("pin").active = False  # type: ignore[union-attr]
        wait_until(lambda: shows(pinned, second_run), 10, message="the unpinned page follow")
        send_metrics(publisher, 6, 5)
        wait_until(
            lambda: (
                receive([pinned], 0.3)
                or math.isclose(max(pinned.document.get_model_by_name("loss").data["step"]), 10)
            ),
            10,
            message="frames after rejoining",
        )
        pinned.document.get_model_by_name("pin").active = True  # type: ignore[union-attr]
        receive([pinned], 0.5)
        send_metrics(publisher, 11, 3)
        receive([pinned], 1.0)
        assert second_run in header(pinned.document), "pinned again: the run it shows"
        assert max(pinned.document.get_model_by_name("loss").data["step"]) == 13
    finally:
        pinned.close()
        watching.close()


@pytest.mark.slow
def test_a_page_from_a_shared_serialization_keeps_its_curves_when_the_session_changes_it(
    served,
) -> None:
    publisher, host = served
    send_metrics(publisher, 500, 20)
    time.sleep(0.5)
    first = pull_session(url=f"http://{host}/")
    second = pull_session(url=f"http://{host}/")  # within a second: the same page, shared
    try:
        receive([first, second], 0.5)
        held = rows(second.document, "loss")
        assert held >= 20
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            second.document.get_model_by_name("log_scale").active = True  # type: ignore[union-attr]
            receive([second], 1.0)
        resent = [str(w.message) for w in caught if "already known" in str(w.message)]
        assert not resent, f"models the browser holds were sent again, as built: {resent[:3]}"
        assert rows(second.document, "loss") >= held, "the log scale kept the curves"
    finally:
        first.close()
        second.close()


def test_pages_built_ahead_are_audience_pages_and_wait_for_a_quiet_moment(hub: Hub) -> None:
    default = look("light", False)
    pool = Pages(default, size=2)
    pool.build_one()
    pool.build_one()
    pool.build_one()  # full: builds no more
    assert len(pool.ready) == 2 and pool.built == 2
    assert pool.take(look("dark", False)) is None, "a page is built for one look only"
    page = pool.take(default)
    assert page is not None and len(pool.ready) == 1
    pool.build_one()  # a session just opened: the room is arriving, do not compete with it
    assert len(pool.ready) == 1
    ahead = Dashboard(Document(), hub, ViewerSettings(), frames=False, page=page)
    built_here = audience(hub)
    assert ahead.curves is page.curves and ahead.doc.roots == page.roots
    assert page_json(ahead.doc) == page_json(built_here.doc)


def test_a_frame_written_to_many_sessions_counts_each_and_its_lag_once() -> None:
    counters = ViewerStats()
    counters.update_sent(0.05, sessions=3)
    counters.update_sent(0.07, sessions=0)  # written to nobody: no lag to speak of
    counters.update_sent(None, sessions=2)
    assert counters.updates_sent == 5
    assert list(counters.lags) == [0.05]


READ_PICTURES = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const get = (data, name) => (data instanceof Map ? data.get(name) : data[name]) || [];
const out = {};
for (const name of ['weights', 'sample_image']) {
  const wire = doc.get_model_by_name(name), pixels = doc.get_model_by_name(name + '_pixels');
  if (!wire || !pixels) return null;
  const image = get(pixels.data, 'image');
  out[name] = {
    rows: get(wire.data, 'bytes').length,
    shape: image.length ? Array.from(image[0].shape) : null,
    pixels: image.length ? Array.from(image[0]) : null,
  };
}
return out;
"""


@pytest.mark.browser
@pytest.mark.slow
def test_a_browser_draws_the_pictures_the_server_sent_following_and_joining_late(
    served, browser
) -> None:
    """The pictures travel deflated as keys and residuals, over a compressed websocket; the
    browser's decoder must draw exactly the last picture, whether it followed every residual or
    opened late and got one key."""
    publisher, host = served
    rng = np.random.default_rng(5)
    tiles = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    step = 1_000

    def send_pictures() -> None:
        nonlocal step
        step += 1
        publisher.send(
            FirstLayerWeights, step=step, epoch=0, units=[0, 1, 2, 3], tiles=tiles, scale=0.5
        )
        publisher.send(
            SamplePrediction, step=step, index=step, image=tiles[step % 4], label=1,
            probabilities=[0.1] * 10,
        )  # fmt: skip

    send_pictures()
    browser.get(f"http://{host}/")
    wait_until(lambda: browser.execute_script(READ_PICTURES), 20, message="the pictures")
    for _ in range(6):  # each a frame apart: the open page follows them as residuals
        tiles[rng.integers(0, 4), rng.integers(0, 28, 40), rng.integers(0, 28, 40)] += 7
        send_pictures()
        time.sleep(0.4)
    weights = np.flipud(tile_mosaic(tiles, 2, 1, 1)).ravel().tolist()
    sample = np.flipud(tiles[step % 4]).ravel().tolist()

    def drawn(expected_rows: Callable[[int], bool]) -> dict | None:
        state = browser.execute_script(READ_PICTURES)
        if (
            state
            and state["weights"]["pixels"] == weights
            and state["sample_image"]["pixels"] == sample
            and expected_rows(state["weights"]["rows"])
        ):
            return state
        return None

    following = wait_until(lambda: drawn(lambda rows: rows > 1), 10, message="residuals drawn")
    assert following["weights"]["shape"] == [57, 57]
    browser.get(f"http://{host}/")
    wait_until(lambda: drawn(lambda rows: rows == 1), 20, message="a late page's one key")
    handshakes = [
        json.loads(entry["message"])["message"]["params"]["response"]["headers"]
        for entry in browser.get_log("performance")
        if "Network.webSocketHandshakeResponseReceived" in entry["message"]
    ]
    extensions = [
        value for headers in handshakes for name, value in headers.items()
        if name.lower() == "sec-websocket-extensions"
    ]  # fmt: skip
    assert extensions and all("server_no_context_takeover" in e for e in extensions), handshakes


@pytest.mark.slow
def test_a_browser_message_over_a_megabyte_closes_its_connection_alone(served) -> None:
    """Bokeh takes 20 MB from a browser by default; a page sends a few hundred bytes."""
    from fanout_client import _frame

    _, host = served

    async def send_too_much() -> tuple[bool, bool]:
        hostile, bystander = await open_sessions(f"ws://{host}/ws", 2, parallel=2, timeout=20)
        try:
            assert hostile._transport is not None
            hostile._transport.write(_frame(0x1, b'{"x": "' + b"y" * (2 << 20) + b'"}'))
            try:
                await asyncio.wait_for(hostile.closed.wait(), 10)
            except TimeoutError:
                return False, True
            await asyncio.sleep(0.5)
            return True, not bystander.closed.is_set()
        finally:
            hostile.close()
            bystander.close()

    closed, others_fine = asyncio.run(send_too_much())
    assert closed, "the oversized message closed its sender's connection"
    assert others_fine, "and no one else's"


def test_a_page_made_for_others_carries_no_drawing_of_the_session_it_was_made_from(
    hub: Hub,
) -> None:
    """The first pull's page serves every session of its look for a second: a client that drew
    before it pulled must not put its strokes (or what the model read in them) on them."""
    broadcast = Broadcast(hub, ViewerSettings(), live=True, schedule=False)
    drawer, other = audience(hub), audience(hub)
    follower = broadcast.follow(drawer)
    pad = drawer.page.pad
    assert pad is not None
    pad.strokes.data = {"xs": [[0.5, 0.5]], "ys": [[0.2, 0.8]]}  # as the browser sends it
    assert pad.strokes.data["xs"] and pad.image is not None
    page = follower.pulled(lambda: page_json(drawer.doc))
    assert pad.strokes.data == {"xs": [], "ys": []} and pad.image is None
    broadcast.copy_into(other.doc, loud=False)
    assert page == page_json(other.doc), "the page is what any session of its look would get"
