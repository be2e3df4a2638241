"""The inter-site network: which links a transfer between two sites crosses, and how
concurrent transfers share those links.

Decides two things, purely (no clock of its own, no I/O):

* **The path** between two sites (:meth:`Network.path`): the fewest hops, and among
  paths with as few hops the *widest* (the largest bottleneck bandwidth), then the one
  whose links come first in the fleet file. Fewest hops first because every hop adds
  its latency and is another operator's link to share; widest second because the
  bottleneck is what a single transfer can get. The search is Dijkstra's over the
  label (hops, -bottleneck), which is monotone along a path (hops only grow, the
  bottleneck only shrinks), so it is exact.
* **The rate** of each transfer in flight (:func:`max_min_rates`): max-min fair sharing
  by progressive filling (Bertsekas & Gallager, *Data Networks*, 2nd ed., 1992, §6.5.2):
  every transfer's rate grows at the same pace; when a link is full, the transfers on it
  are frozen at their share and the rest keep growing. So two transfers alone on a link
  get half of it each, and a transfer held back by a narrower link elsewhere leaves what
  it cannot use to the others on its wider links. This is the allocation TCP-like
  congestion control approaches on long transfers; it ignores slow start and loss.

:class:`Transfers` keeps the transfers in flight: bytes left, their rates (recomputed
whenever one starts or ends, the only times the allocation changes), the bytes each link
has carried, and when the next transfer completes. It also keeps *steady flows* (a
cross-site gang's all-reduce, :mod:`aifactory.twin.spans`): no size, a demand in bytes/s;
in the fair share a flow stops growing at its demand (progressive filling with demands,
the same reference), so copies get what the flows leave, and a flow gets less than its
demand only where its fair share is less. The twin turns that time into an event
(``Transfers.epoch`` tells a stale one from a live one).

Units: bytes, seconds, and link bandwidths in Gbit/s as the fleet file gives them
(1 Gbit/s = 1.25e8 bytes/s).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from aifactory.fleet.spec import Fleet

BYTES_PER_GBIT: Final = 1e9 / 8.0
INF: Final = float("inf")


@dataclass(frozen=True, slots=True)
class Hop:
    """One link of the network: its ends (site indices), bandwidth and latency."""

    a: int
    b: int
    bytes_per_s: float
    latency_s: float


class Network:
    """Sites joined by links (both directions share one link's bandwidth, as a full-duplex
    link's one direction would if transfers ran one way: an assumption that errs on the
    side of contention)."""

    __slots__ = ("_adj", "_paths", "hops", "names", "site_index")

    def __init__(self, sites: Sequence[str], links: Iterable[tuple[str, str, float, float]]):
        """``links``: (site a, site b, Gbit/s, one-way latency in ms), in file order."""
        self.names = tuple(sites)
        self.site_index = {name: i for i, name in enumerate(self.names)}
        self.hops: list[Hop] = []
        self._adj: list[list[tuple[int, int]]] = [[] for _ in self.names]  # (link, other end)
        for a, b, gbps, latency_ms in links:
            ia, ib = self.site_index[a], self.site_index[b]
            k = len(self.hops)
            self.hops.append(Hop(ia, ib, gbps * BYTES_PER_GBIT, latency_ms / 1000.0))
            self._adj[ia].append((k, ib))
            self._adj[ib].append((k, ia))
        self._paths: dict[tuple[int, int], tuple[int, ...] | None] = {}

    @classmethod
    def of_fleet(cls, fleet: Fleet) -> Network:
        """The network of a fleet's sites and links."""
        rows = [(x.a, x.b, x.gbps, x.latency_ms) for x in fleet.links]
        return cls([s.name for s in fleet.sites], rows)

    def path(self, src: int, dst: int) -> tuple[int, ...] | None:
        """Link indices from site ``src`` to ``dst`` (see the module's doc for which
        path); () for the same site, None when no path joins them. Cached."""
        key = (src, dst)
        if key in self._paths:
            return self._paths[key]
        found = self._search(src, dst)
        self._paths[key] = found
        return found

    def _search(self, src: int, dst: int) -> tuple[int, ...] | None:
        if src == dst:
            return ()
        # Label: (hops, -bottleneck, the link indices so far): smaller is better.
        best: dict[int, tuple[int, float, tuple[int, ...]]] = {src: (0, -INF, ())}
        heap: list[tuple[int, float, tuple[int, ...], int]] = [(0, -INF, (), src)]
        done: set[int] = set()
        while heap:
            hops, neg_width, links, site = heapq.heappop(heap)
            if site in done:
                continue
            done.add(site)
            if site == dst:
                return links
            for k, other in self._adj[site]:
                if other in done:
                    continue
                label = (hops + 1, max(neg_width, -self.hops[k].bytes_per_s), (*links, k))
                if other not in best or label < best[other]:
                    best[other] = label
                    heapq.heappush(heap, (*label, other))
        return None

    def bottleneck(self, path: Sequence[int]) -> float:
        """The narrowest link's bytes/s on ``path`` (inf for an empty path)."""
        return min((self.hops[k].bytes_per_s for k in path), default=INF)

    def latency_s(self, path: Sequence[int]) -> float:
        """One-way latency of ``path``: the sum of its links'."""
        return sum(self.hops[k].latency_s for k in path)

    def alone_s(self, size_bytes: float, path: Sequence[int]) -> float:
        """Seconds to move ``size_bytes`` over ``path`` with no other transfer on it: its
        bottleneck's rate, plus the path's latency once."""
        if not path:
            return 0.0
        return size_bytes / self.bottleneck(path) + self.latency_s(path)


