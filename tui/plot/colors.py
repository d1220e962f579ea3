"""Chart colours: one categorical palette chosen for distinguishability on dark terminal backgrounds.

The first eight are the Okabe-Ito colour-blind-safe set (its black replaced by a light grey, its dark blue lightened
to read on black), then four of Paul Tol's "muted" set; all as exact hex colours (truecolor terminals show them as
they are; 256-colour terminals get the nearest cube colour). Palette order is the assignment order, so the first
groups get the most different colours.
"""
from __future__ import annotations

from typing import Union

import numpy as np

PALETTE = (
    "#e69f00",  # orange
    "#56b4e9",  # sky blue
    "#009e73",  # bluish green
    "#f0e442",  # yellow
    "#cc79a7",  # reddish purple
    "#d55e00",  # vermillion
    "#5b9bd5",  # blue (Okabe-Ito #0072b2, lightened)
    "#c8c8c8",  # light grey
    "#88ccee",  # cyan (Tol)
    "#44aa99",  # teal (Tol)
    "#ddcc77",  # sand (Tol)
    "#aa4499",  # purple (Tol)
)

Color = Union[int, str, None]


def color_of(color: Color, index: int) -> str:
    """A palette index, a Rich colour, or None (the `index`-th palette colour) -> a Rich colour."""
    if color is None:
        return PALETTE[index % len(PALETTE)]
    if isinstance(color, (int, np.integer)):
        return PALETTE[int(color) % len(PALETTE)]
    return str(color)


def faint_of(color: str) -> str:
    """The dim variant of a colour (raw points behind a smoothed line, a seed group's band)."""
    return f"{color} dim"
