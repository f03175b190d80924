"""The drawing pad's parts: the model message's forward pass, the raster MNIST would have made
of the strokes, and the bounds on what a browser may send as a drawing."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.request

import numpy as np
import PIL.Image
import pytest
from bokeh.client import pull_session

from protocol import Architecture, ModelWeights
from protocol.network import layers, probabilities
from tests.conftest import broker_and_viewer, shared_dataset, synthetic_trainer, wait_until
from tests.documents import receive
from tests.recordings import parameter_count
from tests.test_ops import parse_metrics
from trainer.mlp import MLP
from viewer.drawing import strokes as bounds
from viewer.drawing.raster import BOX, SIZE, rasterize


def model_message(net: MLP) -> ModelWeights:
    return ModelWeights(
        run_id="run-draw",
        seq=0,
        sent_at=1.0,
        step=7,
        epoch=0,
        architecture=Architecture(layer_sizes=net.layer_sizes, activation=net.activation),
        parameters=np.concatenate([p.ravel() for p in net.params]),
    )


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_the_model_message_computes_what_the_trainer_computes(activation: str) -> None:
    rng = np.random.default_rng(1)
    net = MLP([784, 24, 12, 10], activation, rng)
    for p in net.params:
        p += rng.normal(0, 0.05, p.shape).astype(np.float32)  # biases away from 0 too
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    message = model_message(net)
    assert [w.shape for w, _ in layers(message)] == [(784, 24), (24, 12), (12, 10)]
    expected = net.predict_proba(images.reshape(5, -1).astype(np.float32) / 255)
    got = probabilities(message, images)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(got.sum(axis=1), 1)
    assert parameter_count(net.layer_sizes) == message.parameters.size


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image > 30)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def test_a_stroke_becomes_an_mnist_digit_fitted_into_20x20_and_centred_by_mass() -> None:
    """A tall stroke drawn small in a corner comes out 20 pixels tall, thick, grey at its
    edges, and with its centre of mass in the middle of 28x28, as MNIST's 1s are."""
    one = [([0.10, 0.11, 0.12], [0.05, 0.2, 0.35])]
    image = rasterize(one)
    assert image is not None and image.shape == (SIZE, SIZE) and image.dtype == np.uint8
    height, width = ink_box(image)
    assert BOX - 2 <= height <= BOX and 2 <= width <= 6, (height, width)
    row, col = centre_of_mass(image.astype(np.float64))
    assert abs(row - 13.5) <= 1 and abs(col - 13.5) <= 1, (row, col)
    assert image.max() >= 250 and ((image > 0) & (image < 200)).any(), "anti-aliased edges"
    assert image[0].max() == image[-1].max() == 0, "a margin of paper above and below"


def test_a_round_digit_keeps_its_aspect_and_a_drawing_is_where_it_is_drawn() -> None:
    t = np.linspace(0, 2 * np.pi, 60)
    zero = [(list(0.5 + 0.15 * np.cos(t)), list(0.5 + 0.3 * np.sin(t)))]
    image = rasterize(zero)
    assert image is not None
    height, width = ink_box(image)
    assert BOX - 2 <= height <= BOX and 9 <= width <= 14, (height, width)  # 1:2, plus the pen
    assert image[14, 14] < 60, "a 0 is hollow"
    moved = rasterize([([x + 0.3 for x in xs], ys) for xs, ys in zero])
    assert moved is not None and np.abs(moved.astype(int) - image.astype(int)).max() <= 1
    assert rasterize([]) is None and rasterize([([], [])]) is None
    dot = rasterize([([0.5], [0.5])])
    assert dot is not None and dot.max() > 200


