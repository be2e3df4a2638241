"""Sites under their power caps: where a gang may start without taking a site's power
over its capacity (issue #18 §1).

Decides whether a placement keeps every site it touches within its cap, and finds one
that does when the plain best fit would not; touches only its own per-site draw, which
:class:`~aifactory.scheduler.running.Running` (the one place charges are made) changes on
every start and stop. A site's cap is its facility power over its PUE: the IT power its
GPUs may draw (``Site.power_mw / Site.pue``). Every GPU draws its model's idle watts
(the catalogue's ``idle_watts``; a GPU out of service too, conservatively); a busy GPU
draws its ``busy_watts``. So a start of ``g`` GPUs of a class adds ``g x (busy - idle)``
watts to each site it lands on, and is refused where that would pass the cap; the job
then waits with reason ``power cap``. The same rule serves the twin and the service.

Only sites whose peak draw (every GPU busy) exceeds their cap are *capped*: elsewhere no
start can pass the cap, so nothing is checked and nothing is counted (exact, not a
heuristic; the bundled korea-2025 sites all have headroom over their peak, and only a
what-if that adds GPUs or lowers caps makes one bind). ``SchedulerConfig.power_cap``
False turns the rule off.
"""

from __future__ import annotations

from aifactory.fleet.topology import Topology
from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.placement import CROSS_SITE, DOMAIN, NODE, Level, Plan, find_placement


