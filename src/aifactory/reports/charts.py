"""Charts of a run, drawn with matplotlib ``Figure`` objects (no pyplot global state).

Every chart is a pure function from arrays to a :class:`~matplotlib.figure.Figure`; the
renderers turn a figure into inline SVG (for the self-contained HTML pages) or PNG bytes.
The SVG is cleaned so a page holding many charts stays valid and offline: no XML prolog, no
DTD or namespace URLs, no metadata, unreferenced ids dropped and referenced ids salted per
chart so two charts never share one.

Inputs are already reduced (CDF points, binned time series): drawing cost does not grow
with the number of jobs.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
P = ParamSpec("P")
R = TypeVar("R")

PALETTE: tuple[str, ...] = (
    "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860",
    "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD", "#1B9E77", "#E7298A",
)  # fmt: skip
"""Muted qualitative colours (seaborn "deep" hues plus two), readable on white and in print."""

OTHER_COLOUR = "#BBBBBB"

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "svg.hashsalt": "aifactory",  # deterministic ids; overridden per chart in render_svg
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#E5E5E5",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8.0,
}

_SVG_META = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PNG_META = {"Software": None}

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

_ID_ATTR = re.compile(r'\sid="([^"]+)"')
_ID_REF = re.compile(r'(?:href="#|url\(#)([^")]+)')
_PATH_DATA = re.compile(r'\sd="[^"]*"')
_LONG_DECIMAL = re.compile(r"(\d\.\d\d)\d+")


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name, in the given order (cycling past the palette)."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a drawing function under the report's rcParams, restored on return.

    matplotlib reads rcParams when each artist is created, so the whole drawing (not just
    the figure's creation) must sit inside the context; pyplot is never involved.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A bare figure with constrained layout (call inside a :func:`styled` function)."""
    return Figure(figsize=(width, height), layout="constrained")


def _styled_axes(fig: Figure, *args: Any) -> Axes:
    ax: Axes = fig.add_subplot(*args)
    return ax


def _clean_svg(svg: str, salt: str) -> str:
    """Strip the prolog, DTD, namespaces and metadata; keep only referenced ids, salted."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\sxmlns(?::\w+)?="[^"]*"', "", svg)
    referenced = set(_ID_REF.findall(svg))

    def keep(match: re.Match[str]) -> str:
        name = match.group(1)
        return f' id="{salt}-{name}"' if name in referenced else ""

    svg = _ID_ATTR.sub(keep, svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{salt}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{salt}-{m.group(1)})", svg)
    # Path coordinates are in points; a hundredth of a point is far below what a screen
    # shows, and trimming the other four decimals shrinks long curves by about a third.
    svg = _PATH_DATA.sub(lambda m: _LONG_DECIMAL.sub(r"\1", m.group(0)), svg)
    return svg.strip()


def render_svg(fig: Figure, salt: str) -> str:
    """The figure as an inline ``<svg>`` element whose ids are unique to ``salt``."""
    buf = io.StringIO()
    rc: dict[RcKeyType, Any] = {**_RC, "svg.hashsalt": salt}
    with mpl.rc_context(rc):
        fig.savefig(buf, format="svg", metadata=_SVG_META)
    safe_salt = re.sub(r"[^A-Za-z0-9_-]", "_", salt)
    return _clean_svg(buf.getvalue(), safe_salt)


def render_png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (Agg), without a timestamp so reruns are byte-identical."""
    buf = io.BytesIO()
    with mpl.rc_context(_RC):
        fig.savefig(buf, format="png", dpi=dpi, metadata=_PNG_META)
    return buf.getvalue()


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777777")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(visible=False)


def time_axis(t_s: FloatArray) -> tuple[FloatArray, str]:
    """Simulated seconds in the unit that reads best for the span (hours or days)."""
    span = float(t_s[-1] - t_s[0]) if t_s.size else 0.0
    if span <= 2 * 86400.0:
        return t_s / 3600.0, "simulated time (hours)"
    return t_s / 86400.0, "simulated time (days)"


def _log_time_axis(ax: Axes, lo: float, hi: float) -> None:
    ax.set_xscale("log")
    ticks = [v for v, _ in _TIME_TICKS if lo / 1.5 <= v <= hi * 1.5]
    if len(ticks) >= 2:
        labels = dict(_TIME_TICKS)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: labels.get(v, "")))
        ax.xaxis.set_minor_locator(NullLocator())


