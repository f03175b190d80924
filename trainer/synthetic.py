"""Generated handwritten-looking digits, the offline default dataset.

A machine without MNIST still deserves a run worth watching, so the package draws its own
digits: each class is a few pen strokes (lines, arcs and curves in a unit box), and every
sample gets its own wobble of those strokes, slant, rotation, size, aspect, position, pen
thickness, ink and noise. An MLP has to learn the shapes rather than memorise pixels, and it
does not reach 100% at once. The images are 28x28 uint8 with the digit in a ~20 px box, like
MNIST, and the set is deterministic from its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SIZE = 28
BOX = 20.0

Points = np.ndarray  # [n, points, 2] in the unit box, x to the right and y down
Stroke = Callable[[np.random.Generator, int], Points]

_YS, _XS = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
_PIXELS = np.stack([_XS.ravel(), _YS.ravel()], -1)  # pixel centres, [784, 2]
_CHUNK_FLOATS = 500_000  # [images, pixels, segments] arrays of ~2 MB stay in cache


def _jitter(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, scale, (n, 1)).astype(np.float32)


def arc(
    cx: float, cy: float, rx: float, ry: float, start: float, stop: float, points: int = 12
) -> Stroke:
    """An elliptical arc from ``start`` to ``stop`` degrees (0 = right, 90 = down)."""

    def draw(rng: np.random.Generator, n: int) -> Points:
        t = np.linspace(0.0, 1.0, points, dtype=np.float32)[None, :]
        a0 = np.radians(start) + _jitter(rng, n, 0.15)
        a1 = np.radians(stop) + _jitter(rng, n, 0.15)
        angle = a0 + (a1 - a0) * t
        x = cx + _jitter(rng, n, 0.025) + rx * (1 + _jitter(rng, n, 0.12)) * np.cos(angle)
        y = cy + _jitter(rng, n, 0.025) + ry * (1 + _jitter(rng, n, 0.12)) * np.sin(angle)
        return np.stack([x, y], axis=-1)

    return draw


def line(*corners: tuple[float, float], wobble: float = 0.035) -> Stroke:
    """A polyline through ``corners``, each corner moved independently per sample."""
    template = np.array(corners, dtype=np.float32)

    def draw(rng: np.random.Generator, n: int) -> Points:
        moved = template[None] + rng.normal(0.0, wobble, (n, *template.shape))
        return _densify(moved.astype(np.float32), per_segment=3)

    return draw


def curve(
    start: tuple[float, float],
    control: tuple[float, float],
    end: tuple[float, float],
    points: int = 14,
) -> Stroke:
    """A quadratic Bezier curve; the control point wobbles more than the ends."""
    p = np.array([start, control, end], dtype=np.float32)

    def draw(rng: np.random.Generator, n: int) -> Points:
        scale = np.array([0.03, 0.06, 0.03], dtype=np.float32)[None, :, None]
        q = p[None] + rng.normal(0.0, 1.0, (n, 3, 2)).astype(np.float32) * scale
        t = np.linspace(0.0, 1.0, points, dtype=np.float32)[None, :, None]
        return (1 - t) ** 2 * q[:, :1] + 2 * (1 - t) * t * q[:, 1:2] + t**2 * q[:, 2:]

    return draw


def _densify(corners: Points, per_segment: int) -> Points:
    """Put points along straight strokes so a wobble bends them slightly, like a pen."""
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False, dtype=np.float32)[None, None, :, None]
    a, b = corners[:, :-1, None], corners[:, 1:, None]
    inner = (a + (b - a) * t).reshape(len(corners), -1, 2)
    return np.concatenate([inner, corners[:, -1:]], axis=1)


@dataclass(frozen=True)
class Glyph:
    """One way of writing a digit: strokes always drawn, plus strokes drawn only sometimes."""

    strokes: tuple[Stroke, ...]
    optional: tuple[tuple[Stroke, float], ...] = ()


GLYPHS: dict[int, tuple[Glyph, ...]] = {
    0: (Glyph((arc(0.5, 0.5, 0.28, 0.44, -100, 275, points=20),)),),
    1: (
        Glyph(
            (line((0.52, 0.05), (0.48, 0.95)),),
            ((line((0.33, 0.22), (0.52, 0.05)), 0.5), (line((0.32, 0.95), (0.68, 0.95)), 0.25)),
        ),
    ),
    2: (
        Glyph(
            (
                arc(0.5, 0.33, 0.27, 0.25, 170, 380),
                line((0.75, 0.42), (0.2, 0.95), (0.82, 0.95)),
            )
        ),
        Glyph(
            (
                arc(0.5, 0.3, 0.26, 0.23, 180, 400),
                curve((0.74, 0.4), (0.4, 0.7), (0.2, 0.93)),
                curve((0.2, 0.93), (0.5, 0.84), (0.85, 0.95)),
            )
        ),
    ),
    3: (
        Glyph((arc(0.5, 0.29, 0.22, 0.2, 200, 450), arc(0.5, 0.71, 0.25, 0.23, 270, 520))),
        Glyph(
            (line((0.25, 0.05), (0.75, 0.05), (0.45, 0.42)), arc(0.5, 0.7, 0.26, 0.25, 250, 510))
        ),
    ),
    4: (
        Glyph((line((0.62, 0.95), (0.62, 0.05), (0.15, 0.66), (0.85, 0.66)),)),
        Glyph((line((0.3, 0.05), (0.22, 0.55), (0.82, 0.55)), line((0.68, 0.25), (0.66, 0.95)))),
    ),
    5: (
        Glyph(
            (
                line((0.76, 0.06), (0.32, 0.06), (0.28, 0.45)),
                arc(0.49, 0.68, 0.27, 0.26, 215, 505),
            )
        ),
    ),
    6: (
        Glyph((curve((0.7, 0.05), (0.3, 0.2), (0.26, 0.68)), arc(0.5, 0.7, 0.23, 0.24, 180, 540))),
    ),
    7: (
        Glyph(
            (line((0.18, 0.08), (0.82, 0.06), (0.42, 0.95)),),
            ((line((0.4, 0.5), (0.78, 0.5)), 0.25), (line((0.18, 0.08), (0.16, 0.2)), 0.3)),
        ),
        Glyph((line((0.18, 0.06), (0.82, 0.06)), curve((0.82, 0.06), (0.55, 0.45), (0.5, 0.95)))),
    ),
    8: (
        Glyph((arc(0.5, 0.27, 0.19, 0.2, 0, 360, points=16), arc(0.5, 0.71, 0.25, 0.24, -90, 270))),
        Glyph(
            (
                curve((0.7, 0.15), (0.5, -0.05), (0.3, 0.2)),
                curve((0.3, 0.2), (0.4, 0.45), (0.7, 0.7)),
                curve((0.7, 0.7), (0.6, 1.05), (0.3, 0.75)),
                curve((0.3, 0.75), (0.5, 0.45), (0.7, 0.15)),
            )
        ),
    ),
    9: (
        Glyph((arc(0.5, 0.3, 0.23, 0.22, 0, 365, points=16), line((0.73, 0.3), (0.64, 0.95)))),
        Glyph((arc(0.48, 0.3, 0.22, 0.21, 20, 380), curve((0.71, 0.3), (0.72, 0.7), (0.45, 0.95)))),
    ),
}


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` digit images (uint8 [n, 28, 28]) with balanced labels (uint8 [n])."""
    if n < 0:
        raise ValueError(f"cannot make {n} images")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    for digit, glyphs in GLYPHS.items():
        where = np.flatnonzero(labels == digit)
        choice = rng.integers(0, len(glyphs), len(where))
        for g, glyph in enumerate(glyphs):
            chosen = where[choice == g]
            if len(chosen):
                images[chosen] = _render(_pen_path(glyph, rng, len(chosen)), rng)
    return images, labels


