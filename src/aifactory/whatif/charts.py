"""The sweep page's one chart: each run's mean per headline metric, with its 95% interval.

Small multiples, one panel per metric, one bar per run (the base first) and a whisker of
the interval's half-width (:mod:`aifactory.whatif.stats`), drawn with the report's own
charts (:mod:`aifactory.reports.svgplot`) as inline SVG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from aifactory.reports.charts import colour_map
from aifactory.reports.svgplot import Axis, Plot, Scene, grid, to_svg
from aifactory.whatif.stats import Estimate


def ci_bars(names: Sequence[str], panels: Mapping[str, Sequence[Estimate]]) -> Scene:
    """Per panel (metric), each run's mean as a bar with its 95% interval as a whisker."""
    colours = colour_map(list(names))
    scenes: list[Scene] = []
    for title, estimates in panels.items():
        plot = Plot(260.0, 270.0, title, title_size=12.0)
        means = [0.0 if math.isnan(e.mean) else e.mean for e in estimates]
        halves = [0.0 if math.isnan(e.half) else e.half for e in estimates]
        plot.bars(range(len(names)), means, [colours[n] for n in names], errors=halves)
        top = max([m + h for m, h in zip(means, halves, strict=True)] + [0.0])
        bottom = min([m - h for m, h in zip(means, halves, strict=True)] + [0.0])
        plot.y = Axis(bottom * 1.05, top * 1.05 if top > 0 else 1.0)
        plot.categories(names)
        plot.x.slant = True
        scenes.append(plot.scene())
    return grid(scenes, min(max(len(scenes), 1), 4), "each run against the base")


def ci_bars_svg(names: Sequence[str], panels: Mapping[str, Sequence[Estimate]]) -> str:
    """Inline SVG: per panel (metric), each run's mean with its 95% interval."""
    return to_svg(ci_bars(names, panels), "sweep-ci")
