"""Braille line charts: numpy in, Rich `Text` out. No Textual here.

Why not plotext: it is pure Python (seconds for 20 x 10k points) and its log scales crash on rebuild. Every series is
downsampled to the plot's pixel width first (min/max per pixel column, so peaks survive), then all its points are
rasterised at once into a braille grid (2 x 4 pixels per terminal cell) with numpy.

Conventions: `width`/`height` are terminal cells of the whole chart (axes, legend and title included); pixel row 0
is the top; the output always has exactly `height` lines of exactly `width` cells, whatever the data.

Overlaps: a braille cell has one colour, so where lines cross the last one drawn wins. Series are drawn from the one
covering the most cells to the one covering the fewest (then `emphasis` ones), so a short or flat curve lying under
a long noisy one keeps its colour where they share cells (measured on the lr_sweep: momentum, nesterov and adam
vanished under rmsprop when drawn in run order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from rich.text import Text

from tui.plot.axes import axis_ticks, data_range
from tui.plot.canvas import BrailleCanvas, band_pixels, column_spans, line_pixels, to_pixels
from tui.plot.colors import Color, color_of, faint_of
from tui.plot.reduce import finite_part, minmax_by_edges, sorted_by_x
from tui.plot.text import (AXIS_STYLE, TICK_STYLE, TITLE_STYLE, LegendEntry, Lines, blank_text,
                           legend_rows_needed, truncate, write_header)

SWATCHES = {"line": "━", "dashed": "╍", "points": "•"}
CROSSHAIR_STYLE = "grey50"


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
    emphasis: bool = False  # drawn last, on top of every other line (the run the legend cursor is on)


@dataclass
class Band:
    """A shaded area between `lo` and `hi` over `x` (a seed group's min-max or ±std), drawn under the lines."""
    x: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    color: Color = None


@dataclass
class Marker:
    """A character drawn on top of the braille grid. A non-finite or out-of-range `y` pins it to the top edge, `row`
    rows below it (diverged runs of different groups each get their own row, so none hides another). `text` is
    written right of it (moved left to fit)."""
    x: float
    y: float
    char: str = "●"
    color: Color = None
    label: Optional[str] = None  # legend entry (shown once per distinct char/colour/label)
    text: Optional[str] = None
    row: int = 0


class _Styles:
    """Distinct Rich styles of the plot cells; cells refer to them by index."""

    def __init__(self) -> None:
        self.styles: list[str] = []
        self._index: dict[str, int] = {}

    def id_of(self, style: str) -> int:
        if style not in self._index:
            self._index[style] = len(self.styles)
            self.styles.append(style)
        return self._index[style]


def legend_entries(series: Sequence[PlotSeries], markers: Sequence[Marker] = (), diverged: bool = False,
                   ) -> list[LegendEntry]:
    """The default legend: labelled series, then distinct labelled markers, then "× diverged" if any diverged."""
    entries = [LegendEntry(SWATCHES.get(s.style, "━"), color_of(s.color, i), s.label)
               for i, s in enumerate(series) if s.legend and s.label and not s.faint]
    seen = set()
    for i, marker in enumerate(markers):
        color = color_of(marker.color, i) if marker.color is not None else ""
        key = (marker.char, color, marker.label)
        if marker.label and key not in seen:
            seen.add(key)
            entries.append(LegendEntry(marker.char, color, marker.label))
    if diverged:
        entries.append(LegendEntry("×", "bold", "diverged"))
    return entries


def render_chart(series: Sequence[PlotSeries], width: int, height: int, *, title: str = "", x_label: str = "",
                 y_label: str = "", log_x: bool = False, log_y: bool = False,
                 x_range: Optional[tuple[float, float]] = None, y_range: Optional[tuple[float, float]] = None,
                 markers: Sequence[Marker] = (), bands: Sequence[Band] = (),
                 legend: Union[bool, Sequence[LegendEntry]] = True, downsample: bool = True, min_gutter: int = 0,
                 vline: Optional[float] = None) -> Text:
    """A braille line chart of exactly `height` lines x `width` cells (see the module docstring).

    `legend`: True (from the series and markers), False, or explicit entries. `vline`: a crosshair at that x.
    `min_gutter` widens the y-label column so that stacked charts (same width and x_range) share x columns.
    `downsample=False` rasterises every point (the slow baseline the benchmark compares against)."""
    width, height = max(0, int(width)), max(0, int(height))
    if width < 8 or height < 3:
        return blank_text(width, height, truncate(title, width), TITLE_STYLE)

    colors = [color_of(s.color, i) for i, s in enumerate(series)]
    marker_colors = [color_of(m.color, i) if m.color is not None else "" for i, m in enumerate(markers)]
    prepared = [_prepare(s.x, s.y, log_x, log_y) for s in series]
    diverged = any(s.mark_divergence and p[2] is not None for s, p in zip(series, prepared))

    # Header: title then legend entries, on at most a third of the height.
    if legend is True:
        entries = legend_entries(series, markers, diverged)
    else:
        entries = list(legend) if legend else []
    heading = title + (f" · {y_label}" if y_label else "")
    header_rows = min(legend_rows_needed(heading, entries, width), max(0, (height - 2) // 3))
    rows = height - header_rows - 1  # one line of x tick labels
    x_lo, x_hi = data_range(_x_extent(prepared, markers, bands, log_x), x_range, log_x, pad=0.0)

    # Downsample in data units with bucket edges equally spaced in display units (log axes too).
    y_ticks_guess = 8  # gutter width is unknown before the y ticks; assume a typical label width
    cols_guess = max(1, width - y_ticks_guess)
    edges = np.linspace(x_lo, x_hi, 2 * cols_guess + 1)
    edges = 10.0 ** edges if log_x else edges
    reduced = [_reduce(x, y, edges) if downsample else (x, y) for x, y, _ in prepared]
    display = [(_display(x, log_x), _display(y, log_y)) for x, y in reduced]
    band_display = [_band_display(b, log_x, log_y) for b in bands]
    y_extent = [dy for _, dy in display] + [np.concatenate([lo, hi]) for _, lo, hi in band_display]
    y_lo, y_hi = data_range(y_extent, y_range, log_y, pad=0.03)

    y_ticks = axis_ticks(y_lo, y_hi, max(2, rows // 3), log_y)
    gutter = min(max([len(label) for _, label in y_ticks] + [1, min_gutter - 1]) + 1, width // 3)
    cols = width - gutter
    canvas = BrailleCanvas(cols, rows)
    palette = _Styles()
    xr, yr = (x_lo, x_hi), (y_lo, y_hi)
    for band, (bx, blo, bhi) in zip(bands, band_display):
        _draw_band(canvas, bx, blo, bhi, palette.id_of(faint_of(color_of(band.color, 0))), xr, yr)
    strokes = [_stroke(canvas, display[i], series[i].style, xr, yr) for i in range(len(series))]
    order = sorted(range(len(series)), key=lambda i: (not series[i].faint, series[i].emphasis,
                                                       -strokes[i].footprint if strokes[i] else 0))
    for i in order:
        if strokes[i] is not None:
            style = faint_of(colors[i]) if series[i].faint else (f"bold {colors[i]}" if series[i].emphasis
                                                                 else colors[i])
            canvas.draw(strokes[i], palette.id_of(style))
    if vline is not None:
        vx = _display_scalar(vline, log_x)
        if vx is not None and math.isfinite(vx) and x_hi > x_lo:
            column = int(to_pixels(np.array([vx]), x_lo, x_hi, canvas.width_px, flip=False)[0]) >> 1
            canvas.vline = (column, palette.id_of(CROSSHAIR_STYLE))
    for i in range(len(series)):
        divergence_x = prepared[i][2]
        if series[i].mark_divergence and divergence_x is not None:
            _draw_marker(canvas, Marker(_display_scalar(divergence_x, log_x), math.inf, "×"),
                         palette.id_of(f"bold {colors[i]}"), xr, yr)
    for marker, color in zip(markers, marker_colors):
        shown = Marker(_display_scalar(marker.x, log_x), _display_scalar(marker.y, log_y), marker.char,
                       text=marker.text, row=marker.row)
        if shown.x is not None:
            _draw_marker(canvas, shown, palette.id_of(f"bold {color}".strip()), xr, yr)

    lines = Lines(width, height)
    write_header(lines, heading, entries, header_rows, title)
    codes, cell_styles = canvas.cells()
    lines.put_block(header_rows, gutter, codes, cell_styles, palette.styles)
    _write_y_axis(lines, y_ticks, header_rows, rows, gutter, yr)
    write_x_axis(lines, height - 1, gutter, cols, xr, log_x, x_label)
    if canvas.vline is not None:  # where the crosshair is, on the axis too (dense lines hide its ┊)
        lines.write(height - 1, gutter + canvas.vline[0], "▲", "bold")
    return lines.to_text()


# -- preparing data -------------------------------------------------------------------------------------------------
def _prepare(x, y, log_x: bool, log_y: bool) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
    """Finite points that a (log) axis can show, in data units, sorted by x, plus where a NaN/inf tail starts."""
    x, y, divergence_x = finite_part(x, y)
    x, y = sorted_by_x(x, y)
    if log_x and x.size and x[0] <= 0:
        start = int(np.searchsorted(x, 0.0, side="right"))
        x, y = x[start:], y[start:]
    if log_y and y.size and not (y > 0).all():
        positive = y > 0
        x, y = x[positive], y[positive]
    if log_x and divergence_x is not None and divergence_x <= 0:
        divergence_x = None
    return x, y, divergence_x


def _x_extent(prepared: list, markers: Sequence[Marker], bands: Sequence[Band], log_x: bool) -> list[np.ndarray]:
    """Arrays whose extent the x axis must cover (data endpoints, divergence points, markers), in display units."""
    ends = []
    for x, _, divergence_x in prepared:
        if x.size:
            ends.append(x[[0, -1]])
        if divergence_x is not None:
            ends.append(np.array([divergence_x]))
    for band in bands:
        bx = np.asarray(band.x, dtype=np.float64)
        if bx.size:
            ends.append(bx[[0, -1]])
    marker_x = np.array([m.x for m in markers], dtype=np.float64)
    ends.append(marker_x)
    ends = [e[np.isfinite(e) & ((e > 0) if log_x else True)] for e in ends]
    ends = [e for e in ends if e.size]
    return [np.log10(e) for e in ends] if log_x else ends


def _reduce(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= 2 * (len(edges) - 1):
        return x, y
    return minmax_by_edges(x, y, edges)


def _display(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log10(values) if log else values


def _band_display(band: Band, log_x: bool, log_y: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, lo, hi = (np.asarray(a, dtype=np.float64) for a in (band.x, band.lo, band.hi))
    keep = np.isfinite(x) & np.isfinite(lo) & np.isfinite(hi)
    if log_x:
        keep &= x > 0
    if log_y:
        keep &= (lo > 0) & (hi > 0)
    x, lo, hi = x[keep], lo[keep], hi[keep]
    return _display(x, log_x), _display(lo, log_y), _display(hi, log_y)


def _display_scalar(value: Optional[float], log: bool) -> Optional[float]:
    """A marker coordinate in display units; +inf (pin to the top) is kept, impossible values give None."""
    if value is None or math.isnan(value):
        return math.inf
    if log:
        if value <= 0:
            return None
        return math.log10(value) if math.isfinite(value) else value
    return value


# -- drawing --------------------------------------------------------------------------------------------------------
def _stroke(canvas: BrailleCanvas, xy: tuple[np.ndarray, np.ndarray], line_style: str,
            x_range: tuple[float, float], y_range: tuple[float, float]):
    x, y = xy
    if x.size == 0:
        return None
    px = to_pixels(x, *x_range, canvas.width_px, flip=False)
    py = to_pixels(y, *y_range, canvas.height_px, flip=True)
    if line_style == "points":
        return canvas.pixel_stroke(px, py)
    if line_style == "dashed":
        return canvas.pixel_stroke(*line_pixels(px, py, dash=3))
    return canvas.span_stroke(*column_spans(px, py))


def _draw_band(canvas: BrailleCanvas, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, style_id: int,
               x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    if x.size < 2:
        return
    px = to_pixels(x, *x_range, canvas.width_px, flip=False)
    top = to_pixels(hi, *y_range, canvas.height_px, flip=True)
    bottom = to_pixels(lo, *y_range, canvas.height_px, flip=True)
    canvas.plot_pixels(*band_pixels(px, top, bottom), style_id)


def _draw_marker(canvas: BrailleCanvas, marker: Marker, style_id: int, x_range: tuple[float, float],
                 y_range: tuple[float, float]) -> None:
    x, y = marker.x, marker.y
    if x is None or not math.isfinite(x):
        return
    px = int(to_pixels(np.array([x]), *x_range, canvas.width_px, flip=False)[0])
    pinned = y is None or not math.isfinite(y) or y > y_range[1]
    if pinned:
        row = min(max(marker.row, 0), canvas.rows - 1)  # non-finite or above the range: pinned near the top
    else:
        py = int(to_pixels(np.array([y]), *y_range, canvas.height_px, flip=True)[0])
        row = min(max(py, 0), canvas.height_px - 1) >> 2
    col = min(max(px, 0), canvas.width_px - 1) >> 1
    if pinned:  # markers pinned to the top stack downwards, so none hides another (10 runs diverging at step 10)
        while row < max(1, canvas.rows // 2) and row * canvas.cols + col in canvas.overlay_char:
            row += 1
    canvas.put_char(col, row, marker.char, style_id)
    if marker.text:
        canvas.put_text(col + 1, row, marker.text, style_id)


def _write_y_axis(lines: Lines, ticks: list, top: int, rows: int, gutter: int,
                  y_range: tuple[float, float]) -> None:
    if gutter <= 0:
        return
    tick_rows = {}
    for value, label in ticks:
        py = int(to_pixels(np.array([value]), *y_range, rows * 4, flip=True)[0])
        if 0 <= py < rows * 4:
            tick_rows.setdefault(py >> 2, label)
    for row in range(rows):
        label = tick_rows.get(row)
        if label is not None:
            lines.write(top + row, 0, label[-(gutter - 1):].rjust(gutter - 1), TICK_STYLE)
        lines.write(top + row, gutter - 1, "┤" if label is not None else "│", AXIS_STYLE)


def write_x_axis(lines: Lines, row: int, gutter: int, cols: int, x_range: tuple[float, float], log_x: bool,
                 x_label: str) -> None:
    label_text = truncate(x_label, max(0, cols // 3))
    label_col = lines.width - len(label_text)
    if gutter:
        lines.write(row, gutter - 1, "└", AXIS_STYLE)
    next_free = gutter
    for value, label in axis_ticks(*x_range, max(1, cols // 12), log_x):
        px = int(to_pixels(np.array([value]), *x_range, cols * 2, flip=False)[0])
        center = gutter + (px >> 1)
        start = min(max(center - len(label) // 2, next_free), lines.width - len(label))
        end = start + len(label)
        if start < next_free or end > lines.width or (label_text and end > label_col - 1):
            continue
        lines.write(row, start, label, TICK_STYLE)
        next_free = end + 2
    if label_text and label_col >= next_free - 1:
        lines.write(row, label_col, label_text, AXIS_STYLE)


__all__ = ["Band", "Marker", "PlotSeries", "legend_entries", "render_chart", "write_x_axis", "field"]
