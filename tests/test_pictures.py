"""Pictures on the wire: keys and residuals add up to the picture, within the byte budget."""

from __future__ import annotations

import numpy as np
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent, ModelChangedEvent
from bokeh.models import ColumnDataSource

from viewer.panels.pictures import PictureStream, compacted, decode, show, still


def drifting(seed: int, count: int, size: int = 96, step: float = 2.0) -> list[np.ndarray]:
    """Noise-like pictures (as weight mosaics are) that drift by about ``step`` levels each."""
    rng = np.random.default_rng(seed)
    picture = rng.normal(128, 40, (size, size))
    pictures = []
    for _ in range(count):
        picture = picture + rng.normal(0, step, picture.shape)
        pictures.append(np.clip(picture, 1, 255).round().astype(np.uint8))
    return pictures


def test_a_still_picture_and_its_compacted_rows_decode_exactly() -> None:
    picture = drifting(0, 1)[0]
    columns = still(picture, dw=96, dh=96)
    assert columns["row"] == [0] and columns["dw"] == [96]
    assert np.array_equal(decode(columns), picture)
    assert decode({"bytes": [], "height": [], "width": []}) is None


def test_unbudgeted_rows_add_up_to_every_picture_and_a_new_picture_is_a_key() -> None:
    stream = PictureStream()
    pictures = drifting(1, 6, step=1.0)
    for t, picture in enumerate(pictures):
        rows = stream.update(picture, float(t))
        assert np.array_equal(decode(rows), picture)
    assert len(rows["bytes"]) == 6, "small changes travel as residuals"
    assert rows["row"] == list(range(6)) and len(set(rows["key"])) == 1
    whole = compacted(rows)
    assert len(whole["bytes"]) == 1 and whole["row"] == [5] and whole["key"] == rows["key"][:1]
    assert np.array_equal(decode(whole), pictures[-1])

    other = np.random.default_rng(9).integers(1, 256, (96, 96), dtype=np.uint8)
    rows = stream.update(other, 6.0)
    assert len(rows["bytes"]) == 1 and rows["key"][0] != whole["key"][0], "a new key"
    assert np.array_equal(decode(rows), other)
    reshaped = np.ones((10, 12), np.uint8)
    assert np.array_equal(decode(stream.update(reshaped, 7.0)), reshaped)


def test_a_budgeted_stream_keeps_to_its_rate_and_becomes_exact_when_changes_stop() -> None:
    rate, burst = 3_000.0, 30_000.0
    stream = PictureStream(rate=rate, burst=burst)
    pictures = drifting(2, 40, step=4.0)
    errors = []
    for t, picture in enumerate(pictures):
        rows = stream.update(picture, float(t))
        errors.append(np.abs(decode(rows).astype(int) - picture).mean())
    first_key = len(rows["bytes"][0])
    assert stream.sent_bytes <= burst + rate * 39 + first_key
    assert max(errors) > 0, "changes this fast do not fit: the budget made the picture lag"
    assert max(errors) < 6, "but only by a few levels"
    still_picture = pictures[-1]
    for t in range(40, 60):
        rows = stream.update(still_picture, float(t))
    assert np.array_equal(decode(rows), still_picture), "the budget catches up when it can"
    assert np.array_equal(stream.shown, still_picture)


def test_a_long_log_is_replaced_by_a_key() -> None:
    stream = PictureStream(max_log=4_000)
    pictures = drifting(3, 12, step=3.0)
    keys = set()
    for t, picture in enumerate(pictures):
        rows = stream.update(picture, float(t))
        keys.add(rows["key"][0])
        assert sum(len(b) for b in rows["bytes"][1:]) <= 4_000 + len(rows["bytes"][-1])
        assert np.array_equal(decode(rows), picture)
    assert len(keys) > 1


def test_show_streams_only_the_rows_a_source_lacks() -> None:
    doc = Document()
    source = ColumnDataSource(data={"bytes": [], "height": [], "width": [], "key": [], "row": []})
    doc.add_root(source)
    events: list = []
    doc.on_change(events.append)
    stream = PictureStream()
    pictures = drifting(4, 4, step=1.0)

    show(source, stream.update(pictures[0], 0.0))
    assert isinstance(events[-1], ModelChangedEvent | ColumnDataChangedEvent)
    show(source, stream.update(pictures[1], 1.0))
    assert isinstance(events[-1], ColumnsStreamedEvent)
    assert events[-1].data["row"] == [1]
    count = len(events)
    show(source, stream.update(pictures[1], 1.5))
    assert len(events) == count, "nothing new, nothing sent"

    joined = ColumnDataSource(data=compacted(stream.update(pictures[2], 2.0)))
    doc.add_root(joined)
    rows = stream.update(pictures[3], 3.0)
    show(joined, rows)
    assert isinstance(events[-1], ColumnsStreamedEvent) and events[-1].data["row"] == [3]
    assert np.array_equal(decode(dict(joined.data)), pictures[3])
    rows["bytes"].append(np.zeros(1, np.uint8))  # shown sources own their lists
    assert len(source.data["bytes"]) == 2 and len(joined.data["bytes"]) == 2


def test_a_key_larger_than_a_burst_still_goes_once_the_budget_is_full() -> None:
    stream = PictureStream(rate=1_000.0, burst=2_000.0, max_log=3_000)
    pictures = drifting(5, 80, step=3.0)
    keys = set()
    for t, picture in enumerate(pictures):
        rows = stream.update(picture, float(t))
        keys.add(rows["key"][0])
    assert len(rows["bytes"][0]) > 2_000, "the key is larger than a burst"
    assert len(keys) > 1, "yet new keys went out: the mosaic never freezes"
    assert stream.sent_bytes <= 2_000 + 1_000 * 79 + 2 * len(rows["bytes"][0])


def test_a_replaced_source_gets_one_key_not_the_whole_log() -> None:
    stream = PictureStream()
    for t, picture in enumerate(drifting(6, 5, step=1.0)):
        rows = stream.update(picture, float(t))
    assert len(rows["bytes"]) == 5
    source = ColumnDataSource(data=still(drifting(7, 1)[0]))
    show(source, rows)
    assert len(source.data["bytes"]) == 1 and source.data["row"] == [4]
    assert np.array_equal(decode(dict(source.data)), decode(rows))