class Power:
    """IT power per capped site and the placements that keep it within the cap."""

    __slots__ = ("active", "cap_w", "capped", "cs", "draw_w", "node_site", "refused", "watts")

    def __init__(self, topo: Topology, cs: ClusterState, *, enabled: bool) -> None:
        self.cs = cs
        sites = topo.fleet.sites
        n_sites = len(topo.sites)
        # Extra watts per busy GPU of each (scheduling) class over its idle draw.
        self.watts = [float(m.busy_watts - m.idle_watts) for m in topo.class_model]
        self.cap_w = [s.power_mw * 1e6 / s.pue for s in sites]
        idle = [0.0] * n_sites
        peak = [0.0] * n_sites
        for d in range(topo.n_domains):
            s = int(topo.pod_site[topo.domain_pod[d]])
            model = topo.class_model[int(topo.domain_class[d])]
            gpus = int(topo.domain_gpus[d])
            idle[s] += gpus * model.idle_watts
            peak[s] += gpus * model.busy_watts
        self.capped = [enabled and peak[s] > self.cap_w[s] for s in range(n_sites)]
        self.active = any(self.capped)
        self.draw_w = idle  # the IT draw now (idle of every GPU plus the busy ones' extra)
        self.node_site: list[int] = (
            [cs.pod_site[cs.dom_pod[d]] for d in cs.node_dom] if self.active else []
        )
        self.refused = 0  # starts refused for power (a placement existed)

    def charge(self, gpu_class: int, placement: list[tuple[int, int]], sign: int) -> None:
        """A job of ``gpu_class`` starts (``sign`` 1) or stops (-1) on ``placement``, its
        (node, GPU mask) pairs."""
        w = self.watts[gpu_class] * sign
        node_site = self.node_site
        for node, mask in placement:
            # (spelled out, not +=: compiled, an augmented item assignment is a generic add)
            s = node_site[node]
            self.draw_w[s] = self.draw_w[s] + w * mask.bit_count()

    def fits(self, gpu_class: int, plan: Plan) -> bool:
        """Whether starting ``plan`` keeps every capped site it touches within its cap."""
        w = self.watts[gpu_class]
        extra: dict[int, float] = {}
        for node, gpus in plan:
            s = self.node_site[node]
            if self.capped[s]:
                extra[s] = extra.get(s, 0.0) + w * gpus
        return all(self.draw_w[s] + e <= self.cap_w[s] for s, e in extra.items())

    def room(self, site: int, gpu_class: int) -> int:
        """GPUs of ``gpu_class`` that may still start at ``site`` under its cap."""
        if not self.capped[site]:
            return 1 << 60
        w = self.watts[gpu_class]
        left = self.cap_w[site] - self.draw_w[site]
        return max(0, int(left // w)) if w > 0 else 1 << 60

    def place(
        self, gpu_class: int, gpus: int, *, cross_site: bool, site: int = -1
    ) -> tuple[Level, Plan] | None:
        """The best placement within the caps: the plain best fit if it keeps them, else
        the best fit among the sites with room for the gang; None if there is none (a
        refusal for power is counted in :attr:`refused` when GPUs were there). ``site``
        >= 0: only in that site (a pinned job: the restricted search, which walks the
        class's pods; few jobs are pinned), or, with ``cross_site``, from that site: in
        it if it has room, else all its free GPUs and the rest from other sites
        (:meth:`_span_from`)."""
        if site >= 0:
            here = self.cs.csite_free[gpu_class].get(site, 0)
            if here >= gpus:
                found = self._within_caps(gpu_class, gpus, cross_site=False, only=site)
                if found is not None or not cross_site:
                    return found
            if not cross_site or here <= 0:
                return None
            return self._span_from(gpu_class, gpus, site)
        found = find_placement(self.cs, gpu_class, gpus, cross_site=cross_site)
        if found is None or not self.active or self.fits(gpu_class, found[1]):
            return found
        within = self._within_caps(gpu_class, gpus, cross_site=cross_site)
        if within is None:
            self.refused += 1
        return within

    def _within_caps(
        self, gpu_class: int, gpus: int, *, cross_site: bool, only: int = -1
    ) -> tuple[Level, Plan] | None:
        """Best fit among the sites with room: a node, then a domain, then a pod, then a
        site (as find_placement, restricted); a cross-site gang takes from each site no
        more than its room. Slow (it walks the class's nodes) and taken only when a cap
        binds."""
        cs = self.cs
        ok = {
            s
            for s in cs.csite_free[gpu_class]
            if self.room(s, gpu_class) >= gpus and (only < 0 or s == only)
        }  # sites with room for the whole gang (only ``only`` when given)
        pods = [p for p in cs.class_pods[gpu_class] if cs.pod_site[p] in ok]
        best_node: tuple[int, int] | None = None
        best_dom: tuple[int, int] | None = None
        for p in pods:
            for d in cs.cpod_doms[gpu_class][p]:
                free = cs.dom_free[d]
                if free < gpus:
                    continue
                if best_dom is None or (free, d) < best_dom:
                    best_dom = (free, d)
                first = cs.dom_first[d]
                for n in range(first, first + cs.dom_nodes[d]):
                    nf = cs.node_free[n]
                    if nf >= gpus and (best_node is None or (nf, n) < best_node):
                        best_node = (nf, n)
        if best_node is not None:
            return NODE, [(best_node[1], gpus)]
        if best_dom is not None:
            return DOMAIN, _take(cs, [best_dom[1]], gpus)
        for site in sorted(ok, key=lambda s: (cs.csite_free[gpu_class][s], s)):
            in_site = [p for p in pods if cs.pod_site[p] == site]
            one = [p for p in in_site if cs.cpod_free[gpu_class][p] >= gpus]
            if one:
                pod = min(one, key=lambda p: (cs.cpod_free[gpu_class][p], p))
                return Level.POD, _take_pods(cs, gpu_class, [pod], gpus)
        for site in sorted(ok, key=lambda s: (cs.csite_free[gpu_class][s], s)):
            if cs.csite_free[gpu_class][site] >= gpus:
                in_site = sorted(
                    (p for p in pods if cs.pod_site[p] == site),
                    key=lambda p: (-cs.cpod_free[gpu_class][p], p),
                )
                return Level.SITE, _take_pods(cs, gpu_class, in_site, gpus)
        if not cross_site:
            return None
        site_free = cs.csite_free[gpu_class]
        got = self._gather(gpu_class, gpus, sorted(site_free, key=lambda s: (-site_free[s], s)))
        return None if got is None else (CROSS_SITE, got[0])

    def _span_from(self, gpu_class: int, gpus: int, home: int) -> tuple[Level, Plan] | None:
        """A gang over ``home`` and other sites: as many GPUs at ``home`` as it has free
        (within its cap), then the rest from the other sites, the most free first (as
        the unpinned spanning search); None if they are too few."""
        free = self.cs.csite_free[gpu_class]
        order = [home, *sorted((s for s in free if s != home), key=lambda s: (-free[s], s))]
        got = self._gather(gpu_class, gpus, order)
        if got is None:
            return None
        plan, sites = got
        return (CROSS_SITE if sites > 1 else Level.SITE), plan

    def _gather(self, gpu_class: int, gpus: int, order: list[int]) -> tuple[Plan, int] | None:
        """``gpus`` GPUs taken site by site in ``order``, each site's free GPUs within its
        power room, its fullest pods first: the plan and how many sites it uses, or None
        if the sites have too few."""
        cs = self.cs
        free = cs.csite_free[gpu_class]
        plan: Plan = []
        need = gpus
        sites = 0
        for site in order:
            take = min(free.get(site, 0), need, self.room(site, gpu_class))
            if take <= 0:
                continue
            in_site = sorted(
                (p for p in cs.class_pods[gpu_class] if cs.pod_site[p] == site),
                key=lambda p: (-cs.cpod_free[gpu_class][p], p),
            )
            plan.extend(_take_pods(cs, gpu_class, in_site, take))
            need -= take
            sites += 1
            if need == 0:
                return plan, sites
        return None


def _take(cs: ClusterState, doms: list[int], gpus: int) -> Plan:
    """``gpus`` from the nodes of ``doms``, the fullest-free nodes first."""
    plan: Plan = []
    need = gpus
    for d in doms:
        first = cs.dom_first[d]
        nodes = sorted(
            (n for n in range(first, first + cs.dom_nodes[d]) if cs.node_free[n]),
            key=lambda n: (-cs.node_free[n], n),
        )
        for n in nodes:
            if need == 0:
                break
            take = min(need, cs.node_free[n])
            plan.append((n, take))
            need -= take
    return plan


def _take_pods(cs: ClusterState, gpu_class: int, pods: list[int], gpus: int) -> Plan:
    """``gpus`` from the pods in order, whole free domains first, then the fullest."""
    plan: Plan = []
    need = gpus
    for p in pods:
        if need == 0:
            break
        doms = sorted(
            (d for d in cs.cpod_doms[gpu_class][p] if cs.dom_free[d]),
            key=lambda d: (cs.dom_free[d] != cs.dom_cap[d], -cs.dom_free[d], d),
        )
        take = min(need, cs.cpod_free[gpu_class][p])
        plan.extend(_take(cs, doms, take))
        need -= take
    return plan
