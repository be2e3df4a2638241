"""Charts drawn in Python as inline SVG: axes with ticks and units, lines, steps, areas, bars.

Why not matplotlib: importing it and rendering a report's six charts took 1.8 s of a 3.6 s
``simulate`` on the full Philly trace, for charts whose data is already reduced to a few
thousand points. A chart here is a :class:`Plot` (data coordinates, axes, legend) laid out
into a :class:`Scene` of pixel primitives (paths, rectangles, text). :func:`to_svg` writes a
scene as one ``<svg>`` element for the self-contained pages (no script, no namespace URL, no
external reference; its only id is salted per chart); :mod:`aifactory.reports.raster`
rasterises the same scene for ``summary.png``.

Text widths are estimated (a fixed average advance per character), which is enough to
size margins and legends; nothing here measures fonts.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Anchor = Literal["start", "middle", "end"]
VAlign = Literal["baseline", "middle", "top"]
Where = Literal["right", "lower right", "bottom"]

FG = "#1f2328"
MUTED = "#555555"
GRID = "#E5E5E5"
FONT = "system-ui, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
FONT_SIZE = 12.0
_NARROW = frozenset("fijlrt.,:;'!|()[] ")
_WIDE = frozenset("mwMW%@")


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """Estimated width in pixels of ``text`` at ``size`` (for layout, not for drawing).

    Advances in ems of DejaVu Sans, the widest of the fonts a page may fall back to, in
    four classes: narrow letters and punctuation 0.35, m/w/% 0.95, other capitals 0.72,
    everything else (lower case, digits) 0.63. An overestimate only widens a margin.
    """
    em = 0.0
    for c in text:
        if c in _NARROW:
            em += 0.35
        elif c in _WIDE:
            em += 0.95
        elif c.isupper():
            em += 0.72
        else:
            em += 0.63
    return em * size


# --------------------------------------------------------------------------- primitives


@dataclass(frozen=True, slots=True, eq=False)
class Path:
    """A polyline (``fill`` None) or a filled polygon, in pixels; ``points`` is (n, 2)."""

    points: FloatArray
    stroke: str | None = None
    width: float = 1.0
    fill: str | None = None
    dash: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in pixels; ``hatch`` draws diagonal lines over ``fill``."""

    x: float
    y: float
    w: float
    h: float
    fill: str | None = None
    stroke: str | None = None
    hatch: bool = False


@dataclass(frozen=True, slots=True)
class Text:
    """One line of text at a point; ``rotate`` in degrees (-90 reads bottom to top)."""

    x: float
    y: float
    text: str
    size: float = FONT_SIZE
    anchor: Anchor = "start"
    valign: VAlign = "baseline"
    colour: str = FG
    bold: bool = False
    rotate: float = 0.0


@dataclass(frozen=True, slots=True)
class Group:
    """Items shifted by ``(dx, dy)`` (the panels of small multiples)."""

    dx: float
    dy: float
    items: tuple[Item, ...]


Item = Path | Rect | Text | Group


@dataclass(frozen=True, slots=True)
class Scene:
    """A laid-out chart: its size in pixels and its primitives, back to front."""

    width: float
    height: float
    items: tuple[Item, ...]
    label: str = ""


# --------------------------------------------------------------------------- ticks


def nice_step(span: float, target: int = 5) -> float:
    """The step of 1, 2, 2.5 or 5 times a power of ten whose tick count is nearest ``target``."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(span / max(target, 1)))
    steps = [m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0)]
    return min(steps, key=lambda s: (abs(span / s - target), -s))


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values inside ``[lo, hi]``."""
    step = nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    out: list[float] = []
    k = first
    while k * step <= hi + step * 1e-9 and len(out) < 50:
        v = k * step
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        k += 1
    return out