def test_what_a_browser_sends_as_a_drawing_is_bounded_in_size_and_shape() -> None:
    assert bounds.acceptable({"type": "map", "entries": [["xs", [[0.1, 0.2]]]]}) is None
    too_many = [[0.5] * (bounds.MAX_POINTS + 100)]
    assert "points" in (bounds.acceptable({"xs": too_many, "ys": too_many}) or "")
    deep: list = [0.1]
    for _ in range(12):
        deep = [deep]
    assert "nested" in (bounds.acceptable(deep) or "")
    assert "'object'" in (bounds.acceptable({"type": "object", "name": "Div"}) or "")
    assert bounds.acceptable({"xs": [[{1, 2}]]}) is not None
    empties: list = [[[]] * 4500] * 2  # no number at all, yet memory once applied
    assert "points" in (bounds.acceptable({"xs": empties, "ys": []}) or "")
    assert "reference" in (bounds.acceptable({"xs": [[{"id": "p1001"}]]}) or "")
    assert "text" in (bounds.acceptable({"xs": [["x" * 1000]]}) or "")
    assert bounds.acceptable({"xs": [[10**400]], "ys": [[0.5]]}) is None  # a number: sized
    with pytest.raises(bounds.DrawingRefused, match="finite"):
        bounds.strokes({"xs": [[10**400]], "ys": [[0.5]]})

    good = bounds.strokes({"xs": [[0.1, 0.2], [0.5]], "ys": [[0.3, 0.4], [0.5]]})
    assert good == [([0.1, 0.2], [0.3, 0.4]), ([0.5], [0.5])]
    for data, why in [
        ({"xs": [[0.1]]}, "malformed"),
        ({"xs": [[0.1, 0.2]], "ys": [[0.1]]}, "malformed"),
        ({"xs": [["0.1"]], "ys": [[0.1]]}, "malformed"),
        ({"xs": [[float("nan")]], "ys": [[0.1]]}, "malformed"),
        ({"xs": [[7.0]], "ys": [[0.1]]}, "malformed"),
        ({"xs": [[True]], "ys": [[0.1]]}, "malformed"),
        ({"xs": [[0.1]] * 30, "ys": [[0.1]] * 30}, "size"),
        ({"xs": [[0.1] * 3000] * 2, "ys": [[0.1] * 3000] * 2}, "size"),
    ]:
        with pytest.raises(bounds.DrawingRefused) as refused:
            bounds.strokes(data)
        assert refused.value.why == why, data


def test_a_session_reads_its_drawing_at_most_ten_times_a_second() -> None:
    allowance = bounds.Allowance(rate=10, burst=5)
    assert sum(allowance.take(0.0) for _ in range(20)) == 5
    assert allowance.take(0.05) is False
    assert allowance.take(0.11) is True
    assert sum(allowance.take(1.0 + i / 100) for i in range(100)) <= 5 + 10 + 1


# -- through a real viewer's Bokeh session ----------------------------------------------------

ONE = [([0.52, 0.50, 0.48], [0.85, 0.5, 0.12])]
ZERO_T = np.linspace(0, 2 * np.pi, 50)
ZERO = [(list(0.5 + 0.22 * np.cos(ZERO_T)), list(0.5 + 0.36 * np.sin(ZERO_T)))]


def draw(session, strokes: list) -> str:
    """Send ``strokes`` as the browser's pen would (the ``drawing`` source's data set whole)
    and wait for the pad's new caption."""
    doc = session.document
    caption = doc.get_model_by_name("drawing_caption")
    before = caption.text
    doc.get_model_by_name("drawing").data = {
        "xs": [list(xs) for xs, _ in strokes],
        "ys": [list(ys) for _, ys in strokes],
    }

    def changed() -> str | None:
        receive([session], 0.2)
        return caption.text if caption.text != before else None

    return wait_until(changed, 20, interval=0, message="the pad's reading")


def seen(html: str) -> np.ndarray:
    """The pixels of the pad's "as it sees it" picture (a PNG in the page)."""
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert data, html
    return np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(data.group(1)))))


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return parse_metrics(text).get(f"mnist_live_viewer_{name}", 0.0)


