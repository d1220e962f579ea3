"""Axes: tick positions and labels (linear, log decades, 1-2-5), number formatting, axis ranges."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


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


def data_range(arrays: Sequence[np.ndarray], fixed: Optional[tuple[float, float]], log: bool,
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