def short_number(v: float) -> str:
    """A tick label: three significant figures with k/M/G suffixes."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def percent(v: float) -> str:
    """A tick label for a value already in percent."""
    return f"{v:.0f}%"


# --------------------------------------------------------------------------- the plot


@dataclass(slots=True)
class Axis:
    """One axis: limits, scale, label and ticks (explicit, or nice ticks formatted by fmt)."""

    lo: float = 0.0
    hi: float = 1.0
    label: str = ""
    log: bool = False
    ticks: list[tuple[float, str]] | None = None
    fmt: Callable[[float], str] = short_number
    categories: list[str] | None = None
    slant: bool = False
    grid: bool = True

    def f(self, v: FloatArray) -> FloatArray:
        """Values in the axis's linear space (log10 on a log axis)."""
        if self.log:
            return np.log10(np.maximum(v, 1e-300))
        return v

    def tick_list(self) -> list[tuple[float, str]]:
        """The ticks drawn: explicit ones, categories, or nice values in range."""
        if self.categories is not None:
            return [(float(i), c) for i, c in enumerate(self.categories)]
        if self.ticks is not None:
            return [(v, s) for v, s in self.ticks if self.lo <= v <= self.hi]
        if self.log:
            lo, hi = math.log10(max(self.lo, 1e-300)), math.log10(max(self.hi, 1e-300))
            return [(10.0**k, self.fmt(10.0**k)) for k in range(math.ceil(lo), math.floor(hi) + 1)]
        return [(v, self.fmt(v)) for v in nice_ticks(self.lo, self.hi)]


@dataclass(frozen=True, slots=True)
class LegendEntry:
    """A legend row: a colour swatch (patch), a line sample, or a hatched swatch."""

    label: str
    colour: str
    kind: Literal["patch", "line", "hatch"] = "patch"
    dash: tuple[float, float] | None = None


@dataclass(slots=True)
class _Series:
    kind: Literal["line", "step", "area"]
    x: FloatArray
    y: FloatArray
    base: FloatArray | None
    colour: str
    width: float
    dash: tuple[float, float] | None


@dataclass(slots=True)
class _Bars:
    pos: FloatArray
    values: FloatArray
    colours: list[str]
    width: float
    hatch: bool
    errors: FloatArray | None


@dataclass(slots=True)
class _Rule:
    value: float
    colour: str
    width: float
    dash: tuple[float, float] | None
    label: str | None
    vertical: bool


@dataclass(slots=True)
class _Marks:
    pos: FloatArray
    values: FloatArray
    half: float
    colour: str
    width: float


@dataclass(slots=True)
class _Note:
    x: float
    y: float
    text: str


_Mark = _Series | _Bars | _Rule | _Marks | _Note


