"""The room's QR code (drawn by segno): the terminal's half blocks and the SVG show its modules."""

from __future__ import annotations

import re

import numpy as np
import pytest
import segno

from viewer.panels import qr

URL = "http://10.0.0.7:5006/"


def modules(text: str) -> np.ndarray:
    """segno's modules for ``text`` at our error level, with the 4-module quiet zone."""
    code = segno.make_qr(text, error=qr.ERROR_LEVEL, boost_error=False)
    return np.pad(np.array(code.matrix, dtype=bool), 4)


def test_the_terminal_lines_draw_every_module() -> None:
    expected = modules(URL)
    lines = qr.terminal(URL, ansi=False).splitlines()
    assert len(lines) == (expected.shape[0] + 1) // 2
    glyph = {" ": (True, True), "▀": (False, True), "▄": (True, False), "█": (False, False)}
    for r, line in enumerate(lines):  # light modules drawn, as on a dark terminal
        assert len(line) == expected.shape[1]
        for c, char in enumerate(line):
            top, bottom = glyph[char]
            assert expected[2 * r, c] == top
            if 2 * r + 1 < expected.shape[0]:
                assert expected[2 * r + 1, c] == bottom


def test_ansi_lines_force_white_on_black_around_the_same_blocks() -> None:
    plain, coloured = qr.terminal(URL, ansi=False), qr.terminal(URL)
    lines = coloured.splitlines()
    assert all(line.startswith("\x1b[97;40m") and line.endswith("\x1b[0m") for line in lines)
    assert [line[8:-4] for line in lines] == plain.splitlines()


def svg_modules(image: str, size: int) -> np.ndarray:
    """The dark modules an SVG of segno's draws: its dark path's runs (``h`` segments)."""
    (path,) = re.findall(r'<path[^>]*stroke="#000"[^>]*d="([^"]+)"', image)
    dark = np.zeros((size, size), dtype=bool)
    x = y = 0.0
    for op, a, b in re.findall(r"([Mmh])(-?[\d.]+)(?:\s+(-?[\d.]+))?", path):
        if op == "M":
            x, y = float(a), float(b)
        elif op == "m":
            x, y = x + float(a), y + float(b)
        else:
            dark[int(y), int(x) : int(x + float(a))] = True
            x += float(a)
    return dark


def test_the_svg_draws_every_dark_module_on_white_and_names_its_url() -> None:
    image = qr.svg(URL)
    expected = modules(URL)
    size = expected.shape[0]
    assert image.startswith("<svg") and f'viewBox="0 0 {size} {size}"' in image
    assert "width=" not in image.split(">")[0], "it fills the element that holds it"
    assert 'fill="#fff"' in image or 'stroke="#fff"' in image, "a white ground of its own"
    np.testing.assert_array_equal(svg_modules(image, size), expected)
    assert f"<title>QR code: {URL}</title>" in image
    with_query = qr.svg(URL + "?theme=dark&large=1")
    assert "?theme=dark&amp;large=1</title>" in with_query, "escaped once, not twice"


def test_too_long_is_a_clear_error() -> None:
    with pytest.raises(qr.QRError, match="too large"):
        qr.svg("x" * 3000)
