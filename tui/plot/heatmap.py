"""Heatmaps: layers x time shade maps (the dead-ReLU fraction of every layer over the steps of one run).

Nine levels, finest where it matters: a layer 5% dead and one 23% dead must not look alike (the old five quarters
showed both as "≤25%"). Each level has its own colour on a green -> red ramp and a denser shade character, and the
key names every level in percent.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from rich.text import Text

from tui.plot.chart import write_x_axis
from tui.plot.canvas import style_runs
from tui.plot.text import AXIS_STYLE, TICK_STYLE, TITLE_STYLE, Lines, truncate

# Upper bounds of the levels after "exactly 0": a value v is at the first level whose bound is >= v.
LEVEL_BOUNDS = (0.05, 0.10, 0.15, 0.20, 0.30, 0.50, 0.75, 1.00)
SHADES = "·▁▂▃▄▅▆▇█"  # level 0 (nothing dead), then one per bound
SHADE_STYLES = ("#4e7a4e", "#8fbf5a", "#c3d45a", "#e8d44d", "#f2b33d", "#f08c2e", "#e8602a", "#d93a2b", "#ff1f1f")
LEVEL_LABELS = ("0",) + tuple(f"{round(b * 100)}%" for b in LEVEL_BOUNDS)


def shade_levels(values: np.ndarray) -> np.ndarray:
    """0 for exactly 0 (nothing dead), else 1..8 by LEVEL_BOUNDS, so any dead unit shows; -1 where there is no
    data."""
    values = np.asarray(values, dtype=np.float64)
    clean = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    levels = np.searchsorted(np.asarray(LEVEL_BOUNDS), clean - 1e-12, side="left") + 1
    levels = np.where(clean <= 0.0, 0, np.minimum(levels, len(LEVEL_BOUNDS))).astype(np.int64)
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
    lines = Lines(width, height)
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
    write_x_axis(lines, height - 1, label_width + 1, cells, (lo, hi if hi > lo else lo + 1.0), False, x_label)
    return lines.to_text()


def _write_shades(lines: Lines, row: int, col: int, levels: np.ndarray) -> None:
    chars = np.array(list(" " + SHADES))[levels + 1]
    lines.rows[row][col: col + len(chars)] = list(chars)
    starts, ends, ids = style_runs(levels)
    lines.spans[row].extend((col + int(s), col + int(e), SHADE_STYLES[int(i)]) for s, e, i in zip(starts, ends, ids))


def _write_heatmap_title(lines: Lines, title: str) -> None:
    lines.write(0, 0, truncate(title, lines.width), TITLE_STYLE)


def heatmap_key(width: int, caption: str = "dead") -> Text:
    """The shade key on one line, every level named in percent: `dead · 0 ▁ 5% ▂ 10% ... █ 100%`."""
    lines = Lines(width, 1)
    col = lines.write(0, 0, caption, TICK_STYLE) + 1
    for level, label in enumerate(LEVEL_LABELS):
        col = lines.write(0, col, SHADES[level], SHADE_STYLES[level])
        col = lines.write(0, col + 1, label, TICK_STYLE) + 1
    return lines.to_text()