@dataclass(slots=True)
class Plot:
    """One chart in data coordinates; :meth:`scene` lays it out in pixels.

    ``horizontal`` swaps the roles of the axes for bars: categories run down the y axis
    (first at the top) and values along x.
    """

    width: float = 720.0
    height: float = 360.0
    title: str = ""
    x: Axis = field(default_factory=Axis)
    y: Axis = field(default_factory=Axis)
    horizontal: bool = False
    legend: list[LegendEntry] = field(default_factory=list)
    legend_at: Where = "right"
    empty: str | None = None
    title_size: float = 13.0
    _marks: list[_Mark] = field(default_factory=list)

    # ---- marks, in data coordinates

    def line(
        self,
        x: FloatArray,
        y: FloatArray,
        colour: str,
        *,
        width: float = 1.4,
        step: bool = False,
        dash: tuple[float, float] | None = None,
    ) -> None:
        """A polyline; with ``step`` it holds each value until the next x (post steps)."""
        kind: Literal["line", "step"] = "step" if step else "line"
        self._marks.append(_Series(kind, _arr(x), _arr(y), None, colour, width, dash))

    def area(self, x: FloatArray, base: FloatArray, top: FloatArray, colour: str) -> None:
        """The band between ``base`` and ``top`` filled (one layer of a stack)."""
        self._marks.append(_Series("area", _arr(x), _arr(top), _arr(base), colour, 0.0, None))

    def bars(
        self,
        pos: Sequence[float] | FloatArray,
        values: Sequence[float] | FloatArray,
        colours: Sequence[str],
        *,
        width: float = 0.7,
        hatch: bool = False,
        errors: Sequence[float] | None = None,
    ) -> None:
        """Bars from zero at category positions; ``errors`` adds whiskers of that half-width."""
        err = None if errors is None else _arr(errors)
        self._marks.append(_Bars(_arr(pos), _arr(values), list(colours), width, hatch, err))

    def rule(
        self,
        value: float,
        colour: str = "#333333",
        *,
        width: float = 1.0,
        dash: tuple[float, float] | None = (5.0, 3.0),
        label: str | None = None,
        vertical: bool = False,
    ) -> None:
        """A line across the plot at ``value`` (horizontal unless ``vertical``), labelled."""
        self._marks.append(_Rule(value, colour, width, dash, label, vertical))

    def marks(
        self,
        pos: Sequence[float],
        values: Sequence[float],
        colour: str = "#111111",
        *,
        half: float = 0.42,
        width: float = 2.5,
    ) -> None:
        """Short bars across each category at ``values`` (a quota against a bar)."""
        self._marks.append(_Marks(_arr(pos), _arr(values), half, colour, width))

    def note(self, x: float, y: float, text: str) -> None:
        """A small muted label at a data point (a missing value's "n/a")."""
        self._marks.append(_Note(x, y, text))

    def categories(self, labels: Sequence[str]) -> None:
        """Name the category positions 0..n-1 on the category axis."""
        axis = self.y if self.horizontal else self.x
        axis.categories = list(labels)
        axis.lo, axis.hi = -0.5, len(labels) - 0.5
        axis.grid = False
        if not self.horizontal:
            room = sum(text_width(s, FONT_SIZE - 1) + 8.0 for s in labels)
            axis.slant = len(labels) > 4 or room > self.width * 0.8

    # ---- layout

    def scene(self) -> Scene:
        """Lay the plot out: margins from tick labels, title and legend; then draw."""
        fs = FONT_SIZE
        items: list[Item] = []
        top = 10.0 + (self.title_size + 10.0 if self.title else 0.0)
        if self.title:
            items.append(Text(8.0, 8.0 + self.title_size, self.title, self.title_size, bold=True))
        if self.empty is not None:
            items.append(
                Text(
                    self.width / 2,
                    (self.height + top) / 2,
                    self.empty,
                    fs,
                    "middle",
                    "middle",
                    MUTED,
                )
            )
            return Scene(self.width, self.height, tuple(items), self.title)
        xt, yt = self.x.tick_list(), self.y.tick_list()
        ylab_w = max((text_width(s, fs - 1) for _, s in yt), default=0.0)
        left = 10.0 + ylab_w + 6.0 + (fs + 8.0 if self.y.label else 0.0)
        right = 16.0
        legend_w = 0.0
        if self.legend and self.legend_at == "right":
            legend_w = 28.0 + max(text_width(e.label, fs - 1) for e in self.legend)
            right += legend_w
        if self.x.slant:
            xlab_h = 6.0 + max((text_width(s, fs - 1) for _, s in xt), default=0.0) * 0.5 + fs
        else:
            xlab_h = 6.0 + fs
        bottom = 8.0 + xlab_h + (fs + 8.0 if self.x.label else 0.0)
        if self.legend and self.legend_at == "bottom":
            bottom += fs + 14.0
        pw = max(self.width - left - right, 40.0)
        ph = max(self.height - top - bottom, 40.0)
        frame = _Frame(left, top, pw, ph, self.x, self.y)
        items.extend(frame.grid(xt, yt))
        for mark in self._marks:
            items.extend(frame.draw(mark, self.horizontal))
        items.extend(frame.axes(xt, yt, fs - 1))
        if self.x.label:
            items.append(
                Text(left + pw / 2, top + ph + xlab_h + fs + 4.0, self.x.label, fs, "middle")
            )
        if self.y.label:
            items.append(Text(12.0, top + ph / 2, self.y.label, fs, "middle", "top", rotate=-90.0))
        if self.legend:
            items.extend(self._legend(frame, fs - 1))
        return Scene(self.width, self.height, tuple(items), self.title)

    def _legend(self, frame: _Frame, fs: float) -> list[Item]:
        row = fs + 6.0
        out: list[Item] = []
        if self.legend_at == "bottom":
            widths = [28.0 + text_width(e.label, fs) for e in self.legend]
            x = max((self.width - sum(widths)) / 2, 4.0)
            y = self.height - row
            for e, w in zip(self.legend, widths, strict=True):
                out.extend(_swatch(e, x, y))
                out.append(Text(x + 22.0, y, e.label, fs, "start", "middle"))
                x += w
            return out
        if self.legend_at == "right":
            x = frame.left + frame.w + 14.0
            y = frame.top + row / 2
        else:  # lower right, inside the plot on a white ground
            w = 30.0 + max(text_width(e.label, fs) for e in self.legend)
            h = row * len(self.legend) + 6.0
            x = frame.left + frame.w - w - 4.0
            y = frame.top + frame.h - h + row / 2
            out.append(Rect(x - 4.0, y - row / 2 - 2.0, w, h, "#ffffff"))
        for e in self.legend:
            out.extend(_swatch(e, x, y))
            out.append(Text(x + 22.0, y, e.label, fs, "start", "middle"))
            y += row
        return out