@styled
def utilisation_figure(
    t_s: FloatArray,
    busy_by_tenant: Mapping[str, FloatArray],
    fleet_gpus: float,
    colours: Mapping[str, str],
    title: str = "GPU utilisation by tenant",
) -> Figure:
    """Stacked share of the fleet busy per tenant over time, with the 100 % line."""
    fig = new_figure(7.2, 3.6)
    ax = _styled_axes(fig)
    ax.set_title(title, loc="left")
    if t_s.size == 0 or fleet_gpus <= 0 or not busy_by_tenant:
        _no_data(ax, "no time-series samples")
        return fig
    x, xlabel = time_axis(t_s)
    names = list(busy_by_tenant)
    ys = [100.0 * busy_by_tenant[n] / fleet_gpus for n in names]
    ax.stackplot(
        x,
        ys,
        labels=names,
        colors=[colours.get(n, OTHER_COLOUR) for n in names],
        linewidth=0.0,
    )
    ax.axhline(100.0, color="#333333", linewidth=0.8, linestyle="--")
    peak = float(np.max(np.sum(ys, axis=0))) if ys else 0.0
    ax.set_ylim(0.0, max(105.0, peak * 1.05))
    ax.set_xlim(float(x[0]), float(x[-1]) if x[-1] > x[0] else float(x[0]) + 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylabel(f"busy GPUs (% of {fleet_gpus:,.0f})")
    ax.set_xlabel(xlabel)
    handles, labels = ax.get_legend_handles_labels()
    # Legend top-down in the same order as the stack reads top-down.
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@styled
def lines_over_time_figure(
    t_s: FloatArray,
    series: Mapping[str, FloatArray],
    title: str,
    ylabel: str,
    hlines: Mapping[str, float] | None = None,
) -> Figure:
    """Several quantities over simulated time on one axis, with optional labelled limits."""
    fig = new_figure(7.2, 3.0)
    ax = _styled_axes(fig)
    ax.set_title(title, loc="left")
    if t_s.size == 0 or not series:
        _no_data(ax, "no time-series samples")
        return fig
    x, xlabel = time_axis(t_s)
    for i, (name, y) in enumerate(series.items()):
        ax.plot(x, y, label=name, color=PALETTE[i % len(PALETTE)], linewidth=1.1)
    for j, (name, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, color="#333333", linewidth=0.8, linestyle=("--", ":", "-.")[j % 3])
        ax.annotate(
            name,
            (1.0, level),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=7.5,
            color="#333333",
        )
    ax.set_ylim(bottom=0.0)
    ax.set_xlim(float(x[0]), float(x[-1]) if x[-1] > x[0] else float(x[0]) + 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@styled
def cdf_figure(
    curves: Mapping[str, tuple[FloatArray, FloatArray]],
    title: str,
    xlabel: str,
    *,
    floor_s: float = 1.0,
    colours: Mapping[str, str] | None = None,
    width: float = 5.2,
    empty: str = "no jobs to show",
) -> Figure:
    """Empirical CDFs of durations on a log time axis; values under ``floor_s`` drawn at it.

    Queue delays are often exactly zero, which a log axis cannot show; drawing them at the
    floor keeps the jump at the left edge visible (the axis label says so).
    """
    fig = new_figure(width, 3.4)
    ax = _styled_axes(fig)
    ax.set_title(title, loc="left")
    drawn = {k: v for k, v in curves.items() if v[0].size}
    if not drawn:
        _no_data(ax, empty)
        return fig
    lo = min(float(np.min(x)) for x, _ in drawn.values())
    hi = max(float(np.max(x)) for x, _ in drawn.values())
    lo, hi = max(lo, floor_s), max(hi, floor_s * 10.0)
    for i, (name, (x, y)) in enumerate(drawn.items()):
        colour = (colours or {}).get(name, PALETTE[i % len(PALETTE)])
        xs = np.maximum(x, floor_s)
        # Start each curve at F=0 so a class with one job still draws a visible step.
        ax.step(
            np.concatenate(([xs[0]], xs)),
            np.concatenate(([0.0], y)),
            where="post",
            label=name,
            color=colour,
            linewidth=1.4,
        )
    ax.set_xlim(lo, hi * 1.2)
    _log_time_axis(ax, lo, hi)
    ax.set_ylim(0.0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of jobs")
    ax.legend(loc="lower right")
    return fig


@styled
def gpu_hours_figure(
    tenants: Sequence[str],
    used: Sequence[float],
    lost: Sequence[float] | None,
    quota_hours: Sequence[float | None],
    colours: Mapping[str, str],
) -> Figure:
    """GPU-hours per tenant as bars, with each tenant's quota x makespan as a black tick."""
    n = len(tenants)
    horizontal = n > 8
    fig = new_figure(7.2, max(3.0, 0.28 * n + 1.2) if horizontal else 3.4)
    ax = _styled_axes(fig)
    ax.set_title("GPU-hours by tenant against quota", loc="left")
    if n == 0:
        _no_data(ax, "no tenants")
        return fig
    pos = np.arange(n, dtype=np.float64)
    bar = ax.barh if horizontal else ax.bar
    bar(pos, used, 0.7, color=[colours.get(t, OTHER_COLOUR) for t in tenants])
    # Proxy legend entries: the bars carry tenant colours, so "used" is shown neutral.
    handles: list[Any] = [Patch(facecolor="#9A9A9A", label="GPU-hours used")]
    if lost is not None and any(v > 0 for v in lost):
        bar(pos, lost, 0.7, color="none", edgecolor="#333333", hatch="////", linewidth=0.0)
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="#333333",
                hatch="////",
                label="of which lost (preemption, failure)",
            )
        )
    qpos = np.array([p for p, q in zip(pos, quota_hours, strict=True) if q is not None])
    qval = [q for q in quota_hours if q is not None]
    if qval:
        ticks = ax.vlines if horizontal else ax.hlines
        ticks(qval, qpos - 0.42, qpos + 0.42, color="#111111", linewidth=2.0)
        handles.append(Line2D([], [], color="#111111", linewidth=2.0, label="quota x makespan"))
    value_axis = ax.xaxis if horizontal else ax.yaxis
    value_axis.set_major_formatter(FuncFormatter(lambda v, _p: _short_number(v)))
    if horizontal:
        ax.set_yticks(pos, list(tenants))
        ax.invert_yaxis()
        ax.set_xlabel("GPU-hours")
        ax.grid(axis="y", visible=False)
    else:
        slant = n > 4
        ax.set_xticks(
            pos, list(tenants), rotation=30 if slant else 0, ha="right" if slant else "center"
        )
        ax.set_ylabel("GPU-hours")
        ax.grid(axis="x", visible=False)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return fig


@styled
def metric_bars_figure(
    labels: Sequence[str],
    metrics: Mapping[str, Sequence[float | None]],
    colours: Mapping[str, str],
) -> Figure:
    """Small multiples: one bar chart per metric, one bar per policy (missing values skipped)."""
    k = max(len(metrics), 1)
    cols = min(k, 4)
    rows = (k + cols - 1) // cols
    fig = new_figure(2.3 * cols + 0.4, 2.3 * rows + 0.3)
    if not metrics or not labels:
        _no_data(_styled_axes(fig), "no metrics")
        return fig
    pos = np.arange(len(labels), dtype=np.float64)
    for i, (name, values) in enumerate(metrics.items()):
        ax = _styled_axes(fig, rows, cols, i + 1)
        ax.set_title(name, loc="left", fontsize=9)
        heights = [0.0 if v is None else float(v) for v in values]
        ax.bar(pos, heights, 0.7, color=[colours.get(lbl, OTHER_COLOUR) for lbl in labels])
        for p, v in zip(pos, values, strict=True):
            if v is None:
                ax.text(p, 0.0, "n/a", ha="center", va="bottom", fontsize=7, color="#777777")
        ax.set_xticks(
            pos,
            list(labels),
            rotation=30 if len(labels) > 3 else 0,
            ha="right" if len(labels) > 3 else "center",
            fontsize=8,
        )
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _short_number(v)))
        ax.grid(axis="x", visible=False)
    return fig


def _short_number(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"