@pytest.mark.slow
def test_a_drawn_1_and_0_are_read_right_by_a_model_trained_on_real_mnist(
    programs, endpoint
) -> None:
    data = shared_dataset("mnist-10k")
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    trainer = programs.start(
        "train", "--connect", broker_in, "--dataset", str(data), "--hidden", "128",
        "--optimizer", "adam", "--lr", "0.001", "--batch-size", "64", "--epochs", "3",
        "--model-every", "1", "--quiet",
    )  # fmt: skip
    assert trainer.wait(180) == 0, programs.output(trainer)
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:
        receive([session], 0.5)
        read = draw(session, ONE)
        assert "reads 1 " in re.sub("<[^>]+>", "", read), read
        shown = session.document.get_model_by_name("drawing_probabilities").data
        assert shown["kind"][1] == "predicted", shown
        assert max(shown["probability"]) == shown["probability"][1], shown
        image = seen(session.document.get_model_by_name("drawing_image").text)
        assert image.shape == (28, 28) and image.max() >= 250 and image[:, :4].max() == 0
        read = draw(session, ZERO)
        assert "reads 0 " in re.sub("<[^>]+>", "", read), read
        assert metric(port, 'drawings_total{outcome="read"}') == 2
    finally:
        session.close()


@pytest.mark.slow
def test_malformed_and_oversized_drawings_are_dropped_and_counted_and_the_pad_goes_on(
    programs, endpoint
) -> None:
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    synthetic_trainer(  # paced: a run still sending when the test looks (not over in 0.5 s)
        programs, broker_in, "--hidden", "16", "--model-every", "0.5", "--steps-per-second", "50"
    )
    session = pull_session(url=f"http://127.0.0.1:{port}/")
    try:
        receive([session], 0.5)
        pad = session.document.get_model_by_name("drawing")
        pad.data = {"xs": [[0.5, 9.0]], "ys": [[0.5, 0.5]]}  # off the pad
        receive([session], 0.3)
        pad.data = {"xs": [["a", "b"]], "ys": [[0.5, 0.5]]}  # not numbers
        receive([session], 0.3)
        huge = [[0.5] * (bounds.MAX_POINTS + 10)] * 2
        pad.data = {"xs": huge, "ys": huge}  # refused before Bokeh applies it

        def counted() -> bool:
            receive([session], 0.1)  # the client sends its changes while its loop runs
            refused = metric(port, 'browser_changes_refused_total{why="drawing"}')
            return refused == 1 and metric(port, 'drawings_total{outcome="malformed"}') == 2

        wait_until(counted, 10, message="the drops counted")
        wait_until(lambda: metric(port, "messages_received_total") >= 30, 30, message="a run")
        time.sleep(1.5)  # past the trainer's first models (every 0.5 s)
        assert "reads" in draw(session, ONE)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        assert health["ok"] and health["hub"]["receiving"], health
    finally:
        session.close()


PAD_BOX = """
const doc = Bokeh.documents[0];
const pad = doc && doc.get_model_by_name("drawing_pad");
if (!pad) return null;
const view = [...Bokeh.index.find(pad)][0];
if (!view) return null;
const el = view.el.getBoundingClientRect(), frame = view.frame.bbox;
return {left: el.left + frame.left, top: el.top + frame.top, width: frame.width,
        height: frame.height};
"""
READING = """
const doc = Bokeh.documents[0];
const shown = doc.get_model_by_name("drawing_probabilities").data;
const p = shown.get ? shown.get("probability") : shown.probability;
return {bars: p ? p.length : 0, caption: doc.get_model_by_name("drawing_caption").text};
"""


def stroke_points(box: dict, strokes: list) -> list[list[tuple[float, float]]]:
    """Each stroke's points in page pixels (the pad's y grows upwards, the page's down)."""
    return [
        [
            (box["left"] + x * box["width"], box["top"] + (1 - y) * box["height"])
            for x, y in zip(xs, ys, strict=True)
        ]
        for xs, ys in strokes
    ]


def mouse_draw(browser, points: list[tuple[float, float]]) -> None:
    def mouse(kind: str, x: float, y: float) -> None:
        browser.execute_cdp_cmd(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1},
        )

    mouse("mouseMoved", *points[0])
    mouse("mousePressed", *points[0])
    for x, y in points[1:]:
        mouse("mouseMoved", x, y)
    mouse("mouseReleased", *points[-1])


