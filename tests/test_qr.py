"""The QR encoder against segno (an independent implementation) and the standard's structure."""

from __future__ import annotations

import random

import numpy as np
import pytest

from viewer import qr

segno = pytest.importorskip("segno", reason="segno (the test extra) is the reference encoder")


def texts(seed: int, lengths: list[int]) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789:/.?=&-_"
    return ["".join(rng.choice(alphabet) for _ in range(n)) for n in lengths]


def segno_data(payload: bytes, version: int, error: str) -> bytes | None:
    """Our data codewords rewritten with segno's one deviation from the standard.

    When the bits end on a codeword boundary after the terminator (always so in byte mode),
    segno still appends eight zero bits before the pad codewords; ISO/IEC 18004 7.4.10 adds
    padding bits only when the stream does not end on a boundary. None when that extra byte
    would not fit (segno then picks a larger version).
    """
    data = bytearray(qr.data_codewords(payload, version, error))
    used = 1 + (2 if version >= 10 else 1) + len(payload)  # mode + count + bytes + terminator
    if used >= len(data):
        return None
    pads = bytes(0xEC if i % 2 == 0 else 0x11 for i in range(len(data) - used - 1))
    data[used:] = b"\x00" + pads
    return bytes(data)


def segno_matrix(text: str, error: str, mask: int | None = None):
    code = segno.make_qr(text, error=error, mask=mask, boost_error=False, mode="byte")
    return code, np.array(code.matrix, dtype=bool)


@pytest.mark.parametrize("error", list("LMQH"))
def test_every_mask_matches_segno_module_for_module(error: str) -> None:
    checked = set()
    for text in texts(1, [1, 17, 25, 48, 90, 150, 230]):
        for mask in range(8):
            code, expected = segno_matrix(text, error, mask)
            data = segno_data(text.encode(), code.version, error)
            if data is None:
                continue
            ours = qr.build(data, code.version, error, mask)
            assert ours.shape == expected.shape
            assert np.array_equal(ours, expected), (text, error, mask, code.version)
            checked.add(code.version)
    assert {1, 2, 5, 7, 10} & checked, checked  # small, multi-block and version-info symbols


def test_large_versions_match_segno() -> None:
    for text in texts(2, [400, 900, 1500, 2300]):
        code, expected = segno_matrix(text, "L", mask=3)
        data = segno_data(text.encode(), code.version, "L")
        assert data is not None
        assert np.array_equal(qr.build(data, code.version, "L", 3), expected), code.version


def test_penalty_agrees_with_segno_and_the_lowest_is_chosen() -> None:
    for text in texts(3, [5, 30, 70, 120]):
        for error in "MQ":
            scores = []
            for mask in range(8):
                symbol = qr.encode(text, error, mask=mask)
                rows = [bytearray(row) for row in symbol.astype(np.uint8)]
                reference = sum(segno.encoder.mask_scores(rows, len(rows), len(rows)))
                assert qr.penalty(symbol) == reference
                scores.append(reference)
            chosen = qr.encode(text, error)
            assert qr.penalty(chosen) == min(scores)


def test_structure_of_a_url_code() -> None:
    url = "http://192.168.1.23:5006/"
    symbol = qr.encode(url, "M")
    version = qr.choose_version(len(url), "M")
    size = 4 * version + 17
    assert symbol.shape == (size, size) and version == 2
    finder = np.ones((7, 7), dtype=bool)
    finder[1:6, 1:6] = False
    finder[2:5, 2:5] = True
    for row, col in ((0, 0), (0, size - 7), (size - 7, 0)):
        assert np.array_equal(symbol[row : row + 7, col : col + 7], finder)
    assert not symbol[7, :8].any() and not symbol[:8, 7].any()  # separators
    timing = np.arange(8, size - 8) % 2 == 0
    assert np.array_equal(symbol[6, 8 : size - 8], timing)
    assert np.array_equal(symbol[8 : size - 8, 6], timing)
    assert symbol[size - 8, 8]  # the dark module
    # format information: both copies decode to level M and one mask, BCH-valid
    first = [symbol[i, 8] for i in (0, 1, 2, 3, 4, 5, 7, 8)] + [
        symbol[8, c] for c in (7, 5, 4, 3, 2, 1, 0)
    ]
    second = [symbol[8, size - 1 - i] for i in range(8)] + [
        symbol[size - 7 + i, 8] for i in range(7)
    ]
    bits = [sum(int(b) << i for i, b in enumerate(copy)) for copy in (first, second)]
    assert bits[0] == bits[1]
    masks = [m for m in range(8) if qr.format_bits("M", m) == bits[0]]
    assert len(masks) == 1


def test_version_information_from_version_7() -> None:
    symbol = qr.encode("x" * 120, "M")  # 120 bytes at M need version 7 (6-M holds 106)
    size = symbol.shape[0]
    assert size == 45
    bits = qr.version_bits(7)
    assert bits == 0x07C94  # the standard's table
    block = symbol[:6, size - 11 : size - 8]
    read = sum(int(block[i // 3, i % 3]) << i for i in range(18))
    assert read == bits


def test_reed_solomon_against_the_worked_example() -> None:
    # "HELLO WORLD" 1-M from the standard's annex-style worked example
    data = bytes([32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17, 236, 17, 236, 17])
    assert list(qr.reed_solomon(data, 10)) == [196, 35, 39, 119, 235, 215, 231, 226, 93, 23]


def test_terminal_and_svg_show_the_same_modules() -> None:
    url = "http://10.0.0.7:5006/"
    modules = np.pad(qr.encode(url), qr.QUIET_ZONE)
    lines = qr.terminal(url, ansi=False).splitlines()
    assert len(lines) == (modules.shape[0] + 1) // 2
    glyph = {" ": (True, True), "▀": (False, True), "▄": (True, False), "█": (False, False)}
    for r, line in enumerate(lines):  # plain mode draws the light modules
        assert len(line) == modules.shape[1]
        for c, char in enumerate(line):
            top, bottom = glyph[char]
            assert modules[2 * r, c] == top
            if 2 * r + 1 < modules.shape[0]:
                assert modules[2 * r + 1, c] == bottom
    assert qr.terminal(url).startswith("\x1b[30;107m")
    image = qr.svg(url)
    assert image.startswith("<svg") and image.count("h1v1h-1z") == int(modules.sum())


def test_too_long_is_a_clear_error() -> None:
    with pytest.raises(qr.QRError, match="do not fit"):
        qr.encode("x" * 3000, "H")
    assert qr.matrix("a")[0][:7] == [True] * 7
