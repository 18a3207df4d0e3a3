"""A QR code drawn with half blocks: two modules per character cell, so a version-5 code (37
modules and a quiet zone) fits in 41 columns by 21 rows of an 80x24 terminal."""

from __future__ import annotations

import segno
from rich.style import Style
from rich.text import Text

__all__ = ["qr_text"]

#: dark modules on a light ground, whatever the terminal's colours: scanners need the contrast
_STYLE = Style(color="black", bgcolor="white")
#: (upper module dark, lower module dark) -> the cell that draws them (the ground is light)
_CELLS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_text(payload: str, *, border: int = 2) -> Text:
    """``payload`` as a QR code (error correction L: a screen is not a worn label) in half blocks, ``border`` modules of
    quiet zone around it."""
    rows = [[bool(m) for m in row] for row in segno.make(payload, error="l", boost_error=False).matrix_iter(border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = ["".join(_CELLS[up, down] for up, down in zip(rows[i], rows[i + 1])) for i in range(0, len(rows), 2)]
    return Text("\n".join(lines), style=_STYLE, no_wrap=True)