def touch_draw(browser, points: list[tuple[float, float]]) -> None:
    def touch(kind: str, at: list[tuple[float, float]]) -> None:
        browser.execute_cdp_cmd(
            "Input.dispatchTouchEvent",
            {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in at]},
        )

    touch("touchStart", points[:1])
    for point in points[1:]:
        touch("touchMove", [point])
    touch("touchEnd", [])


def dense(strokes: list, per_stroke: int = 12) -> list:
    """Strokes with points close together, as a real pen's are."""
    out = []
    for xs, ys in strokes:
        t = np.linspace(0, 1, len(xs))
        u = np.linspace(0, 1, per_stroke * max(1, len(xs) - 1))
        out.append((list(np.interp(u, t, xs)), list(np.interp(u, t, ys))))
    return out


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("pointer", ["mouse", "touch"])
def test_a_digit_drawn_in_chromium_gets_its_probabilities(
    programs, endpoint, browser, pointer
) -> None:
    broker_in, _, port, _ = broker_and_viewer(programs, endpoint)
    synthetic_trainer(  # paced: a run still sending when the test looks (not over in 0.5 s)
        programs, broker_in, "--hidden", "16", "--model-every", "0.5", "--steps-per-second", "50"
    )
    if pointer == "touch":
        browser.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    browser.get(f"http://127.0.0.1:{port}/")
    box = wait_until(lambda: browser.execute_script(PAD_BOX), 30, message="the pad")
    assert box["width"] > 100 and box["height"] > 100, box
    wait_until(lambda: metric(port, "messages_received_total") >= 30, 30, message="a run")
    time.sleep(1.5)  # past the trainer's first models (every 0.5 s)
    draw_with = mouse_draw if pointer == "mouse" else touch_draw
    for points in stroke_points(box, dense(ZERO)):
        draw_with(browser, points)
    reading = wait_until(
        lambda: (r := browser.execute_script(READING))["bars"] == 10 and r, 15, message="bars"
    )
    assert "reads" in reading["caption"], reading
    assert metric(port, 'drawings_total{outcome="read"}') >= 1


def test_each_new_model_reads_every_drawing_again() -> None:
    """A pad with a drawing reads it again with each new model (the room watches its digit's
    answer change as the network learns); a pad without one is left alone."""
    from bokeh.document import Document

    from viewer.drawing.pad import Pad
    from viewer.drawing.room import Room
    from viewer.panels.looks import look

    rng = np.random.default_rng(0)
    first, second = (model_message(MLP([784, 8, 10], "relu", rng)) for _ in range(2))
    second = second.model_copy(update={"step": 99})
    latest: list = [first]
    drawn, idle = Pad(look("light", False)), Pad(look("light", False))
    for pad in (drawn, idle):
        pad.attach(Document(), lambda: (latest[0], [str(d) for d in range(10)]))
    room = Room()
    room.join(drawn)
    room.join(idle)
    room.latest(first)  # no drawing yet: nothing to read
    assert not drawn.doc.session_callbacks and not idle.doc.session_callbacks
    drawn._drawn("data", None, {"xs": [ONE[0][0]], "ys": [ONE[0][1]]})
    assert drawn.read_model is first and "step 7" in drawn.caption.text
    assert len(drawn.probabilities.data["probability"]) == 10

    room.latest(first)  # the same model again: nothing to do
    assert not drawn.doc.session_callbacks
    latest[0] = second
    room.latest(second)
    (callback,) = drawn.doc.session_callbacks  # the pad's session reads it, under its lock
    assert not idle.doc.session_callbacks
    callback.callback()
    assert drawn.read_model is second and "step 99" in drawn.caption.text


