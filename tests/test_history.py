"""RunHistory: what the hub folds once so every session's frame is a slice or an assignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from protocol.cli.durations import format_duration
from tests.recordings import Feed, piece
from viewer.dashboard import RENDER
from viewer.panels.evaluation import gallery_mosaic
from viewer.panels.pictures import decode
from viewer.runs.columns import Columns, Cursor
from viewer.runs.state import SMOOTHING, RunHistory
from viewer.sources.live import Hub


def test_smoothing_is_a_debiased_ema_of_loss_and_batch_accuracy() -> None:
    feed, run = Feed(), RunHistory("run-a")
    losses = [2.0, 1.0, 4.0, 0.5]
    for step, loss in enumerate(losses, 1):
        run.apply(feed.metrics(step, loss=loss, accuracy=loss / 10))
    average, expected = 0.0, []
    for t, loss in enumerate(losses, 1):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        expected.append(average / (1 - SMOOTHING**t))
    curve = run.curves["loss"].data
    assert curve["loss"] == losses
    assert curve["loss_smooth"] == pytest.approx(expected)
    assert curve["accuracy_smooth"] == pytest.approx([e / 10 for e in expected])
    assert curve["loss_smooth"][0] == losses[0], "debiased: the first point is not pulled to 0"
    assert len(curve["sent_at"]) == len(losses) and all(t > 0 for t in curve["sent_at"])


def test_status_follows_the_trainer_and_the_end_of_the_run() -> None:
    feed, run = Feed(), RunHistory("run-a")
    assert run.status == "waiting"
    run.apply(feed.started())
    run.apply(feed.status(0, "waiting"))
    assert run.status == "waiting"
    run.apply(feed.status(0, "training"))
    run.apply(feed.metrics(10))
    assert (run.status, run.step) == ("training", 10)
    run.apply(feed.status(12, "paused"))
    assert (run.status, run.step) == ("paused", 12)
    run.apply(feed.status(12, "training"))
    assert run.status == "training"
    for ending, word in (
        ("completed", "finished"),
        ("stopped", "stopped"),
        ("diverged", "diverged"),
    ):
        ended = RunHistory("run-a")
        ended.apply(Feed().finished(40, ending))
        assert ended.status == word
        assert word in piece(ended, "header")["html"]


def test_replayed_messages_mark_the_run_as_a_replay() -> None:
    run = RunHistory("run-a")
    run.apply(Feed().metrics(3).model_copy(update={"replayed": True}))
    assert run.status == "replay"


def test_each_piece_has_a_version_and_a_cursor_gets_only_what_changed() -> None:
    feed, run = Feed(), RunHistory("run-a")
    run.apply(feed.started())
    run.apply(feed.metrics(1))
    run.apply(feed.metrics(2))
    cursor = Cursor()
    first = run.changes(cursor)
    assert first.rows["loss"]["step"] == [1, 2]
    assert set(first.parts) == {"header"}
    assert not run.changes(cursor), "nothing new, nothing to send"

    run.apply(feed.sample(2))
    run.apply(feed.metrics(3))
    second = run.changes(cursor)
    assert second.rows == {"loss": {c: v[-1:] for c, v in run.curves["loss"].data.items()}}
    assert set(second.parts) == {"header", "sample"}
    sample = piece(run, "sample")
    assert sample["probabilities"]["kind"][3] == "true"
    assert sample["probabilities"]["kind"][5] == "predicted"
    assert np.array_equal(decode(sample["sample_image"]), np.flipud(feed.sample(2).image))

    run.apply(feed.evaluation(3))
    run.apply(feed.evaluation(3, split="test"))
    run.apply(feed.weights(3))
    third = run.changes(cursor)
    assert set(third.rows) == {"accuracy", "test_accuracy"}
    assert set(third.parts) == {"header", "evaluation", "weights"}
    assert run.versions["evaluation"] == 2
    assert cursor.versions["weights"] == run.versions["weights"] == 1


def test_evaluation_piece_normalises_confusion_rows_and_keeps_counts() -> None:
    feed, run = Feed(), RunHistory("run-a")
    run.apply(feed.started())
    run.apply(feed.evaluation(5, mistakes=3))
    piece = RENDER["evaluation"](run)
    rates = np.array(piece["confusion"]["rate"]).reshape(10, 10)
    counts = np.array(piece["confusion"]["count"]).reshape(10, 10)
    assert np.allclose(rates.sum(axis=1), 1.0)
    assert rates[1, 7] == pytest.approx(0.2) and counts[1, 7] == 2
    assert piece["confusion"]["true"][17] == "1" and piece["confusion"]["predicted"][17] == "7"
    assert piece["per_class"]["accuracy"][1] == pytest.approx(0.8)
    assert piece["misclassified"]["label"] == ["1 \N{RIGHTWARDS ARROW} 7"] * 3
    assert piece["misclassified"]["index"] == [0, 1, 2]


def test_the_mistakes_become_one_mosaic_each_tile_where_its_row_says() -> None:
    images = [np.full((28, 28), 10 * (i + 1), np.uint8) for i in range(10)]  # 4 + 4 + 2
    images[0][0, 0] = 0  # a black pixel stays visible (1), unlike a gap (0)
    piece = gallery_mosaic(images)
    [mosaic], [x0], [y0] = piece["image"], piece["x"], piece["y"]
    assert mosaic.shape == (piece["dh"][0], piece["dw"][0]) == (3 * 40, 4 * 32 - 4)
    rows, columns = np.divmod(np.arange(10), 4)
    for i, (r, c) in enumerate(zip(rows, columns, strict=True)):
        x, y = c * 32, -r * 40  # the misclassified row's position: the tile's lower left
        bottom = y - y0  # mosaic rows count from the bottom (the image is flipped for Bokeh)
        tile = mosaic[bottom : bottom + 28, x - x0 : x - x0 + 28]
        expected = np.flipud(np.maximum(images[i], 1))
        np.testing.assert_array_equal(tile, expected)
    assert mosaic[:12].max() == 0  # the last row's caption gap is transparent
    assert gallery_mosaic([])["image"] == []


def test_weights_become_one_mosaic_with_transparent_gaps() -> None:
    feed, run = Feed(), RunHistory("run-a")
    run.apply(feed.weights(1, tiles=10))  # 4 columns x 3 rows
    mosaic = decode(piece(run, "weights")["weights"])
    assert mosaic is not None
    assert mosaic.shape == (3 * 29 - 1, 4 * 29 - 1) and mosaic.dtype == np.uint8
    top = np.flipud(mosaic)
    assert (top[:28, :28] >= 1).all(), "weight pixels are never the gap value"
    assert (top[28, :] == 0).all() and (top[:, 28] == 0).all(), "1px gaps between tiles"
    assert (top[2 * 29 :, 2 * 29 :] == 0).all(), "the missing 11th and 12th tiles stay empty"


def test_eta_comes_from_speed_and_steps_left() -> None:
    feed, run = Feed(), RunHistory("run-a")
    run.apply(feed.started(total_steps=100))
    assert run.eta_seconds() is None
    run.apply(feed.metrics(20, speed=320.0))  # 10 steps/s of batch 32
    assert run.eta_seconds() == pytest.approx(8.0)
    assert "ETA 8s" in piece(run, "header")["html"]
    run.apply(feed.status(20, "paused"))
    assert run.eta_seconds() is None
    run.apply(feed.finished(100))
    assert run.eta_seconds() == 0.0
    assert [format_duration(s, words=True) for s in (5, 75, 3725)] == ["5s", "1m 15s", "1h 02m"]


def test_header_says_synthetic_and_shows_the_run() -> None:
    for synthetic in (True, False):
        run = RunHistory("run-a")
        run.apply(Feed(synthetic=synthetic).started())
        header = piece(run, "header")["html"]
        assert ("SYNTHETIC" in header) == synthetic
        assert "784-32-10 relu" in header and "sgd lr 0.1" in header and "run-a" in header
        assert "epoch 1 / 4" in header


def test_columns_forget_old_rows_but_count_every_row() -> None:
    columns = Columns(("step",), limit=5)
    for step in range(12):
        columns.append({"step": step})
    assert columns.total == 12
    assert len(columns) <= 10
    assert columns.since(0)["step"] == [7, 8, 9, 10, 11], "at most limit rows, the newest"
    assert columns.since(10)["step"] == [10, 11]
    assert columns.since(12)["step"] == []


def test_a_non_finite_loss_never_reaches_a_run() -> None:
    """The protocol refuses NaN and infinities (a diverged run says so in ``run_finished``),
    so no curve or smoothed value is ever poisoned by one."""
    feed = Feed()
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValidationError, match="finite"):
            feed.metrics(2, loss=bad)


def test_hub_keeps_runs_in_order_and_knows_the_previous_one() -> None:
    hub = Hub("tcp://127.0.0.1:1")  # never started: messages are applied directly
    first, second = Feed("run-a"), Feed("run-b")
    hub.apply(first.started())
    hub.apply(first.metrics(1))
    hub.apply(second.started())
    current = hub.current
    assert current is not None and current.run_id == "run-b"
    previous = hub.previous(current)
    assert previous is not None and previous.run_id == "run-a"
    assert hub.previous(previous) is None
    assert hub.run("run-a") is previous and hub.run("missing") is None
    assert previous.overlay()["step"] == [1]


def test_a_part_is_rendered_once_per_version_for_every_session() -> None:
    feed, run = Feed(), RunHistory("run-a")
    run.apply(feed.started())
    run.apply(feed.sample(1))
    calls: list[int] = []

    def render(shown: RunHistory) -> dict:
        calls.append(shown.versions["sample"])
        return RENDER["sample"](shown)

    first = run.rendered("sample", render)
    assert run.rendered("sample", render) is first and calls == [1], "the second session's"
    run.apply(feed.metrics(2))  # another part changed: this one is still as drawn
    assert run.rendered("sample", render) is first and calls == [1]
    run.apply(feed.sample(3))
    assert run.rendered("sample", render) is not first and calls == [1, 2]
    assert run.rendered("sample", RENDER["sample"]) is not None  # another renderer: its own
    assert calls == [1, 2]


def test_each_panel_renders_exactly_its_sources_columns() -> None:
    """The column names are the panel's: what it renders is what its sources hold."""
    from bokeh.document import Document

    from viewer.dashboard import Dashboard
    from viewer.server.settings import ViewerSettings
    from viewer.sources.fixed import FixedRun

    feed, full, empty = Feed(), RunHistory("run-a"), RunHistory("run-b")
    for message in (feed.started(), feed.sample(1), feed.evaluation(1), feed.weights(1)):
        full.apply(message)
    doc = Document()
    Dashboard(doc, FixedRun(full), ViewerSettings(), static=True)
    for part, render in RENDER.items():
        if part == "header":
            assert set(render(full)) == {"html", "status"}
            continue
        for run in (full, empty):
            for name, columns in render(run).items():
                source = doc.get_model_by_name(name)
                assert source is not None, f"{part}: no source {name!r}"
                assert set(columns) == set(source.data), (part, name)  # type: ignore[attr-defined]