def _pen_path(glyph: Glyph, rng: np.random.Generator, n: int) -> np.ndarray:
    """The glyph's segments for ``n`` samples in pixel coordinates: [n, segments, 2 ends, 2]."""
    segments = [_segments(stroke(rng, n)) for stroke in glyph.strokes]
    for stroke, probability in glyph.optional:
        seg = _segments(stroke(rng, n))
        absent = rng.random(n) >= probability
        seg[absent] = -100.0  # far off the canvas: draws nothing
        segments.append(seg)
    unit = np.concatenate(segments, axis=1) - 0.5
    return _place(unit, rng, n)


def _segments(points: Points) -> np.ndarray:
    return np.stack([points[:, :-1], points[:, 1:]], axis=2).astype(np.float32)


def _place(unit: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Slant, rotate, scale and shift each sample's strokes onto the 28x28 canvas."""
    scale = rng.uniform(0.72, 1.05, n) * BOX
    aspect = rng.uniform(0.75, 1.2, n)
    slant = rng.uniform(-0.4, 0.3, n)
    angle = np.radians(rng.normal(0.0, 7.0, n))
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shape = np.zeros((n, 2, 2))
    shape[:, 0, 0] = scale * aspect
    shape[:, 0, 1] = scale * slant
    shape[:, 1, 1] = scale
    matrix = (rotate @ shape).astype(np.float32)
    centre = SIZE / 2 + rng.normal(0.0, 1.2, (n, 1, 1, 2)).astype(np.float32)
    return np.einsum("nij,nsej->nsei", matrix, unit) + centre


def _render(segments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink every pixel by its distance to the nearest pen segment, then add noise."""
    distance = np.sqrt(_squared_distance(segments))
    n = len(segments)
    pen = rng.uniform(0.7, 1.9, (n, 1)).astype(np.float32)
    ink = rng.uniform(0.75, 1.0, (n, 1)).astype(np.float32)
    value = ink / (1.0 + np.exp((distance - pen) / 0.4))
    noise = rng.uniform(0.0, 0.06, (n, 1)).astype(np.float32)
    value += np.abs(rng.normal(0.0, 1.0, value.shape).astype(np.float32)) * noise
    value[value < 0.03] = 0.0
    return (np.clip(value, 0.0, 1.0) * 255 + 0.5).astype(np.uint8).reshape(n, SIZE, SIZE)


def _squared_distance(segments: np.ndarray) -> np.ndarray:
    """Squared distance from every pixel centre to its nearest segment: [n, 784].

    |p - a - t(b - a)|^2 is expanded into dot products so the bulk of the work is two batched
    matrix products instead of many small elementwise passes over a trailing axis of 2.
    """
    n, count = segments.shape[:2]
    pixel_norm = (_PIXELS * _PIXELS).sum(-1)[None, :, None]
    start = segments[:, :, 0]
    along = segments[:, :, 1] - start
    result = np.empty((n, SIZE * SIZE), dtype=np.float32)
    chunk = max(1, _CHUNK_FLOATS // (SIZE * SIZE * count))
    for lo in range(0, n, chunk):
        a, ab = start[lo : lo + chunk], along[lo : lo + chunk]
        length = np.maximum((ab * ab).sum(-1), 1e-6)[:, None, :]
        p_dot_a = _PIXELS @ a.transpose(0, 2, 1)  # [c, 784, s]
        ap_dot_ab = _PIXELS @ ab.transpose(0, 2, 1) - (a * ab).sum(-1)[:, None, :]
        t = np.clip(ap_dot_ab / length, 0.0, 1.0)
        squared = pixel_norm - 2 * p_dot_a + (a * a).sum(-1)[:, None, :]
        squared -= t * (2 * ap_dot_ab - t * length)
        result[lo : lo + chunk] = squared.min(-1)
    return np.maximum(result, 0.0)
