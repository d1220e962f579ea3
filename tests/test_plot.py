"""tui/plot/: downsampling, smoothing, aggregation, the robust range, the braille raster, axes and the heatmap."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tui.plot import (SHADES, Band, Marker, PlotSeries, aggregate, axis_ticks, bucket_means, column_spans,
                      downsample_minmax, ema_debiased, ema_debiased_sampled, finite_part, line_pixels, render_chart,
                      render_heatmap, robust_top, shade_levels, smooth_for_display, value_at)
from tui.plot.axes import format_decade
from tui.plot.canvas import BRAILLE_BASE


def lines_of(text) -> list[str]:
    return text.plain.split("\n")


def assert_frame(text, width: int, height: int) -> None:
    lines = lines_of(text)
    assert len(lines) == height
    assert all(len(line) == width for line in lines), [len(line) for line in lines]


# -- downsampling -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, buckets", [(10, 4), (1000, 7), (100_000, 400), (12345, 300)])
def test_downsample_keeps_global_extremes_and_bounds_size(n, buckets):
    rng = np.random.default_rng(n)
    x = np.arange(n, dtype=float)
    y = rng.standard_normal(n).cumsum()
    dx, dy = downsample_minmax(x, y, buckets)
    assert len(dx) <= max(2 * buckets, 0) or n <= 2 * buckets
    assert dy.max() == y.max() and dy.min() == y.min()
    assert np.all(np.diff(dx) >= 0), "points stay in x order"
    assert set(dx.astype(int)) <= set(x.astype(int))  # only real points


def test_downsample_is_exact_per_bucket_without_the_chunk_prepass():
    """Few points per bucket: every bucket's min and max survive, min/max in x order."""
    x = np.arange(40, dtype=float)
    y = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3] * 4, dtype=float) + np.repeat(np.arange(4) * 10, 10)
    dx, dy = downsample_minmax(x, y, 4)  # buckets of 10 points
    assert len(dx) == 8
    for bucket in range(4):
        sel = (x >= bucket * 10) & (x < bucket * 10 + 10) if bucket < 3 else x >= 30
        mine = (dx >= bucket * 10) & ((dx < bucket * 10 + 10) if bucket < 3 else True)
        assert sorted(dy[mine]) == [y[sel].min(), y[sel].max()]


def test_downsample_peak_survives():
    x = np.arange(50_000, dtype=float)
    y = np.zeros(50_000)
    y[31_337] = 7.0
    dx, dy = downsample_minmax(x, y, 100)
    assert 7.0 in dy and 31_337.0 in dx


def test_downsample_drops_nan_tail_and_reports_divergence():
    x = np.arange(1000, dtype=float)
    y = np.linspace(2, 1, 1000)
    y[600:] = np.nan
    y[700] = np.inf
    dx, dy = downsample_minmax(x, y, 10)
    assert np.isfinite(dy).all() and dx.max() < 600
    assert finite_part(x, y)[2] == 600.0
    assert finite_part(x, np.ones(1000))[2] is None


def test_downsample_small_and_degenerate_inputs():
    assert downsample_minmax([], [], 10)[0].size == 0
    assert downsample_minmax([1.0], [np.nan], 10)[0].size == 0
    dx, dy = downsample_minmax(np.full(500, 3.0), np.arange(500.0), 10)  # all x equal: one bucket
    assert sorted(dy) == [0.0, 499.0]
    dx, dy = downsample_minmax(np.arange(500.0)[::-1], np.arange(500.0), 10)  # unsorted x is sorted first
    assert np.all(np.diff(dx) >= 0)


# -- smoothing --------------------------------------------------------------------------------------------------

def ema_reference(values, smoothing):
    """TensorBoard's JS smoothing loop, transcribed."""
    out, last, count = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * smoothing + (1 - smoothing) * v
        count += 1
        out.append(last / (1 - smoothing ** count))
    return np.array(out)


