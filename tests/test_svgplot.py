"""Tests of the charts drawn in Python (aifactory.reports.svgplot, charts, raster).

Each chart is parsed back as XML and checked against its data: the series are there with
their points where the axes put them, the axes carry their labels and ticks, and the page
rules hold (no script, no reference outside the chart, ids unique per chart).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest

from aifactory.reports import charts
from aifactory.reports.raster import to_png
from aifactory.reports.svgplot import (
    Axis,
    LegendEntry,
    Plot,
    Scene,
    grid,
    nice_ticks,
    text_width,
    to_svg,
)
from aifactory.whatif.charts import ci_bars_svg
from aifactory.whatif.stats import Estimate


def parse(svg: str) -> ET.Element:
    """The chart as an element tree, after the page rules every chart must keep."""
    assert "<script" not in svg
    assert not re.search(r"(?i)(?:https?|ftp):|xmlns", svg)
    for target in re.findall(r'url\(#([^)]+)\)|href="([^"]*)"', svg):
        assert any(target), "reference outside the chart"
    root = ET.fromstring(svg)
    assert root.tag == "svg"
    assert root.get("viewBox", "").startswith("0 0 ")
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("text")]


def path_points(el: ET.Element) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The (n, 2) pixel points of a ``<path d="M x y x y ...">``."""
    data = el.get("d", "").lstrip("M").rstrip("Z").split()
    return np.array([float(v) for v in data], dtype=np.float64).reshape(-1, 2)


def stroked(root: ET.Element, colour: str) -> list[ET.Element]:
    return [p for p in root.iter("path") if p.get("stroke") == colour]


# --------------------------------------------------------------------------- ticks


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.0, 105.0, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
        (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (3.2, 108.9, [20.0, 40.0, 60.0, 80.0, 100.0]),
        (0.0, 2600.0, [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]),
        (-4.0, 4.0, [-4.0, -2.0, 0.0, 2.0, 4.0]),
        (0.0, 6.8e6, [0.0, 2e6, 4e6, 6e6]),
    ],
)
def test_nice_ticks_are_round_and_inside(lo: float, hi: float, expected: list[float]) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def test_text_width_grows_with_text_and_size() -> None:
    assert text_width("") == 0.0
    assert text_width("mmmm") > text_width("iiii")
    assert text_width("abc", 24.0) == pytest.approx(2 * text_width("abc", 12.0))


# --------------------------------------------------------------------------- plot layout


def line_plot() -> tuple[Plot, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x = np.linspace(0.0, 10.0, 11)
    y = x**2
    plot = Plot(600.0, 300.0, "Squares")
    plot.line(x, y, "#4C72B0")
    plot.x = Axis(0.0, 10.0, "time (h)")
    plot.y = Axis(0.0, 100.0, "value (GPUs)")
    plot.legend = [LegendEntry("x squared", "#4C72B0", "line")]
    return plot, x, y


def test_line_chart_has_its_series_axes_and_labels() -> None:
    plot, x, _y = line_plot()
    root = parse(to_svg(plot.scene(), "t"))
    words = texts(root)
    for label in ("Squares", "time (h)", "value (GPUs)", "x squared", "0", "10", "100"):
        assert label in words, label
    # The series (its legend sample is the other path in its colour, with two points).
    series = max(stroked(root, "#4C72B0"), key=lambda p: len(path_points(p)))
    pts = path_points(series)
    assert len(pts) == x.size
    # x maps left to right at equal steps; y grows upwards (pixel y falls), as x squared.
    assert np.allclose(np.diff(pts[:, 0]), np.diff(pts[:, 0])[0], atol=0.15)
    assert np.all(np.diff(pts[:, 1]) < 0)
    drop = pts[0, 1] - pts[:, 1]
    assert drop[5] / drop[10] == pytest.approx(25 / 100, abs=0.01)


def test_points_land_on_the_ticks_of_their_value() -> None:
    plot, _x, _y = line_plot()
    scene = plot.scene()
    root = parse(to_svg(scene, "t"))
    series = max(stroked(root, "#4C72B0"), key=lambda p: len(path_points(p)))
    pts = path_points(series)
    ticks = {
        t.text: float(t.get("y", "nan"))
        for t in root.iter("text")
        if t.get("text-anchor") == "end" and t.get("dominant-baseline") == "central"
    }
    # (10, 100) is drawn level with the "100" tick label, (0, 0) with "0".
    assert pts[-1, 1] == pytest.approx(ticks["100"], abs=0.15)
    assert pts[0, 1] == pytest.approx(ticks["0"], abs=0.15)


def test_step_line_holds_each_value_until_the_next_x() -> None:
    plot = Plot(400.0, 300.0)
    plot.line(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5, 1.0]), "#000001", step=True)
    plot.x, plot.y = Axis(0.0, 4.0), Axis(0.0, 1.0)
    root = parse(to_svg(plot.scene(), "s"))
    (path,) = stroked(root, "#000001")
    pts = path_points(path)
    # (1,0) (2,0) (2,.5) (3,.5) (3,1): every other segment is flat, the others vertical.
    assert len(pts) == 5
    assert pts[0, 1] == pts[1, 1]
    assert pts[1, 0] == pts[2, 0]
    assert pts[2, 1] == pts[3, 1]


