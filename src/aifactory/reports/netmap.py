"""The report's network section: a map-like picture of the sites and the links between
them with their load, and the staging and cross-site figures of the summary's
``network`` block (aifactory.twin.netreport).

The fleet file gives sites no coordinates, so the picture is a schematic: sites on a
circle in the file's order (the bundled fleets list theirs roughly north to south), each
link a line between its ends, as thick as its bandwidth is against the widest link's and
coloured by its average utilisation (grey idle, through orange, to red when full), with
the terabytes it moved and its peak utilisation written beside it. Drawn as an
:class:`~aifactory.reports.svgplot.Scene` (inline SVG, as every chart of the page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aifactory.reports import charts
from aifactory.reports.html import cards, figure, section, table
from aifactory.reports.svgplot import MUTED, Item, Path, Scene, Text

WIDTH = 720.0
HEIGHT = 560.0
RADIUS = 210.0


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


def network_map(sites: list[str], links: Mapping[str, Mapping[str, Any]]) -> Scene:
    """The schematic map: ``links`` by ``a-b`` name (the summary's ``network.links``)."""
    cx, cy = WIDTH / 2.0, HEIGHT / 2.0 + 10.0
    pos: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(sites):
        angle = -math.pi / 2.0 + 2.0 * math.pi * i / max(len(sites), 1)
        pos[name] = (cx + RADIUS * math.cos(angle), cy + RADIUS * math.sin(angle))
    widest = max((float(v.get("gbps", 0.0)) for v in links.values()), default=1.0) or 1.0
    items: list[Item] = [
        Text(12.0, 20.0, "Sites and links: width = bandwidth, colour = average load", bold=True)
    ]
    for name, v in links.items():
        ends = _ends(name, sites)
        if ends is None:
            continue
        (ax, ay), (bx, by) = pos[ends[0]], pos[ends[1]]
        width = 1.5 + 8.0 * float(v.get("gbps", 0.0)) / widest
        colour = _load_colour(float(v.get("avg_utilization", 0.0)))
        items.append(Path(np.array([[ax, ay], [bx, by]]), stroke=colour, width=width))
        tb = float(v.get("tb_moved", 0.0))
        peak = float(v.get("peak_utilization", 0.0))
        label = f"{v.get('gbps', 0):g} Gb/s" + (f", {tb:,.0f} TB, peak {peak:.0%}" if tb else "")
        items.append(
            Text(
                (ax + bx) / 2.0,
                (ay + by) / 2.0 - 4.0,
                label,
                size=10.0,
                anchor="middle",
                colour=MUTED,
            )
        )
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
