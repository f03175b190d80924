"""The room's QR code of the audience URL, drawn by segno: in the terminal at start-up, and full
screen on the presenter's page."""

from __future__ import annotations

import io

import segno

QRError = segno.DataOverflowError
"""The text does not fit in any QR code."""
ERROR_LEVEL = "m"
"""15% of the code can be lost (a glare on the projector, a finger on the screen)."""


def code(text: str) -> segno.QRCode:
    return segno.make_qr(text, error=ERROR_LEVEL, boost_error=False)


def terminal(text: str, *, ansi: bool = True) -> str:
    """The code as text, two module rows per line with Unicode half blocks (light modules drawn,
    as on a dark terminal). With ``ansi`` the lines force white on black, so it scans on dark
    and light terminals alike."""
    out = io.StringIO()
    code(text).terminal(out=out, compact=True)
    lines = out.getvalue().splitlines()
    return "\n".join(f"\x1b[97;40m{line}\x1b[0m" if ansi else line for line in lines)


def svg(text: str) -> str:
    """A scalable SVG of the code with its quiet zone (it fills the element that holds it)."""
    return code(text).svg_inline(omitsize=True, dark="#000", light="#fff", title=f"QR code: {text}")
