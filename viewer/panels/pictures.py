"""Pictures on the wire: deflated bytes and residuals, decoded in the browser.

A page's pictures (the digit, the weight mosaic, the mistakes gallery) are uint8 images drawn
by colour-mapped :class:`~bokeh.models.Image` glyphs. Sent raw, the weight mosaic alone is
53 kB a second per laptop, most of a room's Wi-Fi. Here a picture travels as a *wire source*
of rows: row 0 a whole picture (a key), each further row a residual, the pixels that changed
since the row before, ``(new - old) mod 256`` with 0 elsewhere; every row deflated (zlib). A
frame appends the new residual to the source (a Bokeh stream: only that row is sent), or
replaces the source with a new key (when that is smaller, or the picture changes shape, or the
rows since the key have grown long: see :class:`PictureStream`). It needs a browser with
``DecompressionStream`` (Chrome 80, Firefox 113, Safari 16.4); an older one says so in the
picture's title. A small ``CustomJS`` inflates the rows
in the browser (its native ``DecompressionStream``), adds them up and gives the result to the
glyph's own *pixels source*, client-side only (``sync: false``), so the colour mapping, and
with it the theme, stays in the browser as before.

The weight mosaic changes by a level or two a second, all over; sent exactly, even its
residuals are 15 kB a second early in a run. :class:`PictureStream` therefore keeps to a byte
budget (``rate``): each residual carries only the pixels that are off by at least the smallest
threshold whose residual fits the budget, so the page is exact when the weights settle and
within a few levels of the truth while they move fast (at the default budget, measured on real
MNIST: mean error under 2.6 levels of 255, at most 11).

A session that opens late gets every picture as one key (:func:`compacted`), whatever rows the
followers' browsers have; the rows that follow apply to either. Why deflate and not PNG or WebP:
a residual is mostly zeros, which zlib packs smaller than PNG's filters (3.1 vs 3.4 kB at
threshold 4), and the browser inflates it without a canvas, so no colour management can touch a
value; lossy WebP, at 22 kB a mosaic, errs by 5.6 levels on average, more than a second's change.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource, CustomJS

from viewer.panels.ids import named_source

CODEC_COLUMNS = ("bytes", "height", "width", "key", "row")
"""Every wire source's columns: a row's deflated pixels, the picture's shape, which key the row
belongs to (unique in the process) and the row's place after that key (a compacted key says how
many rows it holds)."""
LEVEL = 6
"""zlib's level: 9 saves under 2% on these pictures at twice the time."""
THRESHOLDS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
"""Levels a pixel must be off before a budgeted residual carries it (256: none)."""

_keys = itertools.count(1)
_keys_lock = threading.Lock()


def _next_key() -> int:
    with _keys_lock:
        return next(_keys)


