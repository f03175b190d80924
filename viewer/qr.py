"""A QR code encoder (ISO/IEC 18004, byte mode), so the room can scan the page's URL.

Small on purpose: the design allows no dependency beyond pyzmq, numpy, bokeh and pydantic, and a
URL needs only byte mode. The steps are the standard's: encode the bytes into codewords, add
Reed-Solomon error correction per block and interleave, draw the function patterns, place the
bits in the zig-zag order, then try the eight masks and keep the one with the lowest penalty.
``matrix`` gives the modules, ``terminal`` prints them with Unicode half blocks and ``svg``
draws them for the presenter's full-screen overlay.
"""

from __future__ import annotations

import html

import numpy as np

Error = str
"""Error correction level: L (7%), M (15%), Q (25%) or H (30%) of the codewords recoverable."""

LEVELS = "LMQH"
FORMAT_BITS = {"L": 1, "M": 0, "Q": 3, "H": 2}
"""The two error-level bits of the format information (the standard's order, not LMQH)."""

# Per version 1..40 (index 0 unused): error correction codewords per block, and blocks.
ECC_PER_BLOCK = {
    "L": (0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28,
          28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "M": (0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
          26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28),
    "Q": (0, 13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30,
          28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "H": (0, 17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28,
          30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
}  # fmt: skip
BLOCKS = {
    "L": (0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12,
          12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25),
    "M": (0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20,
          21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49),
    "Q": (0, 1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25,
          27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68),
    "H": (0, 1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30,
          32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81),
}  # fmt: skip
MAX_VERSION = 40
QUIET_ZONE = 4
"""Light modules around the symbol that scanners need (the standard's minimum)."""


class QRError(ValueError):
    """The text does not fit in a QR code of the allowed versions."""


# --- Reed-Solomon over GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1 ---

EXP = [0] * 512
LOG = [0] * 256
_x = 1
for _i in range(255):
    EXP[_i] = _x
    LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    EXP[_i] = EXP[_i - 255]


def _multiply(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def _generator(degree: int) -> list[int]:
    """Coefficients (highest power first, leading 1 dropped) of prod (x - a^i), i < degree."""
    poly = [1]
    for i in range(degree):
        poly = [*poly, 0]
        for j in range(len(poly) - 1, 0, -1):
            poly[j] ^= _multiply(poly[j - 1], EXP[i])
    return poly[1:]


def reed_solomon(data: bytes, degree: int) -> bytes:
    """The ``degree`` error correction codewords of ``data`` (the remainder of the division)."""
    generator = _generator(degree)
    remainder = [0] * degree
    for byte in data:
        factor = byte ^ remainder.pop(0)
        remainder.append(0)
        for j, coefficient in enumerate(generator):
            remainder[j] ^= _multiply(coefficient, factor)
    return bytes(remainder)


# --- codewords ---


def raw_modules(version: int) -> int:
    """Modules left for data and error correction once the function patterns are drawn."""
    result = (16 * version + 128) * version + 64
    if version >= 2:
        aligns = version // 7 + 2
        result -= (25 * aligns - 10) * aligns - 55
        if version >= 7:
            result -= 36
    return result


def data_capacity(version: int, error: Error) -> int:
    """Data codewords (bytes) of a symbol, before mode and length headers."""
    return raw_modules(version) // 8 - ECC_PER_BLOCK[error][version] * BLOCKS[error][version]


def _count_bits(version: int) -> int:
    return 8 if version <= 9 else 16


def choose_version(length: int, error: Error, max_version: int = MAX_VERSION) -> int:
    """The smallest version whose byte mode holds ``length`` bytes at ``error``."""
    for version in range(1, max_version + 1):
        if 4 + _count_bits(version) + 8 * length <= 8 * data_capacity(version, error):
            return version
    raise QRError(f"{length} bytes do not fit in a QR code up to version {max_version}")


def data_codewords(payload: bytes, version: int, error: Error) -> bytes:
    """Mode indicator, length, the bytes, terminator and padding: the symbol's data codewords."""
    capacity = data_capacity(version, error) * 8
    bits = "0100" + format(len(payload), f"0{_count_bits(version)}b")
    bits += "".join(format(byte, "08b") for byte in payload)
    if len(bits) > capacity:
        raise QRError(f"{len(payload)} bytes do not fit in version {version}-{error}")
    bits += "0" * min(4, capacity - len(bits))
    bits += "0" * (-len(bits) % 8)
    codewords = bytearray(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    for pad in range(capacity // 8 - len(codewords)):
        codewords.append(0xEC if pad % 2 == 0 else 0x11)
    return bytes(codewords)


def interleave(data: bytes, version: int, error: Error) -> bytes:
    """Split into blocks, add each block's error correction, and interleave column by column."""
    blocks = BLOCKS[error][version]
    ecc = ECC_PER_BLOCK[error][version]
    total = raw_modules(version) // 8
    short_blocks = blocks - total % blocks
    short_length = total // blocks - ecc  # data codewords in a short block; long ones have +1
    pieces, start = [], 0
    for i in range(blocks):
        length = short_length + (0 if i < short_blocks else 1)
        pieces.append(data[start : start + length])
        start += length
    out = bytearray()
    for column in range(short_length + 1):
        out.extend(piece[column] for piece in pieces if column < len(piece))
    corrections = [reed_solomon(piece, ecc) for piece in pieces]
    for column in range(ecc):
        out.extend(correction[column] for correction in corrections)
    return bytes(out)


# --- the symbol ---


def alignment_positions(version: int) -> list[int]:
    """Row/column centres of the alignment patterns (every pair not on a finder)."""
    if version == 1:
        return []
    count = version // 7 + 2
    size = version * 4 + 17
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    return [6, *sorted(size - 7 - i * step for i in range(count - 1))]


def format_bits(error: Error, mask: int) -> int:
    """15 format bits: error level and mask, BCH(15,5) protected, XOR 0x5412."""
    data = FORMAT_BITS[error] << 3 | mask
    remainder = data
    for _ in range(10):
        remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
    return (data << 10 | remainder) ^ 0x5412


def version_bits(version: int) -> int:
    """18 version bits (versions 7 and up): the version, BCH(18,6) protected."""
    remainder = version
    for _ in range(12):
        remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1F25)
    return version << 12 | remainder


class _Symbol:
    """Modules (``dark``) and which of them belong to function patterns (``fixed``)."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.size = version * 4 + 17
        self.dark = np.zeros((self.size, self.size), dtype=bool)
        self.fixed = np.zeros((self.size, self.size), dtype=bool)
        self._draw_function_patterns()

    def set(self, row: int, col: int, dark: bool) -> None:
        self.dark[row, col] = dark
        self.fixed[row, col] = True

    def _draw_function_patterns(self) -> None:
        size = self.size
        for i in range(size):  # timing patterns
            self.set(6, i, i % 2 == 0)
            self.set(i, 6, i % 2 == 0)
        for row, col in ((3, 3), (3, size - 4), (size - 4, 3)):  # finders and separators
            for dr in range(-4, 5):
                for dc in range(-4, 5):
                    r, c = row + dr, col + dc
                    if 0 <= r < size and 0 <= c < size:
                        distance = max(abs(dr), abs(dc))
                        self.set(r, c, distance not in (2, 4))
        positions = alignment_positions(self.version)
        last = len(positions) - 1
        for i, row in enumerate(positions):
            for j, col in enumerate(positions):
                if (i, j) in ((0, 0), (0, last), (last, 0)):
                    continue  # those corners hold finders
                for dr in range(-2, 3):
                    for dc in range(-2, 3):
                        self.set(row + dr, col + dc, max(abs(dr), abs(dc)) != 1)
        self.draw_format(0, "L")  # reserve the areas; the real bits come with the mask
        if self.version >= 7:
            bits = version_bits(self.version)
            for i in range(18):
                dark = bool(bits >> i & 1)
                a, b = size - 11 + i % 3, i // 3
                self.set(b, a, dark)
                self.set(a, b, dark)

    def draw_format(self, mask: int, error: Error) -> None:
        bits = format_bits(error, mask)
        size = self.size

        def bit(i: int) -> bool:
            return bool(bits >> i & 1)

        for i in range(6):  # first copy, around the top-left finder
            self.set(i, 8, bit(i))
        self.set(7, 8, bit(6))
        self.set(8, 8, bit(7))
        self.set(8, 7, bit(8))
        for i in range(9, 15):
            self.set(8, 14 - i, bit(i))
        for i in range(8):  # second copy, split between the other two finders
            self.set(8, size - 1 - i, bit(i))
        for i in range(8, 15):
            self.set(size - 15 + i, 8, bit(i))
        self.set(size - 8, 8, True)  # the dark module

    def place(self, codewords: bytes) -> None:
        """Codeword bits in the standard's zig-zag, two columns at a time, skipping column 6."""
        bits = np.unpackbits(np.frombuffer(codewords, dtype=np.uint8))
        index, size = 0, self.size
        right = size - 1
        while right >= 1:
            if right == 6:
                right = 5
            upward = ((right + 1) & 2) == 0
            for vertical in range(size):
                row = size - 1 - vertical if upward else vertical
                for col in (right, right - 1):
                    if not self.fixed[row, col] and index < len(bits):
                        self.dark[row, col] = bool(bits[index])
                        index += 1
            right -= 2


def mask_pattern(mask: int, size: int) -> np.ndarray:
    """Where mask ``mask`` flips data modules (row i, column j as in the standard)."""
    i, j = np.indices((size, size))
    patterns = (
        (i + j) % 2 == 0,
        i % 2 == 0,
        j % 3 == 0,
        (i + j) % 3 == 0,
        (i // 2 + j // 3) % 2 == 0,
        (i * j) % 2 + (i * j) % 3 == 0,
        ((i * j) % 2 + (i * j) % 3) % 2 == 0,
        ((i + j) % 2 + (i * j) % 3) % 2 == 0,
    )
    return patterns[mask]


FINDER_CORE = np.array([1, 0, 1, 1, 1, 0, 1], dtype=bool)
"""Dark-light-dark-dark-dark-light-dark: the 1:1:3:1:1 ratio of a finder pattern."""


def _finder_like(line: np.ndarray) -> int:
    """Finder-like patterns in a row or column with four light modules before or after.

    Outside the symbol counts as light, since the quiet zone is. A pattern sharing a module
    with one already counted is not counted again (as segno, the reference in the tests, does).
    """
    padded = np.concatenate((np.zeros(4, bool), line, np.zeros(4, bool)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 7)
    count, resume = 0, 0
    for start in np.flatnonzero(np.all(windows == FINDER_CORE, axis=1)):
        if start < resume:
            continue
        if not padded[start - 4 : start].any() or not padded[start + 7 : start + 11].any():
            count += 1
            resume = int(start) + 7
    return count


def penalty(dark: np.ndarray) -> int:
    """The standard's four penalty rules; the mask with the lowest total is used."""
    score = 0
    for lines in (dark, dark.T):
        for line in lines:
            # N1: runs of five or more same-coloured modules, 3 + (length - 5) each
            edges = np.flatnonzero(np.diff(line.astype(np.int8))) + 1
            runs = np.diff(np.concatenate(([0], edges, [len(line)])))
            score += int(np.sum(runs[runs >= 5] - 2))
            # N3: 1:1:3:1:1 finder-like patterns with four light modules on a side, 40 each
            score += 40 * _finder_like(line)
    # N2: 2x2 blocks of one colour, 3 each
    same = (dark[:-1, :-1] == dark[1:, :-1]) & (dark[:-1, :-1] == dark[:-1, 1:])
    same &= dark[:-1, :-1] == dark[1:, 1:]
    score += 3 * int(np.sum(same))
    # N4: 10 for every 5% the dark share is away from 50%
    percent = 100 * int(dark.sum()) / dark.size
    score += 10 * int(abs(percent - 50) // 5)
    return score


def encode(
    text: str | bytes,
    error: Error = "M",
    *,
    version: int | None = None,
    mask: int | None = None,
) -> np.ndarray:
    """The QR symbol for ``text`` (UTF-8) as a boolean array, True = dark, no quiet zone.

    ``version`` and ``mask`` are chosen automatically unless given (tests fix them to compare
    with another encoder).
    """
    if error not in LEVELS:
        raise QRError(f"error correction must be one of L, M, Q, H, got {error!r}")
    payload = text.encode() if isinstance(text, str) else bytes(text)
    if version is None:
        version = choose_version(len(payload), error)
    if not 1 <= version <= MAX_VERSION:
        raise QRError(f"version must be 1..{MAX_VERSION}, got {version}")
    return build(data_codewords(payload, version, error), version, error, mask)


def build(data: bytes, version: int, error: Error, mask: int | None = None) -> np.ndarray:
    """The symbol holding the data codewords ``data``, with the best mask unless one is given."""
    if len(data) != data_capacity(version, error):
        raise QRError(f"version {version}-{error} takes {data_capacity(version, error)} bytes")
    symbol = _Symbol(version)
    symbol.place(interleave(data, version, error))
    best: tuple[int, np.ndarray] | None = None
    for candidate in range(8) if mask is None else (mask,):
        masked = _Symbol.__new__(_Symbol)
        masked.version, masked.size = version, symbol.size
        masked.fixed = symbol.fixed.copy()
        masked.dark = symbol.dark ^ (mask_pattern(candidate, symbol.size) & ~symbol.fixed)
        masked.draw_format(candidate, error)
        score = penalty(masked.dark) if mask is None else 0
        if best is None or score < best[0]:
            best = (score, masked.dark)
    assert best is not None
    return best[1]


def matrix(text: str | bytes, error: Error = "M") -> list[list[bool]]:
    """The modules of ``text``'s QR code, row by row, True = dark (no quiet zone)."""
    return encode(text, error).tolist()


def _with_quiet_zone(text: str | bytes, error: Error, border: int) -> np.ndarray:
    return np.pad(encode(text, error), border, constant_values=False)


def terminal(text: str | bytes, error: Error = "M", *, ansi: bool = True) -> str:
    """The code as text, two module rows per line with Unicode half blocks.

    With ``ansi`` the lines force black on white, so it scans on dark and light terminals
    alike; without, light modules are drawn (the usual look on a dark terminal).
    """
    modules = _with_quiet_zone(text, error, QUIET_ZONE)
    if modules.shape[0] % 2:
        modules = np.vstack([modules, np.zeros((1, modules.shape[1]), dtype=bool)])
    ink = modules if ansi else ~modules
    glyphs = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    lines = []
    for top, bottom in zip(ink[0::2], ink[1::2], strict=True):
        line = "".join(glyphs[bool(a), bool(b)] for a, b in zip(top, bottom, strict=True))
        lines.append(f"\x1b[30;107m{line}\x1b[0m" if ansi else line)
    return "\n".join(lines)


def svg(text: str | bytes, error: Error = "M", *, dark: str = "#000", light: str = "#fff") -> str:
    """A scalable SVG of the code with its quiet zone, one path of unit squares."""
    modules = _with_quiet_zone(text, error, QUIET_ZONE)
    size = modules.shape[0]
    path = "".join(f"M{col},{row}h1v1h-1z" for row, col in zip(*np.nonzero(modules), strict=True))
    label = html.escape(text if isinstance(text, str) else text.decode(errors="replace"))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="100%" height="100%" shape-rendering="crispEdges" role="img" '
        f'aria-label="QR code: {label}">'
        f'<rect width="{size}" height="{size}" fill="{light}"/>'
        f'<path d="{path}" fill="{dark}"/></svg>'
    )