def max_min_rates(
    paths: Sequence[Sequence[int]],
    capacity: Sequence[float],
    demands: Sequence[float] | None = None,
) -> list[float]:
    """Max-min fair rates of transfers over ``paths`` (link indices) on links of
    ``capacity`` (bytes/s), by progressive filling. A transfer with an empty path gets
    inf (nothing limits it). ``demands`` (bytes/s, inf: none) caps what a transfer wants:
    it stops growing at its demand, leaving the rest to the others (a steady flow)."""
    n = len(paths)
    capped = sorted((d, i) for i, d in enumerate(demands or ()) if d < INF and paths[i])
    next_cap = 0
    rates = [INF] * n
    left = list(capacity)
    users: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        for k in path:
            users.setdefault(k, []).append(i)
    frozen = [not path for path in paths]
    active = {k: len(v) for k, v in users.items()}
    while active:
        # The link that fills first: the least capacity left per unfrozen transfer on it
        # (ties: the lowest link index, so the result does not depend on dict order).
        link = min(active, key=lambda k: (left[k] / active[k], k))
        share = left[link] / active[link]
        while next_cap < len(capped) and frozen[capped[next_cap][1]]:
            next_cap += 1
        if next_cap < len(capped) and capped[next_cap][0] <= share:
            # A flow reaches its demand before any link fills: it is frozen there.
            demand, i = capped[next_cap]
            _freeze(i, demand, paths, rates, frozen, left, active)
            continue
        for i in users[link]:
            if not frozen[i]:
                _freeze(i, share, paths, rates, frozen, left, active)
    return rates


def _freeze(
    i: int,
    rate: float,
    paths: Sequence[Sequence[int]],
    rates: list[float],
    frozen: list[bool],
    left: list[float],
    active: dict[int, int],
) -> None:
    """Fix transfer ``i`` at ``rate``: its links lose that much, and one grower each."""
    frozen[i] = True
    rates[i] = rate
    for k in paths[i]:
        left[k] = max(0.0, left[k] - rate)
        active[k] -= 1
        if active[k] == 0:
            del active[k]


