"""Charts of a run: pure functions from reduced arrays to a laid-out chart (a ``Scene``).

The pages embed each chart as inline SVG (:func:`render_svg`); ``summary.png`` is the lead
chart rasterised (:func:`render_png`, Pillow imported only then). Drawing is
:mod:`aifactory.reports.svgplot`, so no plotting library is imported to write a report.

Inputs are already reduced (CDF points, binned time series): drawing cost does not grow
with the number of jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aifactory.reports.svgplot import (
    Axis,
    LegendEntry,
    Plot,
    Scene,
    grid,
    percent,
    short_number,
    to_svg,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

PALETTE: tuple[str, ...] = (
    "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860",
    "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#1B9E77", "#E7298A",
)  # fmt: skip
"""Muted qualitative colours (seaborn "deep" hues plus two), readable on white and in print."""

OTHER_COLOUR = "#BBBBBB"

_TIME_TICKS: tuple[tuple[float, str], ...] = (
    (1.0, "1 s"),
    (10.0, "10 s"),
    (60.0, "1 min"),
    (600.0, "10 min"),
    (3600.0, "1 h"),
    (6 * 3600.0, "6 h"),
    (86400.0, "1 d"),
    (7 * 86400.0, "1 wk"),
    (30 * 86400.0, "30 d"),
    (365 * 86400.0, "1 y"),
)
_DASHES: tuple[tuple[float, float], ...] = ((5.0, 3.0), (1.5, 2.5), (6.0, 2.0))


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name, in the given order (cycling past the palette)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def render_svg(scene: Scene, salt: str) -> str:
    """The chart as an inline ``<svg>`` element whose one id is unique to ``salt``."""
    return to_svg(scene, salt)


def render_png(scene: Scene, width_px: int = 1080) -> bytes:
    """The chart as PNG bytes ``width_px`` wide, without a timestamp."""
    from aifactory.reports.raster import to_png  # noqa: PLC0415 (Pillow only for summary.png)

    return to_png(scene, width_px / scene.width)


def time_axis(t_s: FloatArray) -> tuple[FloatArray, str]:
    """Simulated seconds in the unit that reads best for the span (hours or days)."""
    span = float(t_s[-1] - t_s[0]) if t_s.size else 0.0
    if span <= 2 * 86400.0:
        return t_s / 3600.0, "simulated time (hours)"
    return t_s / 86400.0, "simulated time (days)"


def _x_range(x: FloatArray) -> tuple[float, float]:
    return float(x[0]), float(x[-1]) if x[-1] > x[0] else float(x[0]) + 1.0


def utilisation_figure(
    t_s: FloatArray,
    busy_by_tenant: Mapping[str, FloatArray],
    fleet_gpus: float,
    colours: Mapping[str, str],
    title: str = "GPU utilisation by tenant",
) -> Scene:
    """Stacked share of the fleet busy per tenant over time, with the 100 % line."""
    plot = Plot(960.0, 400.0, title)
    if t_s.size == 0 or fleet_gpus <= 0 or not busy_by_tenant:
        plot.empty = "no time-series samples"
        return plot.scene()
    x, xlabel = time_axis(t_s)
    names = list(busy_by_tenant)
    base = np.zeros_like(x)
    for n in names:
        top = base + 100.0 * np.asarray(busy_by_tenant[n], dtype=np.float64) / fleet_gpus
        plot.area(x, base, top, colours.get(n, OTHER_COLOUR))
        base = top
    plot.rule(100.0, dash=_DASHES[0])
    peak = float(np.max(base)) if base.size else 0.0
    lo, hi = _x_range(x)
    plot.x = Axis(lo, hi, xlabel)
    plot.y = Axis(0.0, max(105.0, peak * 1.05), f"busy GPUs (% of {fleet_gpus:,.0f})", fmt=percent)
    # Legend top-down in the same order as the stack reads top-down.
    plot.legend = [LegendEntry(n, colours.get(n, OTHER_COLOUR)) for n in reversed(names)]
    return plot.scene()


def lines_over_time_figure(
    t_s: FloatArray,
    series: Mapping[str, FloatArray],
    title: str,
    ylabel: str,
    hlines: Mapping[str, float] | None = None,
) -> Scene:
    """Several quantities over simulated time on one axis, with optional labelled limits."""
    plot = Plot(960.0, 330.0, title)
    if t_s.size == 0 or not series:
        plot.empty = "no time-series samples"
        return plot.scene()
    x, xlabel = time_axis(t_s)
    peak = 0.0
    for i, (name, y) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        values = np.asarray(y, dtype=np.float64)
        plot.line(x, values, colour, width=1.3)
        plot.legend.append(LegendEntry(name, colour, "line"))
        if values.size and np.isfinite(values).any():
            peak = max(peak, float(np.nanmax(values)))
    for j, (name, level) in enumerate((hlines or {}).items()):
        plot.rule(level, label=name, dash=_DASHES[j % len(_DASHES)])
        peak = max(peak, level)
    lo, hi = _x_range(x)
    plot.x = Axis(lo, hi, xlabel)
    plot.y = Axis(0.0, peak * 1.05 if peak > 0 else 1.0, ylabel)
    return plot.scene()


def _log_time_ticks(lo: float, hi: float) -> list[tuple[float, str]] | None:
    ticks = [(v, s) for v, s in _TIME_TICKS if lo / 1.5 <= v <= hi * 1.5]
    return ticks if len(ticks) >= 2 else None


def cdf_figure(
    curves: Mapping[str, tuple[FloatArray, FloatArray]],
    title: str,
    xlabel: str,
    *,
    floor_s: float = 1.0,
    colours: Mapping[str, str] | None = None,
    width: float = 560.0,
    empty: str = "no jobs to show",
) -> Scene:
    """Empirical CDFs of durations on a log time axis; values under ``floor_s`` drawn at it.

    Queue delays are often exactly zero, which a log axis cannot show; drawing them at the
    floor keeps the jump at the left edge visible (the axis label says so).
    """
    plot = Plot(width, 360.0, title)
    drawn = {k: v for k, v in curves.items() if v[0].size}
    if not drawn:
        plot.empty = empty
        return plot.scene()
    lo = min(float(np.min(x)) for x, _ in drawn.values())
    hi = max(float(np.max(x)) for x, _ in drawn.values())
    lo, hi = max(lo, floor_s), max(hi, floor_s * 10.0)
    # The axis starts a little left of the floor so a jump at the floor (every queue
    # delay zero) shows as a line of its own, not one hidden in the y axis.
    for i, (name, (x, y)) in enumerate(drawn.items()):
        colour = (colours or {}).get(name, PALETTE[i % len(PALETTE)])
        xs = np.maximum(x, floor_s)
        # Start each curve at F=0 so a class with one job still draws a visible step.
        plot.line(np.concatenate(([xs[0]], xs)), np.concatenate(([0.0], y)), colour, step=True)
        plot.legend.append(LegendEntry(name, colour, "line"))
    plot.x = Axis(lo / 1.25, hi * 1.2, xlabel, log=True, ticks=_log_time_ticks(lo, hi))
    plot.x.fmt = lambda v: f"{short_number(v)} s"
    plot.y = Axis(0.0, 1.02, "share of jobs", ticks=[(k / 5, f"{20 * k}%") for k in range(6)])
    plot.legend_at = "lower right"
    return plot.scene()


def gpu_hours_figure(
    tenants: Sequence[str],
    used: Sequence[float],
    lost: Sequence[float] | None,
    quota_hours: Sequence[float | None],
    colours: Mapping[str, str],
) -> Scene:
    """GPU-hours per tenant as bars, with each tenant's quota x makespan as a black tick."""
    n = len(tenants)
    horizontal = n > 8
    height = max(320.0, 22.0 * n + 130.0) if horizontal else 380.0
    plot = Plot(960.0, height, "GPU-hours by tenant against quota", horizontal=horizontal)
    if n == 0:
        plot.empty = "no tenants"
        return plot.scene()
    pos = list(range(n))
    plot.bars(pos, used, [colours.get(t, OTHER_COLOUR) for t in tenants])
    # The bars carry tenant colours, so "used" is shown neutral in the legend.
    plot.legend = [LegendEntry("GPU-hours used", "#9A9A9A")]
    top = max([*used, 0.0])
    if lost is not None and any(v > 0 for v in lost):
        plot.bars(pos, lost, [], hatch=True)
        plot.legend.append(LegendEntry("of which lost (preemption, failure)", "#333333", "hatch"))
    qpos = [float(p) for p, q in zip(pos, quota_hours, strict=True) if q is not None]
    qval = [q for q in quota_hours if q is not None]
    if qval:
        plot.marks(qpos, qval)
        plot.legend.append(LegendEntry("quota x makespan", "#111111", "line"))
        top = max(top, *qval)
    value_axis = Axis(0.0, top * 1.05 if top > 0 else 1.0, "GPU-hours")
    if horizontal:
        plot.x = value_axis
    else:
        plot.y = value_axis
    plot.categories(tenants)
    plot.legend_at = "bottom"
    return plot.scene()


def metric_bars_figure(
    labels: Sequence[str],
    metrics: Mapping[str, Sequence[float | None]],
    colours: Mapping[str, str],
) -> Scene:
    """Small multiples: one bar chart per metric, one bar per policy (missing values skipped)."""
    if not metrics or not labels:
        return Plot(720.0, 240.0, empty="no metrics").scene()
    panels: list[Scene] = []
    for name, values in metrics.items():
        plot = Plot(250.0, 250.0, name, title_size=12.0)
        heights = [0.0 if v is None else float(v) for v in values]
        plot.bars(range(len(labels)), heights, [colours.get(lbl, OTHER_COLOUR) for lbl in labels])
        for p, v in enumerate(values):
            if v is None:
                plot.note(float(p), 0.0, "n/a")
        top = max([*heights, 0.0])
        bottom = min([*heights, 0.0])
        plot.y = Axis(bottom * 1.05, top * 1.05 if top > 0 else 1.0)
        plot.categories(labels)
        plot.x.slant = len(labels) > 3
        panels.append(plot.scene())
    return grid(panels, min(len(panels), 4), "metrics by policy")