def test_the_rooms_digits_are_scored_with_each_model_and_shown_on_every_page(
    monkeypatch,
) -> None:
    """Twenty drawings, each labelled by its pad's "I meant" buttons: the room reads as many
    right as a forward pass done here says, and the page shows it, as words and a curve."""
    from bokeh.document import Document

    from viewer import dashboard
    from viewer.dashboard import Dashboard
    from viewer.drawing.pad import Pad
    from viewer.drawing.raster import rasterize
    from viewer.drawing.room import Room
    from viewer.panels.looks import look
    from viewer.runs.state import RunHistory
    from viewer.server.settings import ViewerSettings
    from viewer.sources.fixed import FixedRun

    rng = np.random.default_rng(3)
    net = MLP([784, 16, 10], "relu", rng)
    model = model_message(net)
    room = Room()
    pads = [Pad(look("light", False)) for _ in range(4)]
    for pad in pads:
        pad.attach(Document(), lambda: (model, [str(d) for d in range(10)]))
        room.join(pad)
    images, labels = [], []
    for i in range(20):
        pad = pads[i % len(pads)]
        t = np.linspace(0, 1, 12)
        strokes = [
            (
                list(rng.uniform(0.1, 0.9) + 0.3 * np.cos(3 * t + rng.uniform(0, 6)) * t),
                list(rng.uniform(0.1, 0.9) + 0.3 * np.sin(2 * t) * (1 - t)),
            )
        ]
        strokes = [
            ([min(1, max(0, x)) for x in xs], [min(1, max(0, y)) for y in ys]) for xs, ys in strokes
        ]
        pad._drawn("data", None, {"xs": [strokes[0][0]], "ys": [strokes[0][1]]})
        label = int(rng.integers(0, 10))
        pad.meant.active = label  # as a click on the button does
        images.append(rasterize(strokes))
        labels.append(label)
    assert len(room.digits) == 20, "each new drawing is a new digit, however its pad was used"
    expected = int((probabilities(model, np.stack(images)).argmax(axis=1) == labels).sum())

    room.latest(model)
    assert room.correct == expected
    assert room.scores == {"step": [7], "accuracy": [round(expected / 20, 4)]}
    monkeypatch.setattr(dashboard, "room", room)  # the process's room, as this test's
    doc = Document()
    Dashboard(doc, FixedRun(RunHistory(model.run_id)), ViewerSettings(), live=False)
    words = doc.get_model_by_name("room_digits").text
    assert f"reads {expected} of the room's 20 digits" in words, words
    assert doc.get_model_by_name("room_accuracy").data["accuracy"] == [round(expected / 20, 4)]


def test_a_closed_sessions_pad_leaves_the_room_and_a_failing_one_holds_up_no_other() -> None:
    from bokeh.document import Document

    from viewer.drawing.pad import Pad
    from viewer.drawing.room import Room
    from viewer.panels.looks import look

    rng = np.random.default_rng(5)
    model = model_message(MLP([784, 8, 10], "relu", rng))
    room = Room()
    pads = [Pad(look("light", False)) for _ in range(3)]
    for pad in pads:
        pad.attach(Document(), lambda: (model, [str(d) for d in range(10)]))
        room.join(pad)
        pad._drawn("data", None, {"xs": [ONE[0][0]], "ys": [ONE[0][1]]})

    def closed(_callback) -> None:
        raise AttributeError("'Document' object has no attribute '_change_callbacks'")

    pads[0].doc.add_next_tick_callback = closed  # as a destroyed session's document does
    room.leave(pads[2])
    newer = model.model_copy(update={"step": 8})
    room.latest(newer)
    assert pads[0] not in room.pads, "a pad that cannot be reached leaves"
    assert len(pads[1].doc.session_callbacks) == 1, "the others still read the new model"
    assert not pads[2].doc.session_callbacks, "a pad that left is not asked"


def test_kept_drawings_are_an_npz_anyone_can_load_without_pickle(tmp_path) -> None:
    """``--keep-drawings DIR``: the room's labelled digits as uint8 images and labels, the
    file replaced whole; a folder that goes away costs a log line, not the room."""
    from viewer.drawing.raster import rasterize
    from viewer.drawing.room import Room

    room = Room()
    room.keep_in(tmp_path)
    first = rasterize(ONE)
    second = rasterize(ZERO)
    assert first is not None and second is not None
    digit = room.label(first, 1)
    room.label(second, 0)
    room.label(first, 7, digit)  # its author changed their mind
    room.latest(None)  # the frame tick: written (no model needed)
    with np.load(tmp_path / "room-digits.npz", allow_pickle=False) as kept:
        assert kept["images"].dtype == np.uint8 and kept["images"].shape == (2, 28, 28)
        assert kept["labels"].tolist() == [7, 0]
        assert np.array_equal(kept["images"][1], second)
    assert not list(tmp_path.glob(".*partial")), "no half-written file left behind"

    room.keep_in(tmp_path / "gone")  # a folder that is not there: logged, the room goes on
    room.label(second, 3)
    room.save()
    assert len(room.digits) == 3


