"""The sweep page's one chart: each run's mean per headline metric, with its 95% interval.

Small multiples, one panel per metric, one bar per run (the base first) and an error bar of
the interval's half-width (:mod:`aifactory.whatif.stats`), drawn with the report's own style
(:mod:`aifactory.reports.charts`) as inline SVG. matplotlib is imported only here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from aifactory.reports.charts import colour_map, new_figure, render_svg, styled
from aifactory.whatif.stats import Estimate


@styled
def _figure(names: Sequence[str], panels: Mapping[str, Sequence[Estimate]]) -> Figure:
    cols = min(max(len(panels), 1), 4)
    rows = (len(panels) + cols - 1) // cols
    fig = new_figure(2.4 * cols + 0.4, 2.5 * rows + 0.4)
    colours = colour_map(list(names))
    pos = np.arange(len(names), dtype=np.float64)
    for i, (title, estimates) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_title(title, loc="left", fontsize=9)
        means = [0.0 if math.isnan(e.mean) else e.mean for e in estimates]
        halves = [0.0 if math.isnan(e.half) else e.half for e in estimates]
        ax.bar(pos, means, 0.7, color=[colours[n] for n in names], yerr=halves, capsize=3)
        ax.set_xticks(pos, list(names), rotation=35, ha="right", fontsize=7)
        ax.grid(axis="x", visible=False)
    return fig


def ci_bars_svg(names: Sequence[str], panels: Mapping[str, Sequence[Estimate]]) -> str:
    """Inline SVG: per panel (metric), each run's mean with its 95% interval."""
    return render_svg(_figure(names, panels), "sweep-ci")