def deflated(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` deflated, as a uint8 array (Bokeh sends it as a binary buffer)."""
    packed = zlib.compress(np.ascontiguousarray(pixels, np.uint8).tobytes(), LEVEL)
    return np.frombuffer(packed, np.uint8)


def inflated(row: np.ndarray | bytes, shape: tuple[int, int]) -> np.ndarray:
    raw = zlib.decompress(bytes(row), bufsize=shape[0] * shape[1])
    return np.frombuffer(raw, np.uint8).reshape(shape)


def decode(data: dict[str, Any]) -> np.ndarray | None:
    """The picture a wire source's columns hold (``None`` when it holds none)."""
    rows = data.get("bytes") or []
    if not rows:
        return None
    shape = (int(data["height"][0]), int(data["width"][0]))
    pixels = inflated(rows[0], shape)
    for row in rows[1:]:
        pixels = pixels + inflated(row, shape)  # uint8 wraps around: (old + new - old) mod 256
    return pixels


def empty(extra: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    return {c: [] for c in CODEC_COLUMNS + extra}


def still(pixels: np.ndarray, **extra: Any) -> dict[str, list[Any]]:
    """One picture as a wire source's columns (a key of its own)."""
    height, width = pixels.shape
    columns: dict[str, list[Any]] = {
        "bytes": [deflated(pixels)],
        "height": [height],
        "width": [width],
        "key": [_next_key()],
        "row": [0],
    }
    columns.update({name: [value] for name, value in extra.items()})
    return columns


def encoded(stream: PictureStream, piece: dict[str, list[Any]], at: float) -> dict[str, list[Any]]:
    """A piece drawn as one uint8 ``image`` and where it goes (the other columns), as the wire
    source's rows from ``stream``; no image, no rows."""
    placement = {name: values for name, values in piece.items() if name != "image"}
    if not piece["image"]:
        return empty(tuple(placement))
    extra = {name: values[0] for name, values in placement.items()}
    return stream.update(piece["image"][0], at, **extra)


def compacted(data: dict[str, Any]) -> dict[str, Any]:
    """A wire source's columns with its rows folded into one key (for a session that joins).

    The key keeps the id and says, in ``row``, which row it stands for, so that the rows a frame
    appends next apply to it as they do to the whole list.
    """
    rows = data.get("bytes") or []
    if len(rows) <= 1 or "row" not in data:  # one key, or not a picture
        return data
    pixels = decode(data)
    assert pixels is not None
    columns = {name: [values[-1]] for name, values in data.items()}
    columns["bytes"] = [deflated(pixels)]
    return columns


class PictureStream:
    """One changing picture as a wire source's rows: a key, then residuals.

    ``rate``: the bytes a second its rows may take on average (``None``: exact, unbudgeted), in
    bursts up to ``burst`` bytes, timed by the server's clock (a replay played fast gets no more).
    An unbudgeted stream sends a key whenever a key is smaller than the residual. A budgeted one
    sends a key when the budget is full (the picture is resting) and the rows since the last key
    pass a quarter of ``max_log`` (so keys cost at most a fraction of what residuals did); once
    those rows pass ``max_log`` bytes (what a following browser keeps), it sends nothing but the
    key, as soon as the budget is full (a key larger than a burst puts the budget in debt, so
    the rate still holds on average).
    """

    def __init__(
        self, rate: float | None = None, burst: float = 64_000, max_log: int = 1_000_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_log = max_log
        self.shown: np.ndarray | None = None
        """The picture the rows add up to: what every following browser shows."""
        self.rows: dict[str, list[Any]] = empty()
        self.extra: dict[str, Any] = {}
        self.log_bytes = 0
        self.budget = burst
        self.last_at: float | None = None
        self.sent_bytes = 0

    def update(self, pixels: np.ndarray, at: float, **extra: Any) -> dict[str, list[Any]]:
        """Take the picture as of ``at`` (seconds), with ``extra`` columns for its row (where it
        goes, its step); the rows to show (fresh lists, never changed later: pieces are
        shared). A picture of another shape starts a new key."""
        if self.rate is not None:
            elapsed = 0.0 if self.last_at is None else max(0.0, at - self.last_at)
            self.budget = min(self.burst, self.budget + elapsed * self.rate)
        self.last_at = at
        pixels = np.ascontiguousarray(pixels, np.uint8)
        self.extra = dict(extra)
        if self.shown is None or self.shown.shape != pixels.shape:
            self._key(pixels)
        else:
            self._residual(pixels)
        return {name: list(values) for name, values in self.rows.items()}

    def _affordable(self, size: int) -> bool:
        return self.rate is None or size <= self.budget

    def _key_affordable(self, size: int) -> bool:
        return self.rate is None or size <= self.budget or self.budget >= self.burst

    def _spend(self, size: int) -> None:
        self.sent_bytes += size
        if self.rate is not None:
            self.budget -= size

    def _key(self, pixels: np.ndarray) -> None:
        self.rows = still(pixels, **self.extra)
        self.shown = pixels.copy()
        self.log_bytes = 0
        self._spend(len(self.rows["bytes"][0]))

    def _residual(self, pixels: np.ndarray) -> None:
        assert self.shown is not None
        change = pixels.astype(np.int16) - self.shown
        if not change.any():
            return
        due = self.log_bytes > self.max_log
        resting = self.rate is not None and self.budget >= self.burst
        if due or (resting and self.log_bytes >= self.max_log // 4):
            # a key is compressed only when one is wanted: not on every resting frame
            if self._key_affordable(len(deflated(pixels))):
                self._key(pixels)
                return
            if due:  # nothing else until the key is affordable
                return
        off = np.abs(change)
        chosen: tuple[np.ndarray, np.ndarray] | None = None
        for threshold in THRESHOLDS:  # from exact to coarse: the first that fits the budget
            carried = off >= threshold
            if not carried.any():
                return
            residual = np.where(carried, change, 0).astype(np.uint8)  # two's complement: mod 256
            packed = deflated(residual)
            if threshold == 1 and self.rate is None and len(packed) >= len(deflated(pixels)):
                self._key(pixels)
                return
            if self._affordable(len(packed)):
                chosen = packed, carried
                break
        if chosen is None:
            return
        packed, carried = chosen
        self.shown = np.where(carried, pixels, self.shown)
        self.log_bytes += len(packed)
        self._spend(len(packed))
        self.rows["bytes"].append(packed)
        for name in ("height", "width", "key"):
            self.rows[name].append(self.rows[name][0])
        self.rows["row"].append(self.rows["row"][-1] + 1)
        for name, value in self.extra.items():
            self.rows[name].append(value)


def show(source: ColumnDataSource, columns: dict[str, list[Any]]) -> None:
    """Give ``source`` the rows of ``columns``: only the new ones when it holds the same key,
    else all of them folded into one key.

    A session's document may hold a compacted key (:func:`compacted`); ``row`` says which rows
    it already stands for.
    """
    old = source.data
    same_key = (
        old.get("key") and columns["key"] and old["key"][0] == columns["key"][0]
        and old.keys() == columns.keys()
    )  # fmt: skip
    if same_key:
        held = old["row"][-1]
        new = [i for i, row in enumerate(columns["row"]) if row > held]
        if not new and len(columns["row"]) >= len(old["row"]):
            return
        if new and new[0] > 0:
            source.stream({name: [values[i] for i in new] for name, values in columns.items()})
            return
    whole = compacted(columns)  # one key, however many rows: a replacement says it all
    source.data = {name: list(values) for name, values in whole.items()}  # streamed into


DECODE_JS = """
const state = wire.__mnist_live_pictures ??=
  {chain: Promise.resolve(), first: null, applied: 0, pixels: null};
const UNSUPPORTED =
  " (this browser cannot draw it: it needs Chrome 80, Firefox 113, Safari 16.4 or newer)";
const column = (data, name) => (data instanceof Map ? data.get(name) : data[name]) ?? [];
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
function draw(d) {
  const data = new Map([["image", []]]);
  for (const name of columns) data.set(name, []);
  if (state.pixels !== null) {
    const {ndarray} = Bokeh.require("core/util/ndarray");
    const shape = [column(d, "height")[0], column(d, "width")[0]];
    data.get("image").push(ndarray(state.pixels, {dtype: "uint8", shape}));
    for (const name of columns) data.get(name).push(column(d, name).at(-1));
  }
  pixels.setv({data}, {sync: false});
}
state.chain = state.chain.then(async () => {
  const d = wire.data;
  const bytes = column(d, "bytes");
  const rows = bytes.length;
  if (rows === 0 || bytes[0] !== state.first) {
    state.first = rows === 0 ? null : bytes[0];
    state.applied = 0;
    state.pixels = null;
  }
  if (rows > 0 && state.applied === rows) return;
  if (rows > 0 && typeof DecompressionStream === "undefined") {
    if (title !== null && !title.text.endsWith(UNSUPPORTED))
      title.setv({text: title.text + UNSUPPORTED}, {sync: false});
    return;
  }
  for (let i = state.applied; i < rows; i++) {
    const raw = await inflate(bytes[i]);
    if (i === 0) {
      state.pixels = raw;
    } else {
      const sum = state.pixels.slice();
      for (let k = 0; k < sum.length; k++) sum[k] = (sum[k] + raw[k]) & 255;
      state.pixels = sum;
    }
    state.applied = i + 1;
  }
  draw(d);
}).catch((error) => console.error("mnist-live: a picture could not be decoded:", error));
"""


class Picture:
    """A picture's two sources: the wire source a frame changes (``name``) and the pixels
    source its glyph draws (``name + "_pixels"``, filled in the browser), with the decoder that
    joins them, run on every change and when the page is ready (:attr:`decoder`). ``placement``
    columns go to the pixels source (where the glyph puts the picture), ``labels`` stay on the
    wire (a row's step)."""

    def __init__(
        self, name: str, placement: tuple[str, ...] = (), labels: tuple[str, ...] = ()
    ) -> None:
        self.placement = placement
        self.columns = placement + labels
        self.wire = named_source(name, CODEC_COLUMNS + self.columns)
        self.pixels = named_source(name + "_pixels", ("image", *placement))
        self.pixels.tags = [self.wire]  # the glyph's source brings the wire into the document
        self.decoder = CustomJS(
            args={
                "wire": self.wire,
                "pixels": self.pixels,
                "columns": list(placement),
                "title": None,
            },
            code=DECODE_JS,
        )
        self.wire.js_on_change("data", self.decoder)
        self.wire.js_on_change("streaming", self.decoder)

    def drawn_in(self, figure: Any) -> None:
        """The figure whose title says so when a browser cannot decode the picture."""
        self.decoder.args = {**self.decoder.args, "title": figure.title}

    def reset(self) -> None:
        self.wire.data = empty(self.columns)

    def show(self, columns: dict[str, list[Any]]) -> None:
        show(self.wire, columns)