def _arr(values: Sequence[float] | FloatArray) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _swatch(e: LegendEntry, x: float, y: float) -> list[Item]:
    if e.kind == "line":
        pts = np.array([[x, y], [x + 16.0, y]])
        return [Path(pts, e.colour, 2.0, dash=e.dash)]
    if e.kind == "hatch":
        return [Rect(x + 2.0, y - 5.0, 12.0, 10.0, "#ffffff", e.colour, hatch=True)]
    return [Rect(x + 2.0, y - 5.0, 12.0, 10.0, e.colour)]


@dataclass(slots=True)
class _Frame:
    """The plot rectangle in pixels and the data-to-pixel maps of both axes."""

    left: float
    top: float
    w: float
    h: float
    xa: Axis
    ya: Axis

    def px(self, v: FloatArray) -> FloatArray:
        lo, hi = self.xa.f(_arr([self.xa.lo, self.xa.hi]))
        span = float(hi - lo) or 1.0
        out: FloatArray = self.left + (self.xa.f(v) - lo) / span * self.w
        return out

    def py(self, v: FloatArray) -> FloatArray:
        lo, hi = self.ya.f(_arr([self.ya.lo, self.ya.hi]))
        span = float(hi - lo) or 1.0
        if self.ya.categories is not None:  # first category at the top
            out: FloatArray = self.top + (v - lo) / span * self.h
            return out
        flipped: FloatArray = self.top + self.h - (self.ya.f(v) - lo) / span * self.h
        return flipped

    def clip(self, pts: FloatArray) -> FloatArray:
        pts[:, 0] = np.clip(pts[:, 0], self.left, self.left + self.w)
        pts[:, 1] = np.clip(pts[:, 1], self.top, self.top + self.h)
        return pts

    def grid(self, xt: list[tuple[float, str]], yt: list[tuple[float, str]]) -> list[Item]:
        out: list[Item] = []
        bottom, right = self.top + self.h, self.left + self.w
        if self.xa.grid:
            xs = self.px(_arr([v for v, _ in xt]))
            out.extend(Path(np.array([[x, self.top], [x, bottom]]), GRID, 0.8) for x in xs)
        if self.ya.grid:
            ys = self.py(_arr([v for v, _ in yt]))
            out.extend(Path(np.array([[self.left, y], [right, y]]), GRID, 0.8) for y in ys)
        return out

    def axes(
        self, xt: list[tuple[float, str]], yt: list[tuple[float, str]], fs: float
    ) -> list[Item]:
        base, lft = self.top + self.h, self.left
        out: list[Item] = [
            Path(np.array([[lft, self.top], [lft, base], [lft + self.w, base]]), "#444444", 1.0)
        ]
        xs = self.px(_arr([v for v, _ in xt]))
        for x, (_v, s) in zip(xs, xt, strict=True):
            out.append(Path(np.array([[x, base], [x, base + 4.0]]), "#444444", 1.0))
            if self.xa.slant:
                out.append(Text(x, base + 8.0, s, fs, "end", "middle", FG, rotate=-30.0))
            else:
                out.append(Text(x, base + 6.0, s, fs, "middle", "top"))
        ys = self.py(_arr([v for v, _ in yt]))
        for y, (_v, s) in zip(ys, yt, strict=True):
            out.append(Path(np.array([[lft - 4.0, y], [lft, y]]), "#444444", 1.0))
            out.append(Text(lft - 6.0, y, s, fs, "end", "middle"))
        return out

    def draw(self, mark: _Mark, horizontal: bool) -> list[Item]:
        if isinstance(mark, _Series):
            return self._series(mark)
        if isinstance(mark, _Bars):
            return self._bars(mark, horizontal)
        if isinstance(mark, _Rule):
            return self._rule(mark)
        if isinstance(mark, _Marks):
            return self._marks(mark, horizontal)
        x, y = float(self.px(_arr([mark.x]))[0]), float(self.py(_arr([mark.y]))[0])
        return [Text(x, y - 3.0, mark.text, FONT_SIZE - 3, "middle", "baseline", MUTED)]

    def _series(self, s: _Series) -> list[Item]:
        if s.x.size == 0:
            return []
        if s.kind == "area":
            assert s.base is not None
            xs = np.concatenate((s.x, s.x[::-1]))
            ys = np.concatenate((s.y, s.base[::-1]))
            pts = np.column_stack((self.px(xs), self.py(ys)))
            return [Path(self.clip(pts), None, 0.0, fill=s.colour)]
        x, y = s.x, s.y
        if s.kind == "step":
            x = np.repeat(x, 2)[1:]
            y = np.repeat(y, 2)[:-1]
        pts = np.column_stack((self.px(x), self.py(y)))
        return [Path(self.clip(pts), s.colour, s.width, dash=s.dash)]

    def _bars(self, b: _Bars, horizontal: bool) -> list[Item]:
        out: list[Item] = []
        half = b.width / 2
        for i, (p, v) in enumerate(zip(b.pos.tolist(), b.values.tolist(), strict=True)):
            colour = None if b.hatch else b.colours[i % len(b.colours)] if b.colours else None
            if horizontal:
                x0, x1 = self.px(_arr([0.0, v]))
                y0, y1 = self.py(_arr([p - half, p + half]))
            else:
                x0, x1 = self.px(_arr([p - half, p + half]))
                y1, y0 = self.py(_arr([0.0, v]))
            rx, ry = float(min(x0, x1)), float(min(y0, y1))
            out.append(
                Rect(rx, ry, float(abs(x1 - x0)), float(abs(y1 - y0)), colour, hatch=b.hatch)
            )
            if b.errors is not None and not horizontal:
                e = float(b.errors[i])
                if e > 0 and math.isfinite(e):
                    cx = float(self.px(_arr([p]))[0])
                    lo, hi = self.py(_arr([v - e, v + e]))
                    cap = 0.18 * float(self.px(_arr([1.0]))[0] - self.px(_arr([0.0]))[0])
                    whisker = (
                        [[cx, lo], [cx, hi]],
                        [[cx - cap, lo], [cx + cap, lo]],
                        [[cx - cap, hi], [cx + cap, hi]],
                    )
                    out.extend(Path(self.clip(np.array(seg)), FG, 1.0) for seg in whisker)
        return out

    def _rule(self, r: _Rule) -> list[Item]:
        out: list[Item] = []
        if r.vertical:
            x = float(self.px(_arr([r.value]))[0])
            pts = np.array([[x, self.top], [x, self.top + self.h]])
        else:
            y = float(self.py(_arr([r.value]))[0])
            pts = np.array([[self.left, y], [self.left + self.w, y]])
            if r.label:
                right = self.left + self.w - 2.0
                out.append(Text(right, y - 3.0, r.label, FONT_SIZE - 2.5, "end", colour=r.colour))
        out.insert(0, Path(self.clip(pts), r.colour, r.width, dash=r.dash))
        return out

    def _marks(self, m: _Marks, horizontal: bool) -> list[Item]:
        out: list[Item] = []
        for p, v in zip(m.pos.tolist(), m.values.tolist(), strict=True):
            if horizontal:
                x = float(self.px(_arr([v]))[0])
                y0, y1 = self.py(_arr([p - m.half, p + m.half]))
                pts = np.array([[x, y0], [x, y1]], dtype=np.float64)
            else:
                y = float(self.py(_arr([v]))[0])
                x0, x1 = self.px(_arr([p - m.half, p + m.half]))
                pts = np.array([[x0, y], [x1, y]], dtype=np.float64)
            out.append(Path(pts, m.colour, m.width))
        return out


