"""A chart :class:`~aifactory.reports.svgplot.Scene` rasterised to PNG bytes with Pillow.

``summary.png`` is the report's lead chart as an image for places that show no HTML (a
chat message, a slide). It is drawn from the same scene as the page's SVG, so the two never
disagree. Text uses Pillow's bundled scalable font, so no system font is needed.
The PNG carries no timestamp: reruns are byte-identical.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aifactory.reports.svgplot import FloatArray, Group, Item, Path, Rect, Scene, Text

SUPERSAMPLE = 1
"""Drawn at this many times the size and scaled down (anti-aliasing). 1: the stacked areas
of a run are dense spikes where aliasing does not show, text is anti-aliased by FreeType,
and at 2 the PNG took as long as the rest of the report."""


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _dashed(pts: FloatArray, dash: tuple[float, float]) -> list[FloatArray]:
    """The pieces of a polyline that a ``(on, off)`` dash pattern draws."""
    on, off = dash
    pieces: list[FloatArray] = []
    for a, b in itertools.pairwise(pts):
        length = float(np.hypot(*(b - a)))
        if length <= 0:
            continue
        unit = (b - a) / length
        s = 0.0
        while s < length:
            e = min(s + on, length)
            pieces.append(np.array([a + unit * s, a + unit * e]))
            s = e + off
    return pieces


class _Painter:
    def __init__(self, image: Image.Image, scale: float) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.scale = scale

    def _xy(self, pts: FloatArray, dx: float, dy: float) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]`` in image pixels (Pillow takes that shape too)."""
        out: list[float] = ((pts + np.array([dx, dy])) * self.scale).ravel().tolist()
        return out

    def items(self, items: Sequence[Item], dx: float, dy: float) -> None:
        for item in items:
            if isinstance(item, Path):
                self.path(item, dx, dy)
            elif isinstance(item, Rect):
                self.rect(item, dx, dy)
            elif isinstance(item, Text):
                self.text(item, dx, dy)
            elif isinstance(item, Group):
                self.items(item.items, dx + item.dx, dy + item.dy)

    def path(self, p: Path, dx: float, dy: float) -> None:
        if len(p.points) < 2:
            return
        if p.fill:
            self.draw.polygon(self._xy(p.points, dx, dy), fill=p.fill)
        if p.stroke:
            width = max(1, round(p.width * self.scale))
            pieces = _dashed(p.points, p.dash) if p.dash else [p.points]
            for piece in pieces:
                self.draw.line(self._xy(piece, dx, dy), fill=p.stroke, width=width, joint="curve")

    def rect(self, r: Rect, dx: float, dy: float) -> None:
        s = self.scale
        box = ((r.x + dx) * s, (r.y + dy) * s, (r.x + dx + r.w) * s, (r.y + dy + r.h) * s)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return
        if r.fill:
            self.draw.rectangle(box, fill=r.fill)
        if r.hatch:
            x0, y0, x1, y1 = (round(v) for v in box)
            tile = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
            hatch = ImageDraw.Draw(tile)
            step = round(6 * s)
            for k in range(-tile.height, tile.width, step):
                hatch.line([(k, tile.height), (k + tile.height, 0)], fill="#333333", width=2)
            self.image.paste(tile, (x0, y0), tile)
        if r.stroke:
            self.draw.rectangle(box, outline=r.stroke, width=max(1, round(self.scale)))

    def text(self, t: Text, dx: float, dy: float) -> None:
        s = self.scale
        font = _font(round(t.size * s))
        anchor = {"start": "l", "middle": "m", "end": "r"}[t.anchor]
        anchor += {"baseline": "s", "middle": "m", "top": "t"}[t.valign]
        # Bold as a one-pixel outline of the glyphs, where a pixel is thin enough for it.
        stroke = 1 if t.bold and s >= 2 else 0
        x, y = (t.x + dx) * s, (t.y + dy) * s
        if not t.rotate:
            self.draw.text(
                (x, y), t.text, fill=t.colour, font=font, anchor=anchor, stroke_width=stroke,
                stroke_fill=t.colour,
            )  # fmt: skip
            return
        # Rotated text: drawn on its own tile about its anchor, the tile rotated, and the
        # anchor's new place put on (x, y).
        left, top, right, bottom = font.getbbox(t.text, anchor=anchor)
        pad = 4
        w, h = int(right - left) + 2 * pad, int(bottom - top) + 2 * pad
        ax, ay = pad - left, pad - top
        tile = Image.new("RGBA", (max(w, 1), max(h, 1)), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((ax, ay), t.text, fill=t.colour, font=font, anchor=anchor)
        angle = -t.rotate  # SVG turns clockwise, Pillow counter-clockwise
        turned = tile.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        th = math.radians(angle)
        cx, cy = tile.width / 2, tile.height / 2
        ddx, ddy = ax - cx, ay - cy
        nx = turned.width / 2 + ddx * math.cos(th) + ddy * math.sin(th)
        ny = turned.height / 2 - ddx * math.sin(th) + ddy * math.cos(th)
        self.image.paste(turned, (round(x - nx), round(y - ny)), turned)


def to_png(scene: Scene, scale: float = 1.0) -> bytes:
    """The scene as PNG bytes, ``scale`` pixels per scene pixel."""
    size = (max(1, round(scene.width * scale)), max(1, round(scene.height * scale)))
    image = Image.new("RGB", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), "#ffffff")
    _Painter(image, scale * SUPERSAMPLE).items(scene.items, 0.0, 0.0)
    final = image.reduce(SUPERSAMPLE) if SUPERSAMPLE > 1 else image  # a box filter
    buf = io.BytesIO()
    # zlib level 1: a third of the default's time for a file about a fifth larger.
    final.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
