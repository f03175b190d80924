"""The one way MNIST Live writes a length of time, for terminals, logs and the page.

Clock style (``m:ss``, ``h:mm:ss``, tenths where asked) for positions and lengths; words
(``2m 05s``) for the page's ETA, which is read from the back of a room.
"""

from __future__ import annotations


def format_duration(seconds: float, *, decimals: int = 0, words: bool = False) -> str:
    """``seconds`` as ``1:05`` / ``1:02:03`` (``decimals`` keeps fractions of a second; whole
    seconds are cut, not rounded, as a clock shows them), or as ``1m 05s`` with ``words``."""
    seconds = max(seconds, 0.0)
    if words:
        whole = round(seconds)
        if whole >= 3600:
            return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
        return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    second = f"{rest:0{3 + decimals}.{decimals}f}" if decimals else f"{int(rest):02d}"
    return f"{hours}:{minutes:02d}:{second}" if hours else f"{minutes}:{second}"