class Transfers:
    """Transfers in flight over a :class:`Network`, each known by the caller's key."""

    __slots__ = (
        "_capacity",
        "_flows",
        "_frate",
        "_left",
        "_now",
        "_path",
        "_rate",
        "epoch",
        "link_bytes",
        "net",
    )

    def __init__(self, net: Network, now: float = 0.0) -> None:
        self.net = net
        self._capacity = [h.bytes_per_s for h in net.hops]
        self._now = now
        self._left: dict[object, float] = {}  # bytes still to move, by key
        self._path: dict[object, tuple[int, ...]] = {}
        self._rate: dict[object, float] = {}
        # Steady flows (no size, no end of their own): path and the bytes/s they want.
        self._flows: dict[object, tuple[tuple[int, ...], float]] = {}
        self._frate: dict[object, float] = {}
        self.link_bytes = [0.0] * len(net.hops)  # bytes each link has carried so far
        # Bumps whenever the rates change: a completion predicted under an older epoch is
        # stale (the caller's event for it should be ignored).
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._left)

    def __contains__(self, key: object) -> bool:
        return key in self._left

    def advance(self, now: float) -> None:
        """Move every transfer on at its rate from the last time to ``now``."""
        dt = now - self._now
        if dt < 0:
            msg = f"transfers: time went back ({now} < {self._now})"
            raise ValueError(msg)
        if dt > 0:
            for key, left in self._left.items():
                moved = min(left, self._rate[key] * dt)
                self._left[key] = left - moved
                for k in self._path[key]:
                    self.link_bytes[k] += moved
            for key, (path, _) in self._flows.items():
                for k in path:
                    self.link_bytes[k] += self._frate[key] * dt
        self._now = now

    def start(self, key: object, size_bytes: float, path: tuple[int, ...], now: float) -> None:
        """A transfer of ``size_bytes`` over ``path`` (non-empty) starts at ``now``."""
        if not path:
            msg = "transfers: a transfer needs at least one link"
            raise ValueError(msg)
        if key in self._left:
            msg = f"transfers: {key!r} is already in flight"
            raise ValueError(msg)
        self.advance(now)
        self._left[key] = float(size_bytes)
        self._path[key] = path
        self._share()

    def done(self, now: float) -> list[object]:
        """The transfers complete at ``now`` (in the order they started), removed; rates
        are recomputed when any is."""
        self.advance(now)
        # A transfer is complete when what is left would take under a microsecond (float
        # residue of rate x time), or nothing is left.
        out = [k for k, left in self._left.items() if left <= self._rate[k] * 1e-6]
        for key in out:
            self._drop(key)
        if out:
            self._share()
        return out

    def cancel(self, key: object, now: float) -> None:
        """Stop a transfer before its end (what it moved stays counted on its links)."""
        self.advance(now)
        if key in self._left:
            self._drop(key)
            self._share()

    def _drop(self, key: object) -> None:
        del self._left[key]
        del self._path[key]
        del self._rate[key]

    def add_flow(self, key: object, path: tuple[int, ...], bytes_per_s: float, now: float) -> None:
        """A steady flow over ``path`` (non-empty) wanting ``bytes_per_s`` starts at
        ``now``: it shares the links max-min fairly with the transfers, getting its demand
        or its fair share if that is less, until :meth:`drop_flow`."""
        if not path or key in self._flows:
            msg = f"transfers: flow {key!r} has no link or is already on"
            raise ValueError(msg)
        self.advance(now)
        self._flows[key] = (path, bytes_per_s)
        self._share()

    def drop_flow(self, key: object, now: float) -> None:
        """The steady flow ends at ``now`` (nothing if it is not on)."""
        self.advance(now)
        if self._flows.pop(key, None) is not None:
            del self._frate[key]
            self._share()

    def flow_rate(self, key: object) -> float:
        """Bytes/s the steady flow gets now."""
        return self._frate[key]

    def _share(self) -> None:
        keys = list(self._left)
        flows = list(self._flows)
        paths = [self._path[k] for k in keys] + [self._flows[f][0] for f in flows]
        demands = [INF] * len(keys) + [self._flows[f][1] for f in flows]
        rates = max_min_rates(paths, self._capacity, demands if flows else None)
        self._rate = dict(zip(keys, rates[: len(keys)], strict=True))
        self._frate = dict(zip(flows, rates[len(keys) :], strict=True))
        self.epoch += 1

    def rate(self, key: object) -> float:
        """Bytes/s the transfer gets now."""
        return self._rate[key]

    def left(self, key: object) -> float:
        """Bytes it has still to move (as of the last advance)."""
        return self._left[key]

    def next_done_s(self) -> float | None:
        """When the next transfer completes at today's rates (None: none in flight). The
        path's latency is not added: a staged copy streams, and latency is milliseconds
        against hours of bulk transfer."""
        best: float | None = None
        for key, left in self._left.items():
            t = self._now + left / self._rate[key]
            if best is None or t < best:
                best = t
        return best

    def busy_bytes_per_s(self) -> list[float]:
        """Bytes/s each link carries now (the sum of its transfers' rates)."""
        out = [0.0] * len(self._capacity)
        for key, path in self._path.items():
            for k in path:
                out[k] += self._rate[key]
        for key, (path, _) in self._flows.items():
            for k in path:
                out[k] += self._frate[key]
        return out
