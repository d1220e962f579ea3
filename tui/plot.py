"""Pure chart rendering for the dashboard: numpy in, Rich `Text` out. No Textual here.

Why not plotext: it is pure Python (seconds for 20 x 10k points) and its log scales crash on rebuild. This module
downsamples every series to the plot's pixel width first (min/max per pixel column, so peaks survive), then
rasterises all points of a series at once into a braille grid (2 x 4 pixels per terminal cell) with numpy.

Conventions: `width`/`height` are terminal cells of the whole chart (axes, legend and title included); pixel
row 0 is the top; the output always has exactly `height` lines of exactly `width` cells, whatever the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from rich.text import Span, Text

# Exact xterm-256 cube colours: bright enough on dark backgrounds, and a 256-colour terminal shows them unchanged.
PALETTE = (
    "#5fafff",  # sky blue
    "#ff8700",  # orange
    "#5fd75f",  # green
    "#ff5f87",  # pink-red
    "#af87ff",  # violet
    "#ffd700",  # yellow
    "#00d7d7",  # cyan
    "#d7875f",  # brown
    "#ff87d7",  # magenta
    "#afd700",  # lime
    "#8787d7",  # slate blue
    "#d7d7d7",  # light grey
)
AXIS_STYLE = "grey50"
TICK_STYLE = "grey62"
TITLE_STYLE = "bold"
HINT_STYLE = "italic grey62"

# Bit of each braille dot, indexed [pixel row within cell (0..3), pixel column within cell (0..1)].
BRAILLE_BITPOS = np.array([[0, 3], [1, 4], [2, 5], [6, 7]], dtype=np.int64)
BRAILLE_BITPOS_FLAT = BRAILLE_BITPOS.ravel()  # indexed by (row << 1) | column
BRAILLE_BASE = 0x2800

Color = Union[int, str, None]


@dataclass
class PlotSeries:
    """One line on a chart. `color` is a palette index, a Rich colour, or None (next palette colour)."""
    x: np.ndarray
    y: np.ndarray
    label: str = ""
    color: Color = None
    style: str = "line"  # line | dashed | points
    faint: bool = False  # drawn dim and underneath (the raw series behind a smoothed one)
    legend: bool = True
    mark_divergence: bool = True  # a NaN/inf tail gets a "×" at the top edge where it starts


@dataclass
class Marker:
    """A character drawn on top of the braille grid. A non-finite or out-of-range `y` pins it to the top edge."""
    x: float
    y: float
    char: str = "●"
    color: Color = None
    label: Optional[str] = None  # legend entry (shown once per distinct char/colour/label)


@dataclass
class _Styles:
    """Distinct Rich styles of the plot cells; cells refer to them by index."""
    styles: list = field(default_factory=list)

    def id_of(self, style: str) -> int:
        if style not in self.styles:
            self.styles.append(style)
        return self.styles.index(style)


def color_of(color: Color, index: int) -> str:
    if color is None:
        return PALETTE[index % len(PALETTE)]
    if isinstance(color, (int, np.integer)):
        return PALETTE[int(color) % len(PALETTE)]
    return str(color)


# ---------------------------------------------------------------------------------------------------------------
# Data reduction
# ---------------------------------------------------------------------------------------------------------------

def finite_part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
    """Finite (x, y) points, plus the x where a non-finite tail (a diverged run) starts, if there is one."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if np.isfinite(y).all() and np.isfinite(x).all():
        return x, y, None
    finite = np.isfinite(y) & np.isfinite(x)
    divergence_x = None
    last_finite = n - 1 - int(np.argmax(finite[::-1])) if finite.any() else -1
    if last_finite < n - 1 and np.isfinite(x[last_finite + 1]):
        divergence_x = float(x[last_finite + 1])
    return x[finite], y[finite], divergence_x