def test_log_axis_spaces_decades_equally() -> None:
    plot = Plot(500.0, 300.0)
    plot.line(np.array([1.0, 10.0, 100.0, 1000.0]), np.array([0.1, 0.2, 0.3, 1.0]), "#000002")
    plot.x = Axis(1.0, 1000.0, "seconds", log=True)
    root = parse(to_svg(plot.scene(), "l"))
    (path,) = stroked(root, "#000002")
    xs = path_points(path)[:, 0]
    assert np.allclose(np.diff(xs), np.diff(xs)[0], atol=0.15)
    assert {"1", "10", "100", "1k"} <= set(texts(root))


def test_stacked_areas_reach_the_sum_of_their_layers() -> None:
    t = np.arange(0.0, 48 * 3600.0, 300.0)
    busy = {"a": np.full(t.size, 25.0), "b": np.full(t.size, 50.0)}
    scene = charts.utilisation_figure(t, busy, 100.0, {"a": "#000003", "b": "#000004"})
    root = parse(to_svg(scene, "u"))
    fills = {p.get("fill"): path_points(p) for p in root.iter("path") if p.get("fill") != "none"}
    a, b = fills["#000003"], fills["#000004"]
    ticks = {t.text: float(t.get("y", "nan")) for t in root.iter("text")}
    # Layer a spans 0-25 %, b sits on it up to 75 %; the tick labels say where those are.
    y0, y25, y50, y75 = (
        np.interp(v, [0, 100], [ticks["0%"], ticks["100%"]]) for v in (0, 25, 50, 75)
    )
    assert a[:, 1].max() == pytest.approx(y0, abs=0.15)
    assert a[:, 1].min() == pytest.approx(y25, abs=0.15)
    assert b[:, 1].max() == pytest.approx(y25, abs=0.15)
    assert b[:, 1].min() == pytest.approx(y75, abs=0.15)
    assert y50 > y75
    words = texts(root)
    assert "busy GPUs (% of 100)" in words
    assert "simulated time (hours)" in words
    assert words.index("b") < words.index("a")  # legend reads top-down like the stack


def test_bars_are_proportional_and_hatch_ids_are_salted() -> None:
    scene = charts.gpu_hours_figure(
        ["t1", "t2"], [100.0, 50.0], [10.0, 0.0], [200.0, None], {"t1": "#000005", "t2": "#000006"}
    )
    svg = to_svg(scene, "gpuh")
    root = parse(svg)
    rects = {r.get("fill"): r for r in root.iter("rect")}
    h1 = float(rects["#000005"].get("height", "nan"))
    h2 = float(rects["#000006"].get("height", "nan"))
    assert h1 == pytest.approx(2 * h2, abs=0.2)
    assert 'id="gpuh-hatch"' in svg
    assert "url(#gpuh-hatch)" in svg
    other = to_svg(scene, "gpuh2")
    assert 'id="gpuh2-hatch"' in other
    assert {"t1", "t2", "GPU-hours", "quota x makespan"} <= set(texts(root))


