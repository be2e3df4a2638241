"""Gang, topology-aware placement: the smallest level that holds the whole job.

Levels, tried in order: one node, one NVLink domain, one pod, one site, and (only for
jobs that allow it) several sites. Within a level the candidate with the least
leftover is chosen (best fit), which keeps large free blocks intact for large jobs.
A job bigger than a domain takes whole, fully free domains when it can, so NVL72
racks are not shared between a big gang and small jobs.

Search never mutates state; it returns a plan of (node, GPU count) that the caller
allocates. That lets backfill and preemption ask "would it fit?" without undo.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from aifactory.scheduler.cluster import ClusterState, Slot

Plan = list[tuple[int, int]]


class Level(StrEnum):
    """Topology level a placement stays inside."""

    NODE = "node"
    DOMAIN = "domain"
    POD = "pod"
    SITE = "site"
    CROSS_SITE = "cross-site"


# The levels as constants: compiled, ``Level.NODE`` is an interpreted class-attribute
# lookup on every placement found.
NODE: Final = Level.NODE
DOMAIN: Final = Level.DOMAIN
POD: Final = Level.POD
SITE: Final = Level.SITE
CROSS_SITE: Final = Level.CROSS_SITE


def find_placement(
    cs: ClusterState, gpu_class: int, gpus: int, *, cross_site: bool = False
) -> tuple[Level, Plan] | None:
    """Best placement for a gang of ``gpus`` GPUs of class ``gpu_class``, or None."""
    if cs.class_free[gpu_class] < gpus:
        return None
    nb = cs.node_bucket[gpu_class]
    if gpus < len(nb):
        for free in range(gpus, len(nb)):
            bucket = nb[free]
            if bucket:
                return NODE, [(_pick(bucket), gpus)]
    db = cs.dom_bucket[gpu_class]
    if gpus < len(db) and cs.dom_buckets_kept[gpu_class]:  # (else the node level answered)
        for free in range(gpus, len(db)):
            bucket = db[free]
            if bucket:
                return DOMAIN, _from_domains(cs, [_pick(bucket)], gpus)
    plan = _in_pod(cs, gpu_class, gpus)
    if plan is not None:
        return POD, plan
    plan = _in_site(cs, gpu_class, gpus)
    if plan is not None:
        return SITE, plan
    if cross_site:
        sites = sorted(cs.csite_free[gpu_class].items(), key=lambda kv: (-kv[1], kv[0]))
        plan = []
        need = gpus
        for site, free in sites:
            if need == 0:
                break
            if free == 0:
                continue
            take = min(free, need)
            plan.extend(_from_pods(cs, gpu_class, _pods_in_site(cs, gpu_class, site), take))
            need -= take
        if need == 0:
            return CROSS_SITE, plan
    return None


def _pick(bucket: list[Slot]) -> int:
    """The member of a non-empty bucket to use: the lowest index in a small bucket (a
    stable, readable choice for small fleets and tests), else the last one (O(1))."""
    if len(bucket) >= 8:
        return bucket[-1].index
    best = bucket[0].index
    for slot in bucket:
        best = min(best, slot.index)
    return best


def _in_pod(cs: ClusterState, gpu_class: int, gpus: int) -> Plan | None:
    """Best-fit pod, preferring pods that can give the gang's whole domains free.

    A gang of ``k * domain + r`` GPUs is "clean" in a pod with ``k`` fully free domains:
    its whole-domain part keeps NVLink to itself and the remainder ``r`` goes to the
    best-fitting partial domain. Among clean pods (else among all) least leftover wins.
    """
    whole = gpus // cs.dom_size[gpu_class]
    clean: tuple[int, int] | None = None  # (free, pod) with enough whole domains
    loose: tuple[int, int] | None = None  # (free, pod) with enough GPUs only
    for pod, free in cs.cpod_free[gpu_class].items():
        if free < gpus:
            continue
        full = len(cs.cpod_full[gpu_class][pod])
        key = (free, pod)
        if full >= whole:
            if clean is None or key < clean:
                clean = key
        elif loose is None or key < loose:
            loose = key
    chosen = clean or loose
    if chosen is None:
        return None
    return _from_pods(cs, gpu_class, [chosen[1]], gpus)


def _in_site(cs: ClusterState, gpu_class: int, gpus: int) -> Plan | None:
    """Best-fit site, spreading over its pods with the most free GPUs first."""
    best: tuple[int, int] | None = None
    for site, free in cs.csite_free[gpu_class].items():
        if free >= gpus and (best is None or (free, site) < best):
            best = (free, site)
    if best is None:
        return None
    return _from_pods(cs, gpu_class, _pods_in_site(cs, gpu_class, best[1]), gpus)


def _pods_in_site(cs: ClusterState, gpu_class: int, site: int) -> list[int]:
    pods = [p for p in cs.class_pods[gpu_class] if cs.pod_site[p] == site]
    pods.sort(key=lambda p: (-cs.cpod_free[gpu_class][p], p))
    return pods


def _from_pods(cs: ClusterState, gpu_class: int, pods: list[int], gpus: int) -> Plan:
    """Take ``gpus`` from pods in order: whole free domains first, then the fullest partial ones."""
    plan: Plan = []
    need = gpus
    for pod in pods:
        if need == 0:
            break
        full = sorted(cs.cpod_full[gpu_class][pod])
        partial = [d for d in cs.cpod_doms[gpu_class][pod] if 0 < cs.dom_free[d] < cs.dom_cap[d]]
        # Remainder smaller than a domain: best-fit partial domain first keeps whole ones whole.
        doms: list[int] = []
        budget = min(need, cs.cpod_free[gpu_class][pod])
        for d in full:
            if budget >= cs.dom_cap[d]:
                doms.append(d)
                budget -= cs.dom_cap[d]
        if budget:
            fits = [d for d in partial if cs.dom_free[d] >= budget]
            if fits:
                doms.append(min(fits, key=lambda d: (cs.dom_free[d], d)))
                budget = 0
            else:
                spare = [d for d in full if d not in doms]
                for d in sorted(partial, key=lambda d: (-cs.dom_free[d], d)) + spare:
                    if budget == 0:
                        break
                    doms.append(d)
                    budget -= min(budget, cs.dom_free[d])
        take = min(need, cs.cpod_free[gpu_class][pod])
        plan.extend(_from_domains(cs, doms, take))
        need -= take
    return plan


def _from_domains(cs: ClusterState, doms: list[int], gpus: int) -> Plan:
    """Take ``gpus`` from domains in order, fullest-free nodes first inside each domain."""
    plan: Plan = []
    need = gpus
    node_free = cs.node_free
    for d in doms:
        if need == 0:
            break
        first = cs.dom_first[d]
        nodes = [n for n in range(first, first + cs.dom_nodes[d]) if node_free[n]]
        if len(nodes) > 1:
            # Exact fit for the remainder first, then most free: fewer nodes touched.
            nodes.sort(key=lambda n: (-node_free[n], n))
        for n in nodes:
            if need == 0:
                break
            take = min(need, node_free[n])
            plan.append((n, take))
            need -= take
    if need:
        msg = f"placement accounting error: {need} GPUs short"
        raise AssertionError(msg)
    return plan
