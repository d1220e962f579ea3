"""Frame time of the dashboard's chart renderer (tui/plot/).

One frame = what CurvesPane does per redraw: smooth every series (debiased EMA, sampled for display), downsample
the raw series (min/max per pixel column), rasterise raw (faint) + smoothed lines, build the Rich Text.
Compared, in the same invocation, with a naive frame of the same chart that rasterises every point (EMA over
all points, no downsampling).

    .venv/bin/python benchmarks/plot_bench.py [--repeat 7] [--series 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tui.plot import PlotSeries, ema_debiased, render_chart, smooth_for_display  # noqa: E402

SIZES = ((120, 30), (200, 60))
LENGTHS = (10_000, 100_000)
SMOOTHING = 0.9


def make_runs(n_series: int, n_points: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Noisy decaying loss curves; every fourth run diverges (NaN tail) two thirds of the way through."""
    rng = np.random.default_rng(seed)
    step = np.arange(n_points, dtype=np.float64) * 10
    runs = []
    for i in range(n_series):
        loss = 2.3 * np.exp(-step / (n_points * (1 + i % 5))) + 0.15 * rng.standard_normal(n_points) + 0.3
        if i % 4 == 3:
            loss[2 * n_points // 3:] = np.nan
        runs.append((step, loss))
    return runs


def frame(runs, width: int, height: int) -> None:
    """Smoothed + faint raw lines, as the curves pane draws them."""
    n_points = 4 * width  # two samples per braille pixel column
    series = []
    for i, (x, y) in enumerate(runs):
        series.append(PlotSeries(x, y, color=i, faint=True, legend=False))
        sx, sy = smooth_for_display(x, y, SMOOTHING, n_points)
        series.append(PlotSeries(sx, sy, label=f"run {i}", color=i))
    render_chart(series, width, height, title="train loss", x_label="step")


def naive_frame(runs, width: int, height: int) -> None:
    """The same chart with every point rasterised: EMA over all points, no downsampling."""
    series = []
    for i, (x, y) in enumerate(runs):
        series.append(PlotSeries(x, y, color=i, faint=True, legend=False))
        series.append(PlotSeries(x, ema_debiased(y, SMOOTHING), label=f"run {i}", color=i))
    render_chart(series, width, height, title="train loss", x_label="step", downsample=False)


def median_ms(function, repeat: int) -> float:
    function()  # warm-up: lazy imports, allocator
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--series", type=int, default=20)
    args = parser.parse_args()
    print(f"{'series x points':>16} {'plot':>7} {'frame ms':>9} {'Mpoints/s':>10} {'naive ms':>9} {'speed-up':>9}")
    for n_points in LENGTHS:
        runs = make_runs(args.series, n_points)
        total = args.series * n_points
        for width, height in SIZES:
            fast = median_ms(lambda: frame(runs, width, height), args.repeat)
            naive = median_ms(lambda: naive_frame(runs, width, height), max(3, args.repeat // 2))
            print(f"{args.series:>6} x {n_points:<7} {width:>3}x{height:<3} {fast:>9.1f} "
                  f"{total / fast / 1e3:>10.1f} {naive:>9.1f} {naive / fast:>8.1f}x")


if __name__ == "__main__":
    main()