def test_the_wall_shows_only_the_drawings_their_authors_put_there_newest_first() -> None:
    from bokeh.document import Document

    from viewer.drawing.pad import Pad
    from viewer.drawing.room import Room
    from viewer.drawing.wall import Wall, tiles, wall_html
    from viewer.panels.looks import look

    rng = np.random.default_rng(6)
    model = model_message(MLP([784, 8, 10], "relu", rng))
    room = Room()
    room.model = model
    pads = [Pad(look("light", False)) for _ in range(4)]
    for i, pad in enumerate(pads):
        pad.attach(Document(), lambda: (model, [str(d) for d in range(10)]))
        room.join(pad)
        if i < 3:  # the fourth draws nothing
            pad._drawn("data", None, {"xs": [ONE[0][0]], "ys": [ONE[0][1]]})
            pad.drawn_at = 100.0 + i
        pad.on_wall.active = i != 1  # the second keeps its drawing to itself
    shown = tiles(room)
    assert [t.png for t in shown] == [pads[2].png, pads[0].png], "opted in, drawn, newest first"
    assert shown[0].reads == pads[2].read_as[0]  # type: ignore[index]
    assert "reads <b>" in wall_html(shown, 7) and "step 7" in wall_html(shown, 7)
    assert "No drawing on the wall yet" in wall_html([], None)

    allowed: list[str] = []
    wall = Wall(look("dark", False), room, lambda action: bool(allowed.append(action)) or True)
    wall.refresh()
    assert wall.tiles.text == "", "a closed wall draws nothing"
    wall.show(True)
    assert allowed == ["show_wall"] and wall.tiles.text.count("<img") == 2
    pads[0].forget()
    wall.refresh()
    assert wall.tiles.text.count("<img") == 1, "a cleared pad leaves the wall"
    refused = Wall(look("light", False), room, lambda action: False)
    refused.show(True)
    assert not refused.overlay.visible


@pytest.mark.slow
def test_only_the_presenter_gets_the_wall_and_it_shows_the_rooms_opted_in_drawing(
    programs, endpoint
) -> None:
    from bokeh.events import ButtonClick

    from protocol.endpoints import free_tcp_port, free_tcp_port_pair

    token = "wall-token-123"
    broker_in, port = endpoint(), free_tcp_port()
    broker_out = f"tcp://127.0.0.1:{free_tcp_port_pair()}"
    programs.start("broker", "--in", broker_in, "--out", broker_out)
    viewer = programs.start(
        "view", "--connect", broker_out, "--port", str(port), "--presenter-token", token
    )
    wait_until(lambda: "dashboard at" in programs.output(viewer), 30, message="the viewer")
    synthetic_trainer(programs, broker_in, "--steps-per-second", "50", "--model-every", "0.5")
    url = f"http://127.0.0.1:{port}/"
    audience = pull_session(url=url)
    presenter = pull_session(url=url, arguments={"token": token})
    try:
        assert audience.document.get_model_by_name("show_wall") is None
        assert presenter.document.get_model_by_name("show_wall") is not None
        audience.document.get_model_by_name("drawing_wall").active = True
        draw(audience, ONE)
        caption = audience.document.get_model_by_name("drawing_caption")
        wait_until(  # read again once the trainer's first model is in
            lambda: receive([audience], 0.2) or "reads" in caption.text, 20, message="a reading"
        )
        presenter.document.callbacks.send_event(
            ButtonClick(presenter.document.get_model_by_name("show_wall"))
        )
        tiles = presenter.document.get_model_by_name("wall_tiles")
        wait_until(
            lambda: receive([presenter], 0.2) or "reads <b>" in tiles.text, 10, message="the wall"
        )
        assert tiles.text.count("<img") == 1
    finally:
        audience.close()
        presenter.close()
