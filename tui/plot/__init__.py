"""Pure chart rendering for the dashboard: numpy in, Rich `Text` out. No Textual here.

- `reduce`: finite parts, min/max downsampling, debiased EMA, seed-group aggregation, the robust y range;
- `axes`: ticks and number formats; `canvas`: the braille grid; `text`: line blocks and legends;
- `chart`: `render_chart` (lines, bands, markers, crosshair); `heatmap`: layers x time shade maps;
- `colors`: the categorical palette.
"""
from tui.plot.axes import axis_ticks, data_range, format_number
from tui.plot.canvas import BrailleCanvas, band_pixels, column_spans, line_pixels
from tui.plot.chart import Band, Marker, PlotSeries, legend_entries, render_chart
from tui.plot.colors import PALETTE, color_of, faint_of
from tui.plot.heatmap import LEVEL_BOUNDS, LEVEL_LABELS, SHADES, bucket_means, heatmap_key, render_heatmap, shade_levels
from tui.plot.reduce import (aggregate, downsample_minmax, ema_debiased, ema_debiased_sampled, finite_part,
                             robust_top, smooth_for_display, value_at)
from tui.plot.text import HINT_STYLE, LegendEntry, blank_text, truncate

__all__ = [
    "Band", "BrailleCanvas", "HINT_STYLE", "LEVEL_BOUNDS", "LEVEL_LABELS", "LegendEntry", "Marker", "PALETTE",
    "PlotSeries", "SHADES", "aggregate", "axis_ticks", "band_pixels", "blank_text", "bucket_means", "color_of",
    "column_spans", "data_range", "downsample_minmax", "ema_debiased", "ema_debiased_sampled", "faint_of",
    "finite_part", "format_number", "heatmap_key", "legend_entries", "line_pixels", "render_chart", "render_heatmap",
    "robust_top", "shade_levels", "smooth_for_display", "truncate", "value_at",
]
