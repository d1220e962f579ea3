"""Data reduction for charts: finite parts, min/max downsampling to the pixel width, TensorBoard's debiased EMA,
seed-group aggregation on a common grid, and the robust y range. Pure numpy."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


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


def sorted_by_x(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Steps, epochs and wall times arrive sorted; sorting is only a fallback.
    if len(x) > 1 and not np.all(x[1:] >= x[:-1]):
        order = np.argsort(x, kind="stable")
        return x[order], y[order]
    return x, y


def _first_in_bucket(hits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first True of `hits` at or after each bucket start (each bucket is known to hold one)."""
    positions = np.flatnonzero(hits)
    return positions[np.searchsorted(positions, starts)]


def minmax_by_edges(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    x, y = sorted_by_x(x, y)
    n_buckets = max(1, int(n_buckets))
    if len(x) <= 2 * n_buckets:
        return x, y
    lo, hi = x_range if x_range is not None else (x[0], x[-1])
    if not hi > lo:
        lo, hi = x[0], x[-1]
    if not hi > lo:  # every x equal: one bucket
        return minmax_by_edges(x, y, np.array([lo, hi]))
    return minmax_by_edges(x, y, np.linspace(lo, hi, n_buckets + 1))


def _first_order_filter(gain: float, decay: float, values: np.ndarray) -> np.ndarray:
    """out[i] = decay * out[i-1] + gain * values[i], out[-1] = 0, vectorised.

    Why not scipy.signal.lfilter: importing scipy.signal cost 0.34 s, paid in the render thread by the first plot
    (the Curves tab of a big store took 1.3 s to appear in tmux). Two exact-to-rounding numpy paths instead:
    - fast decay (the sampled EMA's decay^every): a convolution with the kernel gain * decay^k, cut where decay^k
      drops below 1e-17 (at most ~270 taps here);
    - slow decay: blocks of L points, out[k] = decay^(k+1) * start + gain * decay^k * cumsum(values[j] * decay^-j),
      L small enough that decay^-L stays below 1e4 (rounding ~1e-13 relative), so only n / L Python steps."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0 or decay <= 0.0:
        return gain * values
    block = max(1, int(4.0 / -math.log10(decay))) if decay < 1.0 else n
    if block < 64:
        taps = int(math.ceil(-17.0 / math.log10(decay))) + 1
        kernel = gain * decay ** np.arange(min(taps, n), dtype=np.float64)
        return np.convolve(values, kernel)[:n]
    block = min(block, n)
    powers = decay ** np.arange(block, dtype=np.float64)  # decay^k
    inverse = 1.0 / powers  # decay^-k
    out = np.empty(n)
    state = 0.0
    for start in range(0, n, block):
        chunk = values[start:start + block]
        m = chunk.size
        part = gain * powers[:m] * np.cumsum(chunk * inverse[:m]) + state * powers[:m] * decay
        out[start:start + m] = part
        state = part[-1]
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
# Robust range and aggregation
# ---------------------------------------------------------------------------------------------------------------

ROBUST_QUANTILE = 0.99  # of the finite points of the runs that did not diverge
CHANCE_HEADROOM = 1.25  # the top never goes past 1.25x the chance-level loss (unless every curve lies above it)


def robust_top(values: Sequence[np.ndarray], chance: Optional[float] = None) -> Optional[float]:
    """Top of a loss axis that fits the readable part of the curves: the 99th percentile of the finite values of
    the runs that did not diverge, capped at CHANCE_HEADROOM x the chance-level loss when that is known.

    Why not the maximum: one run blowing up to 1e10 before it is stopped squashes every other curve flat on 0
    (TensorBoard's "ignore outliers" answers the same problem with a 0.5%..99.5% quantile). The cap is skipped
    when most points lie above it (a loss that is not a classification loss)."""
    finite = [v[np.isfinite(v)] for v in values if len(v)]
    finite = [v for v in finite if v.size]
    if not finite:
        return None
    data = np.concatenate(finite)
    top = float(np.quantile(data, ROBUST_QUANTILE))
    if chance is not None and math.isfinite(chance) and chance > 0:
        cap = CHANCE_HEADROOM * chance
        if top > cap and float(np.median(data)) <= cap:
            top = cap
    return top


def value_at(x: np.ndarray, y: np.ndarray, where: float) -> Optional[float]:
    """The value of the last point at or before `where` (what a crosshair at `where` reads); None before the start."""
    if not len(x):
        return None
    index = int(np.searchsorted(x, where, side="right")) - 1
    if index < 0:
        return None
    value = float(y[index])
    return value if math.isfinite(value) else None


def aggregate(curves: Sequence[tuple[np.ndarray, np.ndarray]], n_points: int,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of several curves (a seed group) on a common grid of `n_points` x values spanning them
    (each curve is linearly interpolated, and counts only inside its own x range). Returns (x, mean, lo, hi);
    a grid point no curve covers is NaN."""
    curves = [finite_part(x, y)[:2] for x, y in curves]
    curves = [sorted_by_x(x, y) for x, y in curves if len(x)]
    if not curves:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    lo_x = min(float(x[0]) for x, _ in curves)
    hi_x = max(float(x[-1]) for x, _ in curves)
    grid = np.linspace(lo_x, hi_x, max(2, int(n_points))) if hi_x > lo_x else np.array([lo_x])
    stacked = np.full((len(curves), len(grid)), np.nan)
    for row, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        stacked[row, inside] = np.interp(grid[inside], x, y)
    covered = np.isfinite(stacked).any(axis=0)
    mean = np.full(len(grid), np.nan)
    lo = np.full(len(grid), np.nan)
    hi = np.full(len(grid), np.nan)
    if covered.any():
        part = stacked[:, covered]
        mean[covered] = np.nanmean(part, axis=0)
        lo[covered] = np.nanmin(part, axis=0)
        hi[covered] = np.nanmax(part, axis=0)
    return grid, mean, lo, hi
