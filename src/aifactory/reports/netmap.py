"""The report's network section: a map-like picture of the sites and the links between
them with their load, and the staging and cross-site figures of the summary's
``network`` block (aifactory.twin.netreport).

The fleet file gives sites no coordinates, so the picture is a schematic: a spring layout
(Fruchterman & Reingold, "Graph drawing by force-directed placement", 1991: linked sites
attract, all sites repel; a fixed number of steps from a circle in the file's order, so
the same fleet is always drawn the same way), each link a line between its ends, as thick
as its bandwidth is against the widest link's and coloured by its peak utilisation (grey
idle, through orange, to red when full: copies come in bursts, so an average over the run
says little), with its bandwidth, the terabytes it moved and its peak written beside it. Drawn as an
:class:`~aifactory.reports.svgplot.Scene` (inline SVG, as every chart of the page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aifactory.reports import charts
from aifactory.reports.html import cards, figure, section, table
from aifactory.reports.svgplot import MUTED, Item, Path, Rect, Scene, Text, text_width

WIDTH = 760.0
HEIGHT = 560.0


def _load_colour(util: float) -> str:
    """Grey (idle) to orange (half) to red (full)."""
    u = min(max(util, 0.0), 1.0)
    if u <= 0.0:
        return "#B0B0B0"
    if u < 0.5:
        f = u / 0.5
        r, g, b = 0xB0 + (0xF0 - 0xB0) * f, 0xB0 + (0x90 - 0xB0) * f, 0xB0 - 0xB0 * f
    else:
        f = (u - 0.5) / 0.5
        r, g, b = 0xF0 - 0x20 * f, 0x90 - 0x90 * f, 0.0
    return f"#{int(r):02X}{int(g):02X}{int(b):02X}"


def _disc(x: float, y: float, r: float, fill: str) -> Path:
    angles = np.linspace(0.0, 2.0 * math.pi, 25)
    pts = np.column_stack([x + r * np.cos(angles), y + r * np.sin(angles)])
    return Path(pts, stroke="#1f2328", width=1.0, fill=fill)


def spring_layout(n: int, edges: list[tuple[int, int]], steps: int = 300) -> np.ndarray[Any, Any]:
    """Positions in [0, 1]^2 of ``n`` nodes joined by ``edges`` (Fruchterman-Reingold)."""
    if n == 0:
        return np.zeros((0, 2))
    angle = -math.pi / 2.0 + 2.0 * math.pi * np.arange(n) / n
    pos = np.column_stack([np.cos(angle), np.sin(angle)]) * 0.5
    k = 1.0 / math.sqrt(n)
    for step in range(steps):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 1e-3)
        force = (delta / dist[..., None] * (k * k / dist)[..., None]).sum(axis=1)
        for a, b in edges:
            d = pos[a] - pos[b]
            length = max(float(np.linalg.norm(d)), 1e-3)
            pull = d / length * (length * length / k)
            force[a] -= pull
            force[b] += pull
        heat = 0.1 * (1.0 - step / steps) + 0.005
        size = np.maximum(np.linalg.norm(force, axis=1), 1e-9)
        pos += force / size[:, None] * np.minimum(size, heat)[:, None]
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    return np.asarray((pos - lo) / np.maximum(hi - lo, 1e-9))


def network_map(sites: list[str], links: Mapping[str, Mapping[str, Any]]) -> Scene:
    """The schematic map: ``links`` by ``a-b`` name (the summary's ``network.links``)."""
    ends = {name: _ends(name, sites) for name in links}
    index = {s: i for i, s in enumerate(sites)}
    edges = [(index[e[0]], index[e[1]]) for e in ends.values() if e is not None]
    unit = spring_layout(len(sites), edges)
    pad_x, pad_y = 90.0, 60.0
    pos = {
        name: (
            pad_x + unit[i, 0] * (WIDTH - 2 * pad_x),
            pad_y + 10.0 + unit[i, 1] * (HEIGHT - 2 * pad_y),
        )
        for i, name in enumerate(sites)
    }
    cy = HEIGHT / 2.0
    widest = max((float(v.get("gbps", 0.0)) for v in links.values()), default=1.0) or 1.0
    items: list[Item] = [
        Text(12.0, 20.0, "Sites and links: width = bandwidth, colour = peak load", bold=True)
    ]
    labels: list[Item] = []
    for name, v in links.items():
        pair = ends[name]
        if pair is None:
            continue
        (ax, ay), (bx, by) = pos[pair[0]], pos[pair[1]]
        width = 1.5 + 8.0 * float(v.get("gbps", 0.0)) / widest
        peak = float(v.get("peak_utilization", 0.0))
        items.append(Path(np.array([[ax, ay], [bx, by]]), stroke=_load_colour(peak), width=width))
        tb = float(v.get("tb_moved", 0.0))
        label = f"{v.get('gbps', 0):g} Gb/s" + (f", {tb:,.0f} TB, peak {peak:.0%}" if tb else "")
        mx, my = (ax + bx) / 2.0, (ay + by) / 2.0
        w = text_width(label, 10.0) + 6.0
        labels.append(Rect(mx - w / 2.0, my - 8.0, w, 14.0, fill="#FFFFFF"))
        labels.append(Text(mx, my + 3.0, label, size=10.0, anchor="middle", colour=MUTED))
    items.extend(labels)
    for name, (x, y) in pos.items():
        items.append(_disc(x, y, 7.0, "#4C78A8"))
        dy = -12.0 if y < cy else 20.0
        items.append(Text(x, y + dy, name, anchor="middle", bold=True))
    return Scene(WIDTH, HEIGHT, tuple(items), label="network map")


def _ends(name: str, sites: list[str]) -> tuple[str, str] | None:
    """The two site names of a link named ``a-b`` (site names may contain '-')."""
    for a in sites:
        if name.startswith(a + "-") and name[len(a) + 1 :] in sites:
            return a, name[len(a) + 1 :]
    return None


def network_section(summary: Mapping[str, Any], sites: list[str]) -> str:
    """The section, or "" for a run that moved no data and spanned no sites."""
    net = summary.get("network")
    if not isinstance(net, Mapping):
        return ""
    links = net.get("links") or {}
    staging = net.get("staging") or {}
    cross = net.get("cross_site") or {}
    moved = sum(float(v.get("tb_moved", 0.0)) for v in links.values())
    if moved <= 0.0 and not cross.get("jobs"):
        return ""
    parts = [
        cards(
            [
                ("data copied", f"{float(staging.get('tb_copied', 0.0)):,.1f} TB"),
                ("jobs staged", f"{staging.get('jobs_staged', 0):,}"),
                ("staging hours", f"{float(staging.get('staging_hours', 0.0)):,.1f}"),
                ("cross-site jobs", f"{cross.get('jobs', 0):,}"),
                ("cross-site GPU-h", f"{float(cross.get('gpu_hours', 0.0)):,.0f}"),
                ("mean slowdown", f"{float(cross.get('avg_slowdown', 1.0)):.3f}x"),
            ]
        )
    ]
    if links:
        parts.append(figure(charts.render_svg(network_map(sites, links), "netmap")))
    by_tenant = staging.get("staging_hours_by_tenant") or {}
    if by_tenant:
        rows = [(t, f"{float(h):,.2f}") for t, h in sorted(by_tenant.items())]
        parts.append(table(["tenant", "hours waiting for data"], rows, [False, True]))
    return section(
        "Links, data staging and cross-site gangs",
        *parts,
        note=(
            "Copies share links max-min fairly; a cross-site gang pays a ring all-reduce of "
            "its gradients per step over the slowest link of its ring (physics/comm.py)."
        ),
    )