@pytest.mark.parametrize("smoothing", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_ema_matches_reference_loop(smoothing):
    y = np.random.default_rng(1).standard_normal(2000) + 5
    y[[10, 500]] = np.nan
    y[700] = np.inf
    np.testing.assert_allclose(ema_debiased(y, smoothing), ema_reference(y, smoothing), rtol=1e-12, atol=1e-12,
                               equal_nan=True)


def test_ema_first_value_is_unbiased_and_constant_stays_constant():
    assert ema_debiased([4.0, 4.0, 4.0], 0.9)[0] == pytest.approx(4.0)
    np.testing.assert_allclose(ema_debiased(np.full(1000, 2.5), 0.95), 2.5)


@pytest.mark.parametrize("n, every", [(100_003, 250), (1000, 7), (10, 3), (5, 1)])
def test_sampled_ema_equals_full_ema_at_its_samples(n, every):
    y = np.random.default_rng(n).standard_normal(n)
    index, values = ema_debiased_sampled(y, 0.9, every)
    assert index[-1] == n - 1
    np.testing.assert_allclose(values, ema_debiased(y, 0.9)[index], rtol=1e-9, atol=1e-12)


def test_smooth_for_display_skips_nan_tail():
    x = np.arange(10_000, dtype=float)
    y = np.ones(10_000)
    y[8000:] = np.nan
    sx, sy = smooth_for_display(x, y, 0.9, 200)
    assert len(sx) <= 210 and sx[-1] == 7999 and np.allclose(sy, 1.0)


# -- raster -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width, height", [(80, 24), (40, 10), (200, 60), (8, 3), (9, 4)])
def test_chart_is_exactly_width_by_height(width, height):
    x = np.arange(1000.0)
    chart = render_chart([PlotSeries(x, np.sin(x / 50), label="a very long label " * 5),
                          PlotSeries(x, np.cos(x / 50), label="b")],
                         width, height, title="title", x_label="step", y_label="loss")
    assert_frame(chart, width, height)


def test_known_point_lands_in_expected_braille_cell_and_bit():
    """No title/legend: plot rows = height - 1 = 5 -> 20 pixel rows. y ticks every 0.5 over (0, 1): labels
    "1.0", "0.5", "0" -> gutter = 3 label cells + 1 axis cell = 4; width 24 -> 20 plot cells = 40 pixel columns.
    Point (x=1, y=0.5) with x range (0, 3), y range (0, 1):
    pixel column round(1/3 * 39) = 13 -> cell column 6, dot column 1;
    pixel row round((1 - 0.5) * 19) = round(9.5) = 10 (round half to even) -> cell row 2, dot row 2 -> dot 6 = 0x20."""
    chart = render_chart([PlotSeries(np.array([1.0]), np.array([0.5]), style="points")], 24, 6,
                         x_range=(0.0, 3.0), y_range=(0.0, 1.0), legend=False)
    lines = lines_of(chart)
    gutter = 4
    assert [line[:gutter] for line in lines[:5]] == ["1.0┤", "   │", "0.5┤", "   │", "  0┤"]
    assert lines[2][gutter + 6] == chr(BRAILLE_BASE + 0x20)
    braille = [(r, c) for r, line in enumerate(lines) for c, ch in enumerate(line) if 0x2800 < ord(ch) <= 0x28FF]
    assert braille == [(2, gutter + 6)]
    # one pixel column to the right (x = 1 + 3/39) is dot column 0 of the next cell: dot 3 = 0x04
    chart = render_chart([PlotSeries(np.array([1.0 + 3 / 39]), np.array([0.5]), style="points")], 24, 6,
                         x_range=(0.0, 3.0), y_range=(0.0, 1.0), legend=False)
    assert lines_of(chart)[2][gutter + 7] == chr(BRAILLE_BASE + 0x04)


def test_corner_points_set_corner_bits():
    chart = render_chart([PlotSeries(np.array([0.0, 1.0]), np.array([1.0, 0.0]), style="points")], 20, 5,
                         x_range=(0.0, 1.0), y_range=(0.0, 1.0), legend=False)
    lines = lines_of(chart)
    gutter = lines[0].index("┤") + 1
    assert lines[0][gutter] == chr(BRAILLE_BASE + 0x01)  # top-left dot
    assert lines[3][-1] == chr(BRAILLE_BASE + 0x80)  # bottom-right dot, last plot row


def test_line_is_continuous():
    px, py = line_pixels(np.array([0, 10]), np.array([0, 4]))
    assert len(px) == 11 and np.all(np.diff(px) == 1)
    columns, lo, hi = column_spans(np.array([0, 0, 1, 5]), np.array([0, 9, 3, 3]))
    assert list(columns) == [0, 1, 2, 3, 4, 5]
    assert (lo[0], hi[0]) == (0, 9)
    assert np.all(lo[1:] <= 6) and np.all(hi[2:] == 3)
    # adjacent columns overlap or touch, so the stroke has no gaps
    assert np.all(lo[1:] <= hi[:-1] + 1) and np.all(hi[1:] >= lo[:-1] - 1)


def test_dashed_line_leaves_gaps():
    px, _ = line_pixels(np.arange(2) * 30, np.zeros(2, dtype=np.int64), dash=3)
    assert 12 <= len(px) <= 20


def test_legend_shows_labels_and_truncates():
    x = np.arange(10.0)
    chart = render_chart([PlotSeries(x, x, label="#1 adam 1e-3"), PlotSeries(x, -x, label="z" * 200)], 60, 12)
    assert "#1 adam 1e-3" in chart.plain
    assert "…" in lines_of(chart)[0] + lines_of(chart)[1]
    assert_frame(chart, 60, 12)


def test_too_many_legend_entries_say_how_many_are_hidden():
    x = np.arange(10.0)
    chart = render_chart([PlotSeries(x, x + i, label=f"run number {i}") for i in range(30)], 60, 12)
    header = "\n".join(lines_of(chart)[:3])
    assert "run number 0" in header and "+21" in header
    assert_frame(chart, 60, 12)


def test_faint_series_is_dim_and_unlabelled():
    x = np.arange(100.0)
    chart = render_chart([PlotSeries(x, x, color=0, faint=True, label="raw"),
                          PlotSeries(x, x + 100, color=1, label="ema")], 60, 12, y_range=(0, 200))
    assert "raw" not in chart.plain and "ema" in chart.plain
    assert any("dim" in str(span.style) for span in chart.spans)


def test_divergence_and_markers_are_drawn():
    x = np.arange(100.0)
    y = np.linspace(1, 2, 100)
    y[60:] = np.nan
    chart = render_chart([PlotSeries(x, y, label="run")], 60, 12,
                         markers=[Marker(30.0, 1.3, "●", 2, "best LR"), Marker(90.0, math.inf, "×", 3)])
    plain = chart.plain
    assert "diverged" in plain and "best LR" in plain
    body = "\n".join(lines_of(chart)[1:])
    assert body.count("×") == 2 and body.count("●") == 1


@pytest.mark.parametrize("log_x, log_y", [(True, False), (False, True), (True, True)])
def test_log_axes_survive_zeros_negatives_nan(log_x, log_y):
    x = np.array([-1.0, 0.0, 1e-3, 1e-2, 0.1, 1.0, np.nan, 10.0])
    y = np.array([0.0, -5.0, 1.0, 0.5, np.nan, 0.1, 1e-4, np.inf])
    for width, height in [(60, 15), (9, 3), (3, 2), (0, 0), (200, 60)]:
        chart = render_chart([PlotSeries(x, y, label="lr")], width, height, log_x=log_x, log_y=log_y)
        assert len(lines_of(chart)) == max(height, 1) or height == 0


def test_log_ticks_are_decades_in_1e_style():
    labels = [label for _, label in axis_ticks(-5.0, 0.0, 10, log=True)]
    assert labels == ["1e-5", "1e-4", "1e-3", "0.01", "0.1", "1"]
    assert format_decade(6) == "1e6"
    # less than two decades: 1-2-5 ticks
    assert [label for _, label in axis_ticks(math.log10(0.25), math.log10(2.8), 3, log=True)] == ["0.5", "1", "2"]


def test_log_axis_with_only_nonpositive_data_renders_empty_frame():
    chart = render_chart([PlotSeries(np.array([1.0, 2.0]), np.array([0.0, -1.0]), label="x")], 40, 8, log_y=True)
    assert_frame(chart, 40, 8)


@pytest.mark.parametrize("series", [
    [],
    [PlotSeries(np.zeros(0), np.zeros(0), label="empty")],
    [PlotSeries(np.arange(5.0), np.full(5, np.nan), label="nan")],
    [PlotSeries(np.arange(5.0), np.full(5, 3.0), label="const")],
    [PlotSeries(np.full(5, 2.0), np.arange(5.0), label="vertical")],
    [PlotSeries(np.array([1.0]), np.array([1.0]), label="one")],
])
def test_empty_constant_and_nan_inputs_render_a_frame(series):
    chart = render_chart(series, 50, 10, title="t")
    assert_frame(chart, 50, 10)


def test_empty_input_renders_empty_frame_with_axes():
    chart = render_chart([], 30, 6)
    assert_frame(chart, 30, 6)
    assert not any(0x2800 <= ord(ch) <= 0x28FF for ch in chart.plain)
    assert "│" in chart.plain or "┤" in chart.plain


def test_values_outside_fixed_range_are_clipped_not_crashing():
    x = np.arange(4.0)
    chart = render_chart([PlotSeries(x, np.array([0.5, 1e300, -1e300, 0.5]), label="wild")], 40, 10,
                         y_range=(0.0, 1.0))
    assert_frame(chart, 40, 10)


# -- heatmap ----------------------------------------------------------------------------------------------------

def test_shade_levels_tell_5_from_23_percent():
    """Nine levels: exactly 0, then <=5, 10, 15, 20, 30, 50, 75, 100% (the old quarters showed 5% and 23% alike)."""
    values = [0.0, 0.01, 0.05, 0.051, 0.10, 0.149, 0.20, 0.23, 0.30, 0.49, 0.5, 0.74, 0.76, 1.0, np.nan]
    assert list(shade_levels(np.array(values))) == [0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7, 8, 8, -1]
    assert shade_levels(np.array([0.05]))[0] != shade_levels(np.array([0.23]))[0]


def test_heatmap_cells_match_hand_computed_buckets():
    """8 probes at steps 0..70 over 4 cells of x range (0, 80): 2 probes per cell, cell = their mean."""
    matrix = np.array([[0.0, 0.0, 0.1, 0.3, 0.6, 0.6, 1.0, 0.9],
                       [0.0, np.nan, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    steps = np.arange(8) * 10.0
    means = bucket_means(matrix, steps, 4, (0.0, 80.0))
    np.testing.assert_allclose(means[0], [0.0, 0.2, 0.6, 0.95])
    # 4 cells: width = 2 (labels) + 1 (axis) + 4
    text = render_heatmap(matrix, ["L1", "l2"], 2 + 1 + 4, x=steps, x_range=(0.0, 80.0))
    lines = lines_of(text)
    assert len(lines) == 3 and all(len(line) == 7 for line in lines)
    # levels: 0 -> 0; 0.2 -> <=20% = 4; 0.6 -> <=75% = 7; 0.95 -> <=100% = 8
    assert lines[0] == "L1│" + SHADES[0] + SHADES[4] + SHADES[7] + SHADES[8]
    assert lines[1] == "l2│" + SHADES[0] * 4


def test_heatmap_forward_fills_sparse_probes_and_blanks_before_first():
    matrix = np.array([[0.5, 1.0]])
    means = bucket_means(matrix, np.array([20.0, 60.0]), 8, (0.0, 80.0))
    assert np.isnan(means[0, :2]).all()
    np.testing.assert_allclose(means[0, 2:], [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])


def test_heatmap_degenerate_inputs():
    for matrix, labels, width in [(np.zeros((0, 0)), [], 40), (np.zeros((2, 0)), ["a", "b"], 40),
                                  (np.ones((1, 1)), ["a"], 3), (np.ones((1, 5)), ["a"], 0)]:
        text = render_heatmap(matrix, labels, width, title="t")
        assert len(lines_of(text)) == len(labels) + 2


# -- robust range, aggregation, overlaps -----------------------------------------------------------------------

def test_robust_top_ignores_a_blown_up_run_and_caps_near_chance():
    rng = np.random.default_rng(0)
    sane = [2.3 * np.exp(-np.linspace(0, 3, 200)) + 0.02 * rng.random(200) for _ in range(5)]
    blown = np.concatenate([np.linspace(2.3, 1e10, 20)])
    top = robust_top(sane + [blown], chance=math.log(10))
    assert top is not None and top <= 1.25 * math.log(10)  # not 1e10
    assert robust_top(sane) == pytest.approx(np.quantile(np.concatenate(sane), 0.99))
    regression = [np.full(50, 40.0)]  # a loss that is not a classification loss: no cap below its own values
    assert robust_top(regression, chance=math.log(10)) == pytest.approx(40.0)
    assert robust_top([np.array([np.nan, np.inf])]) is None


def test_aggregate_is_mean_min_max_on_a_common_grid():
    x = np.arange(0.0, 101.0, 10.0)
    a, b = (x, np.full(len(x), 1.0)), (x, np.full(len(x), 3.0))
    gx, mean, lo, hi = aggregate([a, b], 21)
    assert gx[0] == 0 and gx[-1] == 100 and len(gx) == 21
    np.testing.assert_allclose(mean, 2.0)
    np.testing.assert_allclose(lo, 1.0)
    np.testing.assert_allclose(hi, 3.0)
    short = (x[:6], np.full(6, 5.0))  # a run that stopped at step 50 counts only where it exists
    _, mean, _, _ = aggregate([a, short], 11)
    np.testing.assert_allclose(mean[:6], 3.0)
    np.testing.assert_allclose(mean[6:], 1.0)


def test_value_at_reads_the_last_point_at_or_before():
    x, y = np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, np.nan])
    assert value_at(x, y, 5) is None and value_at(x, y, 10) == 1.0 and value_at(x, y, 25) == 2.0
    assert value_at(x, y, 35) is None  # NaN: nothing readable


def _cells_of(text, style: str) -> int:
    return sum(span.end - span.start for span in text.spans if str(span.style) == style)


def test_a_short_series_keeps_its_cells_under_a_long_one():
    """Where lines share cells the one covering fewer cells is drawn last, so it stays visible (momentum, nesterov
    and adam vanished under rmsprop when drawn in run order)."""
    x = np.linspace(0, 100, 400)
    noisy = PlotSeries(x, 1.0 + 0.5 * np.sin(x * 3), color="#ff0000")
    flat = PlotSeries(x[:200], np.full(200, 1.0), color="#00ff00")
    for order in ([flat, noisy], [noisy, flat]):
        chart = render_chart(order, 60, 12, legend=False, y_range=(0, 2))
        assert _cells_of(chart, "#00ff00") >= 20


def test_band_is_drawn_dim_under_its_mean_line():
    x = np.linspace(0, 10, 50)
    chart = render_chart([PlotSeries(x, np.sin(x), color="#56b4e9")], 50, 14, legend=False,
                         bands=[Band(x, np.sin(x) - 0.4, np.sin(x) + 0.4, "#56b4e9")])
    assert _cells_of(chart, "#56b4e9 dim") > 30 and _cells_of(chart, "#56b4e9") > 20


def test_pinned_markers_stack_instead_of_hiding_each_other():
    x = np.arange(10.0)
    markers = [Marker(0.0, math.inf, "×", color) for color in ("#ff0000", "#00ff00", "#0000ff")]
    chart = render_chart([PlotSeries(x, x)], 30, 12, markers=markers, legend=False)
    assert chart.plain.count("×") == 3


def test_marker_text_and_crosshair():
    x = np.arange(100.0)
    chart = render_chart([PlotSeries(x, x / 100)], 60, 12, legend=False, vline=50.0,
                         markers=[Marker(20.0, 0.2, "●", "#ff0000", text="0.01")])
    assert "●0.01" in chart.plain and chart.plain.count("┊") >= 5