def _sorted_by_x(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Steps, epochs and wall times arrive sorted; sorting is only a fallback.
    if len(x) > 1 and not np.all(x[1:] >= x[:-1]):
        order = np.argsort(x, kind="stable")
        return x[order], y[order]
    return x, y


def _first_in_bucket(hits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first True of `hits` at or after each bucket start (each bucket is known to hold one)."""
    positions = np.flatnonzero(hits)
    return positions[np.searchsorted(positions, starts)]


def _minmax_by_edges(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of every bucket between consecutive `edges` (x sorted, all finite), kept in x order."""
    n_buckets = len(edges) - 1
    chunk = len(x) // (8 * max(1, n_buckets))
    if chunk >= 4:
        x, y = _chunk_extremes(x, y, chunk)
    n = len(x)
    bounds = np.concatenate(([0], np.searchsorted(x, edges[1:-1], side="left"), [n]))
    counts = np.diff(bounds)
    starts = bounds[:-1][counts > 0]
    counts = counts[counts > 0]
    bucket_min = np.minimum.reduceat(y, starts)
    bucket_max = np.maximum.reduceat(y, starts)
    i_min = _first_in_bucket(y == np.repeat(bucket_min, counts), starts)
    i_max = _first_in_bucket(y == np.repeat(bucket_max, counts), starts)
    return _ordered_pairs(x, y, i_min, i_max)


def _ordered_pairs(x: np.ndarray, y: np.ndarray, i_min: np.ndarray, i_max: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Points at i_min and i_max of each bucket, earlier one first, a point that is both only once."""
    first, second = np.minimum(i_min, i_max), np.maximum(i_min, i_max)
    keep = np.column_stack([first, second]).ravel()
    distinct = np.ones(len(keep), dtype=bool)
    distinct[1::2] = second != first
    keep = keep[distinct]
    return x[keep], y[keep]


def _chunk_extremes(x: np.ndarray, y: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-pass: min and max of fixed-size index chunks (a reshape + argmin, ~10x cheaper than the per-bucket
    search). Chunks are at most 1/8 of an average bucket; the global min and max always survive, and a bucket
    extreme can only move to the neighbouring bucket when its chunk straddles their edge."""
    whole = len(y) // chunk * chunk
    base = np.arange(0, whole, chunk)
    block = y[:whole].reshape(-1, chunk)
    xs, ys = _ordered_pairs(x, y, base + block.argmin(axis=1), base + block.argmax(axis=1))
    return np.concatenate([xs, x[whole:]]), np.concatenate([ys, y[whole:]])


def downsample_minmax(x, y, n_buckets: int, x_range: Optional[tuple[float, float]] = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's min and max point (in x order) over `n_buckets` equal-width x buckets.

    Non-finite points are dropped (a diverged run keeps its finite part). The result has at most 2 * n_buckets
    points and always contains the global min and max. O(n): searchsorted on bucket edges + reduceat.
    """
    x, y, _ = finite_part(x, y)
    x, y = _sorted_by_x(x, y)
    n_buckets = max(1, int(n_buckets))
    if len(x) <= 2 * n_buckets:
        return x, y
    lo, hi = x_range if x_range is not None else (x[0], x[-1])
    if not hi > lo:
        lo, hi = x[0], x[-1]
    if not hi > lo:  # every x equal: one bucket
        return _minmax_by_edges(x, y, np.array([lo, hi]))
    return _minmax_by_edges(x, y, np.linspace(lo, hi, n_buckets + 1))


def _first_order_filter(gain: float, decay: float, values: np.ndarray) -> np.ndarray:
    """out[i] = decay * out[i-1] + gain * values[i], out[-1] = 0 (scipy's C filter; a loop without scipy)."""
    try:
        from scipy.signal import lfilter  # imported lazily: scipy.signal costs ~0.2 s at app start
        return lfilter([gain], [1.0, -decay], values)
    except ImportError:
        out = np.empty(len(values))
        last = 0.0
        for i, value in enumerate(values):
            last = decay * last + gain * value
            out[i] = last
        return out


def _clamp_smoothing(smoothing: float) -> float:
    return float(min(max(smoothing, 0.0), 0.999))  # 1.0 would freeze the average at its start


def ema_debiased(y, smoothing: float) -> np.ndarray:
    """TensorBoard's smoothing: EMA started at 0 and divided by (1 - smoothing^k) so early points are not biased
    toward 0. Non-finite values pass through unchanged and do not feed the average."""
    y = np.asarray(y, dtype=np.float64)
    smoothing = _clamp_smoothing(smoothing)
    finite = np.isfinite(y)
    all_finite = bool(finite.all())
    values = y if all_finite else y[finite]
    if smoothing == 0.0 or values.size == 0:
        return y.copy()
    accumulated = _first_order_filter(1.0 - smoothing, smoothing, values)
    # smoothing^k underflows past 1e-17 after a few hundred points: debias only the head.
    head = min(values.size, int(math.ceil(-17.0 / math.log10(smoothing))) + 1)
    accumulated[:head] /= 1.0 - smoothing ** np.arange(1, head + 1)
    if all_finite:
        return accumulated
    out = y.copy()
    out[finite] = accumulated
    return out


def ema_debiased_sampled(y, smoothing: float, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of `ema_debiased(y, smoothing)` at every `every`-th point and at the last point.

    Exact, and ~20x cheaper than the full pass for display: the EMA at the end of a chunk of k points is
    s^k * (EMA before the chunk) + (1 - s) * sum_j s^(k-1-j) y_j, so one matrix-vector product gives every chunk's
    contribution and a sequential filter runs over n/k chunks instead of n points. `y` must be finite.
    """
    y = np.asarray(y, dtype=np.float64)
    smoothing, n, every = _clamp_smoothing(smoothing), len(y), max(1, int(every))
    if every == 1 or n < 2 * every or smoothing == 0.0:
        index = np.unique(np.append(np.arange(every - 1, n, every), n - 1)) if n else np.zeros(0, np.int64)
        return index, ema_debiased(y, smoothing)[index]
    chunks = n // every
    decay = smoothing ** np.arange(every - 1, -1, -1)
    chunk_sums = y[: chunks * every].reshape(chunks, every) @ decay
    ends = _first_order_filter(1.0 - smoothing, smoothing ** every, chunk_sums)
    index = np.arange(1, chunks + 1) * every - 1
    tail = y[chunks * every:]
    if tail.size:
        last = ends[-1] * smoothing ** tail.size + (1.0 - smoothing) * (tail @ decay[every - tail.size:])
        ends, index = np.append(ends, last), np.append(index, n - 1)
    return index, ends / (1.0 - smoothing ** (index + 1.0))


def smooth_for_display(x, y, smoothing: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The debiased EMA of the finite part of (x, y), sampled at about `n_points` evenly spaced points."""
    x, y, _ = finite_part(x, y)
    index, values = ema_debiased_sampled(y, smoothing, max(1, len(y) // max(1, n_points)))
    return x[index], values


# ---------------------------------------------------------------------------------------------------------------
# Axes and ticks
# ---------------------------------------------------------------------------------------------------------------

def _nice_step(span: float, target: int) -> float:
    raw = span / max(1, target)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * magnitude >= raw * (1 - 1e-9):
            return factor * magnitude
    return 10.0 * magnitude


def format_number(value: float, step: float = 0.0) -> str:
    """Short tick label: enough decimals for the tick step, k/M suffixes for big numbers."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e4:
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if magnitude >= scale:
                text = f"{value / scale:.3g}{suffix}"
                return text
    if step:
        decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
        if step * 10 ** decimals % 1 > 1e-6:  # steps like 2.5 need one more decimal
            decimals += 1
        text = f"{value:.{decimals}f}"
        if len(text) <= 6:
            return text
    return f"{value:.3g}"


def format_decade(exponent: int) -> str:
    if -2 <= exponent <= 3:
        return format_number(10.0 ** exponent, 10.0 ** exponent)
    return f"1e{exponent}"


def format_log_value(log_value: float) -> str:
    exponent = round(log_value)
    if abs(log_value - exponent) < 1e-9:
        return format_decade(int(exponent))
    return f"{10.0 ** log_value:.2g}"


def axis_ticks(lo: float, hi: float, target: int, log: bool) -> list[tuple[float, str]]:
    """(position, label) ticks inside [lo, hi], about `target` of them; log axes take log10 positions and get
    decades, or 1-2-5 values when the range spans less than two decades."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or target < 1:
        return []
    if log:
        decades = range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)
        if len(decades) >= 2:
            stride = max(1, math.ceil(len(decades) / max(target, 1)))
            return [(float(d), format_decade(d)) for d in decades[::stride]]
        for mantissas in ((1, 2, 5), (1, 3), (1,)):
            ticks = _log_mantissa_ticks(lo, hi, mantissas)
            if 2 <= len(ticks) <= max(2, target + 1):
                return ticks
        step = _nice_step(hi - lo, target)
        values = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
        return [(float(v), format_log_value(float(v))) for v in values]
    step = _nice_step(hi - lo, target)
    values = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
    return [(float(v), format_number(float(v) if abs(v) > step * 1e-9 else 0.0, step)) for v in values]


def _log_mantissa_ticks(lo: float, hi: float, mantissas: tuple[int, ...]) -> list[tuple[float, str]]:
    ticks = []
    for exponent in range(math.floor(lo) - 1, math.ceil(hi) + 1):
        for mantissa in mantissas:
            position = math.log10(mantissa) + exponent
            if lo - 1e-9 <= position <= hi + 1e-9:
                ticks.append((position, format_mantissa(mantissa, exponent)))
    return ticks


def format_mantissa(mantissa: int, exponent: int) -> str:
    if -2 <= exponent <= 3:
        return format_number(mantissa * 10.0 ** exponent, 10.0 ** exponent)
    return f"{mantissa}e{exponent}"


def _data_range(arrays: Sequence[np.ndarray], fixed: Optional[tuple[float, float]], log: bool,
                pad: float) -> tuple[float, float]:
    """Axis range in display coordinates: `fixed` (data units) if given, else the data extent, widened when flat."""
    if fixed is not None:
        lo, hi = (float(v) for v in fixed)
        if log:
            lo = math.log10(lo) if lo > 0 else float("nan")
            hi = math.log10(hi) if hi > 0 else float("nan")
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            return lo, hi
    non_empty = [a for a in arrays if a.size]
    if not non_empty:
        return (-1.0, 0.0) if log else (0.0, 1.0)
    lo = min(float(a.min()) for a in non_empty)
    hi = max(float(a.max()) for a in non_empty)
    if hi <= lo:
        half = 0.5 if log else max(abs(lo) * 0.1, 0.5)
        return lo - half, hi + half
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


# ---------------------------------------------------------------------------------------------------------------
# Rasterising
# ---------------------------------------------------------------------------------------------------------------

def _clip(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # np.clip's Python-level argument checks cost more than the clipping on arrays of a few hundred points.
    return np.minimum(np.maximum(values, lo), hi)


def _to_pixels(values: np.ndarray, lo: float, hi: float, n_pixels: int, flip: bool) -> np.ndarray:
    """Display coordinates -> pixel indices, clipped to one pixel beyond each edge (so lines leave the frame
    instead of interpolating toward pixels a billion rows away)."""
    scaled = (values - lo) / (hi - lo) * (n_pixels - 1)
    if flip:
        scaled = (n_pixels - 1) - scaled
    return np.rint(_clip(scaled, -1, n_pixels)).astype(np.int64)


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


class BrailleCanvas:
    """A cols x rows grid of braille cells; each cell has a dot mask and the style of the last series drawn in it."""

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        self.width_px, self.height_px = cols * 2, rows * 4
        self.dots = np.zeros(cols * rows * 8, dtype=bool)  # (cell, bit) presence; packed into masks at the end
        self.masks = np.zeros(cols * rows, dtype=np.uint8)  # bits set by column spans
        self.cell_style = np.full(cols * rows, -1, dtype=np.int64)
        self.overlay_char: dict[int, tuple[str, int]] = {}  # cell -> (character, style id), drawn on top

    def plot_pixels(self, xs: np.ndarray, ys: np.ndarray, style_id: int) -> None:
        if xs.size == 0:
            return
        if xs.min() < 0 or ys.min() < 0 or xs.max() >= self.width_px or ys.max() >= self.height_px:
            inside = (xs >= 0) & (xs < self.width_px) & (ys >= 0) & (ys < self.height_px)
            xs, ys = xs[inside], ys[inside]
        cells = (ys >> 2) * self.cols + (xs >> 1)
        self.dots[cells * 8 + BRAILLE_BITPOS_FLAT[((ys & 3) << 1) | (xs & 1)]] = True
        self.cell_style[cells] = style_id

    def plot_spans(self, columns: np.ndarray, lo: np.ndarray, hi: np.ndarray, style_id: int) -> None:
        """Set the pixels lo..hi of each pixel column (see `column_spans`)."""
        visible = (columns >= 0) & (columns < self.width_px) & (hi >= 0) & (lo < self.height_px)
        columns = columns[visible]
        lo = _clip(lo[visible], 0, self.height_px - 1)
        hi = _clip(hi[visible], 0, self.height_px - 1)
        first_row, last_row = lo >> 2, hi >> 2
        counts = last_row - first_row + 1
        span = np.repeat(np.arange(len(columns)), counts)
        row = first_row[span] + (np.arange(span.size) - (np.cumsum(counts) - counts)[span])
        first = np.maximum(lo[span] - 4 * row, 0)
        last = np.minimum(hi[span] - 4 * row, 3)
        side = columns[span] & 1
        cells = row * self.cols + (columns[span] >> 1)
        bits = SPAN_MASK[side, first, last]
        for this_side in (0, 1):  # within one side every cell occurs once, so |= on a fancy index is safe
            chosen = side == this_side
            self.masks[cells[chosen]] |= bits[chosen]
        self.cell_style[cells] = style_id

    def put_char(self, col: int, row: int, char: str, style_id: int) -> None:
        if 0 <= col < self.cols and 0 <= row < self.rows:
            self.overlay_char[row * self.cols + col] = (char, style_id)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(code point, style id) of every cell, each rows x cols."""
        masks = np.packbits(self.dots.reshape(-1, 8), axis=1, bitorder="little")[:, 0] | self.masks
        masks = masks.astype(np.uint32)
        codes = np.where(masks > 0, BRAILLE_BASE + masks, 32).astype(np.uint32)
        styles = self.cell_style.copy()
        for cell, (char, style_id) in self.overlay_char.items():
            codes[cell] = ord(char)
            styles[cell] = style_id
        return codes.reshape(self.rows, self.cols), styles.reshape(self.rows, self.cols)


def _style_runs(styles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
# Text assembly
# ---------------------------------------------------------------------------------------------------------------

class _Lines:
    """Fixed-size block of text lines being assembled: plain strings plus styled spans (per-line offsets)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.rows = [[" "] * width for _ in range(height)]
        self.spans: list[list[tuple[int, int, str]]] = [[] for _ in range(height)]

    def write(self, row: int, col: int, text: str, style: Optional[str] = None) -> int:
        """Write `text` at (row, col), cropped to the width; returns the column after it."""
        if not (0 <= row < self.height) or col >= self.width or not text:
            return col
        text = text[: max(0, self.width - col)]
        self.rows[row][col: col + len(text)] = list(text)
        if style:
            self.spans[row].append((col, col + len(text), style))
        return col + len(text)

    def put_block(self, row: int, col: int, codes: np.ndarray, cell_style: np.ndarray, styles: list) -> None:
        """Copy a canvas (code points + style ids per cell) into the lines at (row, col)."""
        for r in range(codes.shape[0]):
            self.rows[row + r][col: col + codes.shape[1]] = list(codes[r].tobytes().decode("utf-32-le"))
            starts, ends, ids = _style_runs(cell_style[r])
            self.spans[row + r].extend(
                (col + int(s), col + int(e), styles[int(i)]) for s, e, i in zip(starts, ends, ids))

    def to_text(self) -> Text:
        plain_lines = ["".join(row) for row in self.rows]
        spans, offset = [], 0
        for line, line_spans in zip(plain_lines, self.spans):
            spans.extend(Span(offset + s, offset + e, style) for s, e, style in line_spans)
            offset += len(line) + 1
        return Text("\n".join(plain_lines), spans=spans, no_wrap=True, overflow="crop", end="")


def blank_text(width: int, height: int, message: str = "", style: str = HINT_STYLE) -> Text:
    """`height` lines of `width` spaces, with an optional one-line message on the first line."""
    lines = _Lines(max(0, width), max(0, height))
    lines.write(0, 0, message, style)
    return lines.to_text()


def truncate(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _legend_entries(series: Sequence[PlotSeries], colors: list[str], markers: Sequence[Marker],
                    diverged_colors: list[str]) -> list[tuple[str, str, str]]:
    """(swatch, swatch style, label) for each legend item: series first, then distinct markers."""
    swatches = {"line": "━", "dashed": "╍", "points": "•"}
    entries = [(swatches.get(s.style, "━"), c, s.label)
               for s, c in zip(series, colors) if s.legend and s.label and not s.faint]
    seen = set()
    for marker, color in markers:
        key = (marker.char, color, marker.label)
        if marker.label and key not in seen:
            seen.add(key)
            entries.append((marker.char, color, marker.label))
    if diverged_colors:
        entries.append(("×", "bold", "diverged"))
    return entries


def _layout_legend(entries: list[tuple[str, str, str]], width: int, max_rows: int, first_row_start: int,
                   ) -> list[list[tuple[int, str, str, str]]]:
    """Greedy rows of (column, swatch, style, label); when entries run out of room the last one says "+N"."""
    rows: list[list[tuple[int, str, str, str]]] = [[] for _ in range(max_rows)]
    if max_rows <= 0:
        return rows
    label_cap = max(6, width // 3)
    row, col = 0, first_row_start
    for index, (swatch, style, label) in enumerate(entries):
        text = truncate(label, label_cap)
        needed = 2 + len(text)
        if col + needed > width and col > 0:
            row, col = row + 1, 0
        if row >= max_rows:
            _mark_hidden(rows[-1], len(entries) - index, width)
            break
        rows[row].append((col, swatch, style, truncate(text, width - col - 2)))
        col += needed + 2
    return rows


def _mark_hidden(row: list, hidden: int, width: int) -> None:
    note = f"+{hidden}"
    while row and row[-1][0] + 2 + len(row[-1][3]) + 2 + len(note) > width:
        hidden += 1
        note = f"+{hidden}"
        row.pop()
    col = row[-1][0] + 2 + len(row[-1][3]) + 2 if row else 0
    row.append((col, "", "", note))


def _header_rows_needed(title: str, entries: list, width: int) -> int:
    text_len = len(title) + sum(len(e[2]) + 4 for e in entries)
    return max(1 if (title or entries) else 0, math.ceil(text_len / max(1, width)))


# ---------------------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------------------

def _prepare(series: PlotSeries, log_x: bool, log_y: bool) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
    """Finite points that a (log) axis can show, in data units, sorted by x."""
    x, y, divergence_x = finite_part(series.x, series.y)
    x, y = _sorted_by_x(x, y)
    if log_x and x.size and x[0] <= 0:
        start = int(np.searchsorted(x, 0.0, side="right"))
        x, y = x[start:], y[start:]
    if log_y and y.size and not (y > 0).all():
        positive = y > 0
        x, y = x[positive], y[positive]
    if log_x and divergence_x is not None and divergence_x <= 0:
        divergence_x = None
    return x, y, divergence_x


def _x_extent(prepared: list[tuple[np.ndarray, np.ndarray, Optional[float]]], markers: Sequence[Marker],
              log_x: bool) -> list[np.ndarray]:
    """Arrays whose extent the x axis must cover (data endpoints, divergence points, markers), in display units."""
    ends = []
    for x, _, divergence_x in prepared:
        if x.size:
            ends.append(x[[0, -1]])
        if divergence_x is not None:
            ends.append(np.array([divergence_x]))
    marker_x = np.array([m.x for m in markers], dtype=np.float64)
    marker_x = marker_x[np.isfinite(marker_x)]
    if log_x:
        marker_x = marker_x[marker_x > 0]
    ends.append(marker_x)
    ends = [e for e in ends if e.size]
    return [np.log10(e) for e in ends] if log_x else ends


def render_chart(series: Sequence[PlotSeries], width: int, height: int, *, title: str = "", x_label: str = "",
                 y_label: str = "", log_x: bool = False, log_y: bool = False,
                 x_range: Optional[tuple[float, float]] = None, y_range: Optional[tuple[float, float]] = None,
                 markers: Sequence[Marker] = (), legend: bool = True, downsample: bool = True,
                 min_gutter: int = 0) -> Text:
    """A braille line chart of exactly `height` lines x `width` cells (see the module docstring).

    `min_gutter` widens the y-label column so that stacked charts (same width and x_range) share x columns.
    `downsample=False` rasterises every point (the slow baseline the benchmark compares against)."""
    width, height = max(0, int(width)), max(0, int(height))
    if width < 8 or height < 3:
        return blank_text(width, height, truncate(title, width), TITLE_STYLE)

    colors = [color_of(s.color, i) for i, s in enumerate(series)]
    marker_colors = [(m, color_of(m.color, i) if m.color is not None else "") for i, m in enumerate(markers)]
    prepared = [_prepare(s, log_x, log_y) for s in series]
    diverged_colors = [c for s, c, p in zip(series, colors, prepared) if s.mark_divergence and p[2] is not None]

    # Header: title then legend entries, on at most a third of the height.
    entries = _legend_entries(series, colors, marker_colors, diverged_colors) if legend else []
    heading = title + (f" · {y_label}" if y_label else "")
    header_rows = min(_header_rows_needed(heading, entries, width), max(0, (height - 2) // 3))
    rows = height - header_rows - 1  # one line of x tick labels
    x_lo, x_hi = _data_range(_x_extent(prepared, markers, log_x), x_range, log_x, pad=0.0)

    # Downsample in data units with bucket edges equally spaced in display units (log axes too).
    y_ticks_guess = 8  # gutter width is unknown before the y ticks; assume a typical label width
    cols_guess = max(1, width - y_ticks_guess)
    edges = np.linspace(x_lo, x_hi, 2 * cols_guess + 1)
    edges = 10.0 ** edges if log_x else edges
    reduced = [_reduce(x, y, edges) if downsample else (x, y) for x, y, _ in prepared]
    display = [(_display(x, log_x), _display(y, log_y)) for x, y in reduced]
    y_lo, y_hi = _data_range([dy for _, dy in display], y_range, log_y, pad=0.03)

    y_ticks = axis_ticks(y_lo, y_hi, max(2, rows // 3), log_y)
    gutter = min(max([len(label) for _, label in y_ticks] + [1, min_gutter - 1]) + 1, width // 3)
    cols = width - gutter
    canvas = BrailleCanvas(cols, rows)
    palette = _Styles()
    draw_order = sorted(range(len(series)), key=lambda i: not series[i].faint)  # faint ones underneath
    for i in draw_order:
        style = f"{colors[i]} dim" if series[i].faint else colors[i]
        _draw_series(canvas, display[i], series[i].style, palette.id_of(style), (x_lo, x_hi), (y_lo, y_hi))
    for i in range(len(series)):
        divergence_x = prepared[i][2]
        if series[i].mark_divergence and divergence_x is not None:
            _draw_marker(canvas, _display_scalar(divergence_x, log_x), math.inf, "×",
                         palette.id_of(f"bold {colors[i]}"), (x_lo, x_hi), (y_lo, y_hi))
    for marker, color in marker_colors:
        mx = _display_scalar(marker.x, log_x)
        my = _display_scalar(marker.y, log_y)
        if mx is not None:
            _draw_marker(canvas, mx, my, marker.char, palette.id_of(f"bold {color}".strip()), (x_lo, x_hi),
                         (y_lo, y_hi))

    lines = _Lines(width, height)
    _write_header(lines, heading, entries, header_rows, title)
    codes, cell_styles = canvas.cells()
    lines.put_block(header_rows, gutter, codes, cell_styles, palette.styles)
    _write_y_axis(lines, y_ticks, header_rows, rows, gutter, (y_lo, y_hi))
    _write_x_axis(lines, height - 1, gutter, cols, (x_lo, x_hi), log_x, x_label)
    return lines.to_text()


def _reduce(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= 2 * (len(edges) - 1):
        return x, y
    return _minmax_by_edges(x, y, edges)


def _display(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log10(values) if log else values


def _display_scalar(value: float, log: bool) -> Optional[float]:
    """A marker coordinate in display units; +inf (pin to the top) is kept, impossible values give None."""
    if value is None or math.isnan(value):
        return math.inf
    if log:
        if value <= 0:
            return None
        return math.log10(value) if math.isfinite(value) else value
    return value


def _draw_series(canvas: BrailleCanvas, xy: tuple[np.ndarray, np.ndarray], line_style: str, style_id: int,
                 x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    x, y = xy
    if x.size == 0:
        return
    px = _to_pixels(x, *x_range, canvas.width_px, flip=False)
    py = _to_pixels(y, *y_range, canvas.height_px, flip=True)
    if line_style == "points":
        canvas.plot_pixels(px, py, style_id)
        return
    if line_style == "dashed":
        canvas.plot_pixels(*line_pixels(px, py, dash=3), style_id)
        return
    canvas.plot_spans(*column_spans(px, py), style_id)


def _draw_marker(canvas: BrailleCanvas, x: float, y: float, char: str, style_id: int,
                 x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    if x is None or not math.isfinite(x):
        return
    px = int(_to_pixels(np.array([x]), *x_range, canvas.width_px, flip=False)[0])
    if y is None or not math.isfinite(y) or y > y_range[1]:
        row = 0  # non-finite or above the range: pin to the top edge (diverged)
    else:
        py = int(_to_pixels(np.array([y]), *y_range, canvas.height_px, flip=True)[0])
        row = min(max(py, 0), canvas.height_px - 1) >> 2
    col = min(max(px, 0), canvas.width_px - 1) >> 1
    canvas.put_char(col, row, char, style_id)


def _write_header(lines: _Lines, heading: str, entries: list, header_rows: int, title: str) -> None:
    if header_rows <= 0:
        return
    heading = truncate(heading, lines.width)
    col = lines.write(0, 0, heading[: len(title)], TITLE_STYLE)
    col = lines.write(0, col, heading[len(title):], TICK_STYLE)
    start = col + 2 if col else 0
    for row, items in enumerate(_layout_legend(entries, lines.width, header_rows, start)):
        for item_col, swatch, style, label in items:
            after = lines.write(row, item_col, swatch, style) if swatch else item_col
            lines.write(row, after + (1 if swatch else 0), label, None if swatch else TICK_STYLE)


def _write_y_axis(lines: _Lines, ticks: list, top: int, rows: int, gutter: int,
                  y_range: tuple[float, float]) -> None:
    if gutter <= 0:
        return
    tick_rows = {}
    for value, label in ticks:
        py = int(_to_pixels(np.array([value]), *y_range, rows * 4, flip=True)[0])
        if 0 <= py < rows * 4:
            tick_rows.setdefault(py >> 2, label)
    for row in range(rows):
        label = tick_rows.get(row)
        if label is not None:
            lines.write(top + row, 0, label[-(gutter - 1):].rjust(gutter - 1), TICK_STYLE)
        lines.write(top + row, gutter - 1, "┤" if label is not None else "│", AXIS_STYLE)


def _write_x_axis(lines: _Lines, row: int, gutter: int, cols: int, x_range: tuple[float, float], log_x: bool,
                  x_label: str) -> None:
    label_text = truncate(x_label, max(0, cols // 3))
    label_col = lines.width - len(label_text)
    if gutter:
        lines.write(row, gutter - 1, "└", AXIS_STYLE)
    next_free = gutter
    for value, label in axis_ticks(*x_range, max(1, cols // 12), log_x):
        px = int(_to_pixels(np.array([value]), *x_range, cols * 2, flip=False)[0])
        center = gutter + (px >> 1)
        start = min(max(center - len(label) // 2, next_free), lines.width - len(label))
        end = start + len(label)
        if start < next_free or end > lines.width or (label_text and end > label_col - 1):
            continue
        lines.write(row, start, label, TICK_STYLE)
        next_free = end + 2
    if label_text and label_col >= next_free - 1:
        lines.write(row, label_col, label_text, AXIS_STYLE)


# ---------------------------------------------------------------------------------------------------------------
# Heatmap
# ---------------------------------------------------------------------------------------------------------------

SHADES = "·░▒▓█"  # 0 dead, (0, 25%], (25, 50%], (50, 75%], (75, 100%]
SHADE_STYLES = ("#5f875f", "#d7af5f", "#ff8700", "#ff5f00", "#ff0000")


def shade_levels(values: np.ndarray) -> np.ndarray:
    """0 for exactly 0 (nothing dead), else 1..4 by quarter, so any dead unit shows; -1 where there is no data."""
    levels = np.clip(np.ceil(np.nan_to_num(values, nan=0.0) * 4), 0, 4).astype(np.int64)
    levels[np.isnan(values)] = -1
    return levels


def bucket_means(matrix: np.ndarray, x: np.ndarray, n_cells: int,
                 x_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """rows x n_cells means over equal-width x buckets; empty buckets carry the previous value forward (probes
    are sparser than cells), and buckets before the first probe stay NaN."""
    rows = matrix.shape[0]
    out = np.full((rows, n_cells), np.nan)
    if matrix.shape[1] == 0 or n_cells <= 0:
        return out
    lo, hi = x_range if x_range is not None else (float(x[0]), float(x[-1]))
    if hi <= lo:
        hi = lo + 1.0
    cell = np.clip(((x - lo) / (hi - lo) * n_cells).astype(np.int64), 0, n_cells - 1)
    finite = np.isfinite(matrix)
    sums = np.zeros((rows, n_cells))
    counts = np.zeros((rows, n_cells))
    for r in range(rows):  # layers are few; bincount per row is the vectorised part
        sums[r] = np.bincount(cell, weights=np.where(finite[r], matrix[r], 0.0), minlength=n_cells)
        counts[r] = np.bincount(cell, weights=finite[r].astype(np.float64), minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return _forward_fill(means)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    index = np.where(valid, np.arange(values.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    filled = values[np.arange(values.shape[0])[:, None], index]
    before_first = ~np.maximum.accumulate(valid, axis=1)
    filled[before_first] = np.nan
    return filled


def render_heatmap(matrix, row_labels: Sequence[str], width: int, *, x=None, title: str = "",
                   x_label: str = "step", x_range: Optional[tuple[float, float]] = None,
                   label_width: Optional[int] = None) -> Text:
    """Layers x time shade map: one line per row label, a title line if `title`, and a tick line.
    Each cell is the mean of the values in its x bucket (see `bucket_means`), shaded by `shade_levels`."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    if matrix.size == 0:
        matrix = np.zeros((len(row_labels), 0))
    x = np.arange(matrix.shape[1], dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64)
    height = len(row_labels) + 1 + (1 if title else 0)
    width = max(0, int(width))
    lines = _Lines(width, height)
    top = 1 if title else 0
    if label_width is None:
        label_width = max([len(label) for label in row_labels] + [1])
    label_width = min(label_width, max(1, width // 3))
    cells = width - label_width - 1
    if title:
        _write_heatmap_title(lines, title)
    if cells < 1:
        return lines.to_text()
    lo, hi = x_range if x_range is not None else ((float(x[0]), float(x[-1])) if x.size else (0.0, 1.0))
    levels = shade_levels(bucket_means(matrix, x, cells, (lo, hi)))
    for r, label in enumerate(row_labels):
        lines.write(top + r, 0, truncate(label, label_width).rjust(label_width), TICK_STYLE)
        lines.write(top + r, label_width, "│", AXIS_STYLE)
        _write_shades(lines, top + r, label_width + 1, levels[r])
    _write_x_axis(lines, height - 1, label_width + 1, cells, (lo, hi if hi > lo else lo + 1.0), False, x_label)
    return lines.to_text()


def _write_shades(lines: _Lines, row: int, col: int, levels: np.ndarray) -> None:
    chars = np.array(list(" " + SHADES))[levels + 1]
    lines.rows[row][col: col + len(chars)] = list(chars)
    starts, ends, ids = _style_runs(levels)
    lines.spans[row].extend((col + int(s), col + int(e), SHADE_STYLES[int(i)]) for s, e, i in zip(starts, ends, ids))


def _write_heatmap_title(lines: _Lines, title: str) -> None:
    col = lines.write(0, 0, truncate(title, lines.width), TITLE_STYLE)
    key = [(SHADES[0], "0"), (SHADES[1], "≤25%"), (SHADES[2], "≤50%"), (SHADES[3], "≤75%"), (SHADES[4], "dead")]
    key_len = sum(len(label) + 3 for _, label in key) + 1
    if col + key_len > lines.width:
        return
    col = lines.width - key_len + 2
    for level, (shade, label) in enumerate(key):
        col = lines.write(0, col, shade, SHADE_STYLES[level])
        col = lines.write(0, col + 1, label, TICK_STYLE) + 1
