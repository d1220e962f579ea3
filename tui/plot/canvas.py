"""The braille canvas: 2 x 4 pixels per terminal cell, rasterised with numpy (lines, column spans, points,
checkered bands), plus overlay characters (markers, labels) drawn on top."""
from __future__ import annotations

import numpy as np

# Bit of each braille dot, indexed [pixel row within cell (0..3), pixel column within cell (0..1)].
BRAILLE_BITPOS = np.array([[0, 3], [1, 4], [2, 5], [6, 7]], dtype=np.int64)
BRAILLE_BITPOS_FLAT = BRAILLE_BITPOS.ravel()  # indexed by (row << 1) | column
BRAILLE_BASE = 0x2800


def clip(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # np.clip's Python-level argument checks cost more than the clipping on arrays of a few hundred points.
    return np.minimum(np.maximum(values, lo), hi)


def to_pixels(values: np.ndarray, lo: float, hi: float, n_pixels: int, flip: bool) -> np.ndarray:
    """Display coordinates -> pixel indices, clipped to one pixel beyond each edge (so lines leave the frame
    instead of interpolating toward pixels a billion rows away)."""
    scaled = (values - lo) / (hi - lo) * (n_pixels - 1)
    if flip:
        scaled = (n_pixels - 1) - scaled
    return np.rint(clip(scaled, -1, n_pixels)).astype(np.int64)


def line_pixels(px: np.ndarray, py: np.ndarray, dash: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel on the polyline through (px, py), interpolated in pixel space, all segments at once.
    With `dash` > 0 every other run of `dash` pixels is left out."""
    if len(px) < 2:
        return px, py
    dx, dy = np.diff(px), np.diff(py)
    lengths = np.maximum(np.abs(dx), np.abs(dy))  # pixels per segment, end pixel excluded (it starts the next)
    segment = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(segment.size, dtype=np.float64) - (np.cumsum(lengths) - lengths)[segment]
    inverse = 1.0 / np.maximum(lengths, 1)
    xs = np.append(px[segment] + np.rint(offset * (dx * inverse)[segment]).astype(np.int64), px[-1])
    ys = np.append(py[segment] + np.rint(offset * (dy * inverse)[segment]).astype(np.int64), py[-1])
    if dash > 0:
        keep = (np.arange(len(xs)) // dash) % 2 == 0
        keep[-1] = True
        xs, ys = xs[keep], ys[keep]
    return xs, ys


def column_spans(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise an x-monotone polyline as one vertical pixel interval per pixel column: (column, lo, hi).

    Why: noisy min/max-downsampled data is mostly tall vertical strokes; one interval per column is ~10x fewer
    elements than one entry per pixel. For an x-sorted path, the part inside one column is connected, so its
    pixels are exactly the y range of its vertices there plus where it enters and leaves (at column +- 0.5).
    """
    if len(px) < 2:
        return px, py, py
    dx, dy = np.diff(px), np.diff(py)
    segment = np.repeat(np.arange(len(dx)), dx)  # one entry per column boundary a segment crosses
    left = px[segment] + (np.arange(segment.size) - (np.cumsum(dx) - dx)[segment])
    crossing_y = np.rint(py[segment] + (left + 0.5 - px[segment]) / dx[segment] * dy[segment]).astype(np.int64)
    columns = np.concatenate([px, left, left + 1])
    ys = np.concatenate([py, crossing_y, crossing_y])
    order = np.argsort(columns, kind="stable")
    columns, ys = columns[order], ys[order]
    starts = np.flatnonzero(np.concatenate(([True], columns[1:] != columns[:-1])))
    return columns[starts], np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)


def _span_mask_table() -> np.ndarray:
    """[side, first row, last row] -> braille bits of rows first..last of one side of a cell."""
    table = np.zeros((2, 4, 4), dtype=np.uint8)
    for side in range(2):
        for first in range(4):
            for last in range(first, 4):
                table[side, first, last] = sum(1 << int(BRAILLE_BITPOS[row, side]) for row in range(first, last + 1))
    return table


SPAN_MASK = _span_mask_table()


class Stroke:
    """What one series sets on a canvas, computed before anything is drawn, so the chart can choose the drawing
    order (a cell shows the style of the last stroke drawn in it): `cells` are the cell indices it touches."""

    __slots__ = ("cells", "dot_index", "span_side", "span_bits")

    def __init__(self, cells: np.ndarray, dot_index: np.ndarray | None = None, span_side: np.ndarray | None = None,
                 span_bits: np.ndarray | None = None):
        self.cells, self.dot_index, self.span_side, self.span_bits = cells, dot_index, span_side, span_bits

    @property
    def footprint(self) -> int:
        """How many distinct cells the stroke covers."""
        return int(np.unique(self.cells).size) if self.cells.size else 0


class BrailleCanvas:
    """A cols x rows grid of braille cells; each cell has a dot mask and the style of the last stroke drawn in it."""

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        self.width_px, self.height_px = cols * 2, rows * 4
        self.dots = np.zeros(cols * rows * 8, dtype=bool)  # (cell, bit) presence; packed into masks at the end
        self.masks = np.zeros(cols * rows, dtype=np.uint8)  # bits set by column spans
        self.cell_style = np.full(cols * rows, -1, dtype=np.int64)
        self.overlay_char: dict[int, tuple[str, int]] = {}  # cell -> (character, style id), drawn on top
        self.vline: tuple[int, int] | None = None  # (column, style id): a crosshair through the empty cells

    # -- strokes: computed first, drawn in an order the chart picks ----------------------------------------------
    def pixel_stroke(self, xs: np.ndarray, ys: np.ndarray) -> Stroke:
        """Single pixels (points, dashed lines, bands)."""
        if xs.size and (xs.min() < 0 or ys.min() < 0 or xs.max() >= self.width_px or ys.max() >= self.height_px):
            inside = (xs >= 0) & (xs < self.width_px) & (ys >= 0) & (ys < self.height_px)
            xs, ys = xs[inside], ys[inside]
        cells = (ys >> 2) * self.cols + (xs >> 1)
        return Stroke(cells, dot_index=cells * 8 + BRAILLE_BITPOS_FLAT[((ys & 3) << 1) | (xs & 1)])

    def span_stroke(self, columns: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Stroke:
        """The pixels lo..hi of each pixel column (see `column_spans`)."""
        visible = (columns >= 0) & (columns < self.width_px) & (hi >= 0) & (lo < self.height_px)
        columns = columns[visible]
        lo = clip(lo[visible], 0, self.height_px - 1)
        hi = clip(hi[visible], 0, self.height_px - 1)
        first_row, last_row = lo >> 2, hi >> 2
        counts = last_row - first_row + 1
        span = np.repeat(np.arange(len(columns)), counts)
        row = first_row[span] + (np.arange(span.size) - (np.cumsum(counts) - counts)[span])
        first = np.maximum(lo[span] - 4 * row, 0)
        last = np.minimum(hi[span] - 4 * row, 3)
        side = columns[span] & 1
        cells = row * self.cols + (columns[span] >> 1)
        return Stroke(cells, span_side=side, span_bits=SPAN_MASK[side, first, last])

    def draw(self, stroke: Stroke, style_id: int) -> None:
        if stroke.dot_index is not None:
            self.dots[stroke.dot_index] = True
        else:
            for this_side in (0, 1):  # within one side every cell occurs once, so |= on a fancy index is safe
                chosen = stroke.span_side == this_side
                self.masks[stroke.cells[chosen]] |= stroke.span_bits[chosen]
        self.cell_style[stroke.cells] = style_id

    def plot_pixels(self, xs: np.ndarray, ys: np.ndarray, style_id: int) -> None:
        self.draw(self.pixel_stroke(xs, ys), style_id)

    def plot_spans(self, columns: np.ndarray, lo: np.ndarray, hi: np.ndarray, style_id: int) -> None:
        self.draw(self.span_stroke(columns, lo, hi), style_id)

    # -- overlays --------------------------------------------------------------------------------------------------
    def put_char(self, col: int, row: int, char: str, style_id: int) -> None:
        if 0 <= col < self.cols and 0 <= row < self.rows:
            self.overlay_char[row * self.cols + col] = (char, style_id)

    def put_text(self, col: int, row: int, text: str, style_id: int) -> None:
        """A label on the plot (e.g. a best LR's value), moved left to fit; never over another overlay."""
        col = min(col, self.cols - len(text))
        if col < 0 or not 0 <= row < self.rows:
            return
        if any(row * self.cols + c in self.overlay_char for c in range(col, col + len(text))):
            return
        for offset, char in enumerate(text):
            self.overlay_char[row * self.cols + col + offset] = (char, style_id)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(code point, style id) of every cell, each rows x cols."""
        masks = np.packbits(self.dots.reshape(-1, 8), axis=1, bitorder="little")[:, 0] | self.masks
        masks = masks.astype(np.uint32)
        codes = np.where(masks > 0, BRAILLE_BASE + masks, 32).astype(np.uint32)
        styles = self.cell_style.copy()
        if self.vline is not None and 0 <= self.vline[0] < self.cols:
            column = np.arange(self.rows) * self.cols + self.vline[0]
            empty = column[masks[column] == 0]
            codes[empty] = ord("┊")
            styles[empty] = self.vline[1]
        for cell, (char, style_id) in self.overlay_char.items():
            codes[cell] = ord(char)
            styles[cell] = style_id
        return codes.reshape(self.rows, self.cols), styles.reshape(self.rows, self.cols)


def band_pixels(px: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A checkered fill between two pixel curves sampled at pixel columns `px` (`top` <= `bottom` in pixel rows):
    every other pixel, so the band reads as a light shade behind the lines rather than a solid block."""
    if px.size == 0:
        return px, px
    order = np.argsort(px, kind="stable")
    px, top, bottom = px[order], np.minimum(top, bottom)[order], np.maximum(top, bottom)[order]
    columns = np.arange(int(px[0]), int(px[-1]) + 1)
    lo = np.rint(np.interp(columns, px, top)).astype(np.int64)
    hi = np.rint(np.interp(columns, px, bottom)).astype(np.int64)
    counts = np.maximum(hi - lo + 1, 0)
    col = np.repeat(columns, counts)
    row = np.repeat(lo, counts) + (np.arange(col.size) - np.repeat(np.cumsum(counts) - counts, counts))
    keep = (col + row) % 2 == 0
    return col[keep], row[keep]


def style_runs(styles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal style in one row: (starts, ends, style ids), only for styled runs."""
    if styles.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(np.diff(styles)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [styles.size]))
    ids = styles[starts]
    styled = ids >= 0
    return starts[styled], ends[styled], ids[styled]


# ---------------------------------------------------------------------------------------------------------------