def test_many_tenants_make_horizontal_bars_first_at_the_top() -> None:
    names = [f"tenant{i:02d}" for i in range(12)]
    used = [float(100 - i) for i in range(12)]
    scene = charts.gpu_hours_figure(names, used, None, [None] * 12, charts.colour_map(names))
    root = parse(to_svg(scene, "h"))
    labels = [t for t in root.iter("text") if (t.text or "").startswith("tenant")]
    ys = [float(t.get("y", "nan")) for t in labels]
    assert [t.text for t in labels] == names
    assert ys == sorted(ys)


def test_cdf_chart_names_each_curve_and_the_time_ticks() -> None:
    x = np.array([1.0, 60.0, 3600.0, 86400.0])
    f = np.array([0.25, 0.5, 0.75, 1.0])
    scene = charts.cdf_figure({"1 GPU (n=4)": (x, f)}, "JCT CDF", "job completion time (log)")
    root = parse(to_svg(scene, "c"))
    words = texts(root)
    for label in ("JCT CDF", "1 GPU (n=4)", "1 min", "1 h", "1 d", "100%", "share of jobs"):
        assert label in words, label


@pytest.mark.parametrize(
    "scene",
    [
        charts.utilisation_figure(np.empty(0), {}, 0.0, {}),
        charts.cdf_figure({}, "t", "x", empty="no completed jobs"),
        charts.gpu_hours_figure([], [], None, [], {}),
        charts.metric_bars_figure([], {}, {}),
    ],
    ids=["utilisation", "cdf", "gpu-hours", "metrics"],
)
def test_empty_charts_say_so(scene: Scene) -> None:
    words = texts(parse(to_svg(scene, "e")))
    assert any(w.startswith("no ") for w in words)


def test_text_is_escaped() -> None:
    plot, _x, _y = line_plot()
    plot.title = '<script>alert("x")</script> & co'
    root = parse(to_svg(plot.scene(), "x"))
    assert plot.title in texts(root)


def test_small_multiples_place_panels_side_by_side() -> None:
    scene = charts.metric_bars_figure(
        ["fifo", "sjf"], {"a": [1.0, 2.0], "b": [3.0, None], "c": [0.0, 1.0]}, {}
    )
    root = parse(to_svg(scene, "m"))
    groups = list(root.iter("g"))
    assert len(groups) == 3
    offsets = [g.get("transform") for g in groups]
    assert len(set(offsets)) == 3
    assert "n/a" in texts(root)


def test_sweep_chart_draws_a_whisker_per_interval() -> None:
    svg = ci_bars_svg(
        ["base", "more"],
        {"queue (h)": [Estimate(3.0, 0.5, 5), Estimate(2.0, 0.25, 5)]},
    )
    root = parse(svg)
    whiskers = [
        path_points(p)
        for p in stroked(root, "#1f2328")
        if len(path_points(p)) == 2 and path_points(p)[0, 0] == path_points(p)[1, 0]
    ]
    lengths = sorted(abs(float(w[1, 1] - w[0, 1])) for w in whiskers)
    assert len(lengths) == 2
    assert lengths[1] == pytest.approx(2 * lengths[0], rel=0.02)  # 2 x 0.5 against 2 x 0.25


# --------------------------------------------------------------------------- PNG


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_png_is_the_scene_at_scale_and_deterministic() -> None:
    plot, _x, _y = line_plot()
    scene = plot.scene()
    first = to_png(scene, 1.5)
    assert png_size(first) == (900, 450)
    assert to_png(scene, 1.5) == first
    assert png_size(charts.render_png(scene)) == (1080, 540)


def test_png_shows_the_series_colour() -> None:
    from io import BytesIO  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    t = np.arange(0.0, 86400.0, 300.0)
    scene = charts.utilisation_figure(t, {"a": np.full(t.size, 50.0)}, 100.0, {"a": "#C44E52"})
    image = Image.open(BytesIO(charts.render_png(scene))).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    red = sum(n for n, rgb in colours if rgb == (0xC4, 0x4E, 0x52))
    # Half the plot's height is filled: a large share of the image, not a legend swatch.
    assert red > 0.15 * image.width * image.height


def test_grid_of_nothing_is_an_empty_scene() -> None:
    assert grid([], 3).items == ()