def grid(scenes: Sequence[Scene], cols: int, label: str = "") -> Scene:
    """Small multiples: scenes placed left to right in rows of ``cols``."""
    if not scenes:
        return Scene(1.0, 1.0, (), label)
    cols = max(1, min(cols, len(scenes)))
    cw = max(s.width for s in scenes)
    ch = max(s.height for s in scenes)
    items = tuple(Group((i % cols) * cw, (i // cols) * ch, s.items) for i, s in enumerate(scenes))
    rows = (len(scenes) + cols - 1) // cols
    return Scene(cw * cols, ch * rows, items, label)


# --------------------------------------------------------------------------- SVG


def _num(v: float) -> str:
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _points(pts: FloatArray) -> str:
    """Path data ("x y x y ...") at a tenth of a pixel, consecutive duplicates dropped."""
    r = np.round(pts, 1)
    if len(r) > 2:
        keep = np.ones(len(r), dtype=bool)
        keep[1:] = np.any(r[1:] != r[:-1], axis=1)
        keep[-1] = True
        r = r[keep]
    # repr of a float rounded to one decimal is its shortest form ("12.3"), made in C.
    return " ".join(map(repr, r.ravel().tolist()))


def _svg_item(item: Item, salt: str, out: list[str]) -> None:
    if isinstance(item, Path):
        if len(item.points) < 2:
            return
        cmd = "M" + _points(item.points) + ("Z" if item.fill else "")
        attrs = [f'd="{cmd}"', f'fill="{item.fill}"' if item.fill else 'fill="none"']
        if item.stroke:
            attrs.append(f'stroke="{item.stroke}" stroke-width="{_num(item.width)}"')
            if item.dash:
                attrs.append(f'stroke-dasharray="{_num(item.dash[0])} {_num(item.dash[1])}"')
        out.append(f"<path {' '.join(attrs)}/>")
    elif isinstance(item, Rect):
        geo = (
            f'x="{_num(item.x)}" y="{_num(item.y)}" width="{_num(item.w)}" height="{_num(item.h)}"'
        )
        stroke = f' stroke="{item.stroke}"' if item.stroke else ""
        if item.fill or not item.hatch:
            out.append(f'<rect {geo} fill="{item.fill or "none"}"{stroke}/>')
        if item.hatch:
            out.append(f'<rect {geo} fill="url(#{salt}-hatch)"{stroke}/>')
    elif isinstance(item, Text):
        attrs = [f'x="{_num(item.x)}"', f'y="{_num(item.y)}"', f'font-size="{_num(item.size)}"']
        if item.anchor != "start":
            attrs.append(f'text-anchor="{item.anchor}"')
        if item.valign == "middle":
            attrs.append('dominant-baseline="central"')
        elif item.valign == "top":
            attrs.append('dominant-baseline="hanging"')
        if item.colour != FG:
            attrs.append(f'fill="{item.colour}"')
        if item.bold:
            attrs.append('font-weight="bold"')
        if item.rotate:
            attrs.append(f'transform="rotate({_num(item.rotate)} {_num(item.x)} {_num(item.y)})"')
        out.append(f"<text {' '.join(attrs)}>{html.escape(item.text, quote=False)}</text>")
    else:
        out.append(f'<g transform="translate({_num(item.dx)} {_num(item.dy)})">')
        for sub in item.items:
            _svg_item(sub, salt, out)
        out.append("</g>")


def _has_hatch(items: Sequence[Item]) -> bool:
    return any(
        (isinstance(i, Rect) and i.hatch) or (isinstance(i, Group) and _has_hatch(i.items))
        for i in items
    )


def to_svg(scene: Scene, salt: str) -> str:
    """The scene as one inline ``<svg>`` element; its only id (a hatch) carries ``salt``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in salt) or "chart"
    w, h = _num(scene.width), _num(scene.height)
    head = (
        f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="{html.escape(scene.label)}" font-family="{FONT}" fill="{FG}">'
    )
    out = [head]
    if _has_hatch(scene.items):
        out.append(
            f'<defs><pattern id="{safe}-hatch" width="6" height="6" '
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<path d="M0,0 0,6" stroke="#333333" stroke-width="1.2"/></pattern></defs>'
        )
    for item in scene.items:
        _svg_item(item, safe, out)
    out.append("</svg>")
    return "".join(out)
