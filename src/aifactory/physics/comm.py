"""What a gang pays for spanning sites: the inter-site all-reduce of its gradients.

The model: a data-parallel training job reduces its gradients every step. Inside a site
that runs over NVLink and the site's fabric, already part of its step time (``step_s``,
as measured on one site). Spanning ``n`` sites adds, per step, an all-reduce of its
``grad_bytes`` among the sites over the inter-site links, hierarchically (each site first
reduces inside, then the sites all-reduce, then each site broadcasts inside; the inner
parts are the fast ones and are neglected). The sites' all-reduce is a ring: the
bandwidth-optimal all-reduce of Patarasuk & Yuan, "Bandwidth optimal all-reduce
algorithms for clusters of workstations" (JPDC 69(2), 2009), which takes

    t_comm = 2 (n - 1) / n * B / bw  +  2 (n - 1) * alpha

for ``B`` bytes among ``n`` members, ``bw`` the slowest ring hop's bandwidth and
``alpha`` its latency (reduce-scatter then all-gather, ``n - 1`` steps each). The ring
visits the sites in the fleet file's order, each hop over the path between neighbours
(:meth:`aifactory.physics.links.Network.path`), so its ``bw`` is the narrowest link on
any hop and ``alpha`` the longest hop's latency.

Assumed: the inter-site all-reduce does not overlap the step's compute (an upper bound on
the cost: real trainers overlap part of it), and a gang is priced as if alone on the
links (the twin puts its all-reduce on them as a steady flow that copies share,
:mod:`aifactory.twin.spans`, but does not stretch the gang when copies crowd it). The
slowdown is (step + t_comm) / step. A job that gives no gradient size or step time has no
modelled cost (1.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aifactory.physics.links import Network

INF: Final = float("inf")


def ring_allreduce_s(size_bytes: float, n: int, bytes_per_s: float, latency_s: float) -> float:
    """Seconds of a ring all-reduce of ``size_bytes`` among ``n`` members (see the doc)."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * size_bytes / bytes_per_s + 2.0 * (n - 1) * latency_s


def ring_links(net: Network, sites: Sequence[int]) -> tuple[float, float] | None:
    """(bytes/s of the slowest hop, latency of the longest hop) of the ring over ``sites``
    in ascending order; None when two neighbours have no path."""
    ring = sorted(set(sites))
    if len(ring) <= 1:
        return INF, 0.0
    bw = INF
    lat = 0.0
    for i, a in enumerate(ring):
        b = ring[(i + 1) % len(ring)]
        if len(ring) == 2 and i == 1:
            break  # two sites: one hop, used both ways
        path = net.path(a, b)
        if path is None:
            return None
        bw = min(bw, net.bottleneck(path))
        lat = max(lat, net.latency_s(path))
    return bw, lat


def span_slowdown(net: Network, sites: Sequence[int], grad_bytes: float, step_s: float) -> float:
    """How many times longer a step takes on ``sites`` than on one (inf: no path)."""
    n = len(set(sites))
    if n <= 1 or grad_bytes <= 0.0 or step_s <= 0.0:
        return 1.0
    ring = ring_links(net, sites)
    if ring is None:
        return INF
    bw, lat = ring
    return (step_s + ring_allreduce_s(grad_bytes, n, bw, lat)) / step_s
