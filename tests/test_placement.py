"""Gang, topology-aware placement (issue #3 §3, §6), on ClusterState directly.

Levels: node -> NVLink domain -> pod -> site (-> cross-site only when allowed). Best fit
within a level (least leftover); a job bigger than a domain takes whole domains when it
can; fragmentation = free GPUs stranded in partly used domains. HGX H100: a domain is one
8-GPU node. GB200 NVL72: a domain is 18 nodes x 4 GPUs.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.fleet import Topology, compile_topology
from aifactory.scheduler.cluster import ClusterState
from aifactory.scheduler.placement import Level, find_placement
from aifactory.scheduler.scheduler import Scheduler
from builders import hgx, hgx_topo, make_fleet, make_job, nvl, tenant


def nvl_topo(domains: int = 1, pods: int = 1) -> Topology:
    return compile_topology(
        make_fleet(
            [[[nvl(domains)] for _ in range(pods)]], [tenant("a", {"gb200": 72 * domains * pods})]
        )
    )


def domains_of(cs: ClusterState, plan: list[tuple[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for node, gpus in plan:
        d = cs.node_dom[node]
        out[d] = out.get(d, 0) + gpus
    return out


# ----------------------------------------------------------------- ClusterState bookkeeping
def test_allocate_release_round_trip_and_recount() -> None:
    cs = ClusterState(nvl_topo(2))
    assert list(cs.class_free) == [144]
    placement = cs.allocate([(0, 3), (1, 4), (20, 1)])
    assert cs.gpus_of(placement) == 8
    assert placement == [(0, 0b111), (1, 0b1111), (20, 0b1)]
    assert list(cs.class_free) == [136]
    assert list(cs.dom_free) == [65, 71]
    # domain 0 holds 65 free, domain 1 holds 71: both partly used, all free GPUs stranded
    assert cs.stranded == 65 + 71
    cs.check()
    cs.release(placement)
    assert list(cs.class_free) == [144]
    assert cs.stranded == 0
    cs.check()


def test_take_gives_lowest_free_indices_and_reserve_exact_refuses_busy_gpus() -> None:
    cs = ClusterState(hgx_topo(1))
    assert cs.take(0, 2) == 0b11
    assert cs.take(0, 1) == 0b100
    with pytest.raises(ValueError, match="not all free"):
        cs.reserve_exact([(0, 0b110)])
    cs.reserve_exact([(0, 0b11000)])
    assert list(cs.node_free) == [3]
    cs.check()


# ----------------------------------------------------------------- smallest level
def test_node_level_best_fit_least_leftover() -> None:
    """Two HGX nodes, node 0 has 3 free, node 1 has 8: a 2-GPU job goes to node 0."""
    cs = ClusterState(hgx_topo(2))
    cs.take(0, 5)
    level, plan = find_placement(cs, 0, 2) or (None, None)
    assert level == Level.NODE
    assert plan == [(0, 2)]
    # 4 GPUs do not fit node 0 (3 free): node 1
    assert find_placement(cs, 0, 4) == (Level.NODE, [(1, 4)])


def test_job_that_fits_a_node_never_spans_nodes() -> None:
    """On an NVL72 rack, a 4-GPU job takes one whole tray, not 2+2 across trays."""
    cs = ClusterState(nvl_topo(1))
    cs.take(0, 2)  # tray 0 has 2 free; every other tray has 4
    level, plan = find_placement(cs, 0, 4) or (None, [])
    # Any whole free tray will do (ties among equally free trays are not ordered).
    assert level == Level.NODE
    assert len(plan) == 1
    assert plan[0][0] != 0
    assert plan[0][1] == 4
    assert find_placement(cs, 0, 2) == (Level.NODE, [(0, 2)])


def test_domain_level_best_fit_and_fewest_nodes() -> None:
    """Domain 0 has 10 free (trays 15: 2, 16: 4, 17: 4), domain 1 all 72: an 8-GPU job goes to
    domain 0 (least leftover) on its two fully free trays."""
    cs = ClusterState(nvl_topo(2))
    for n in range(15):
        cs.take(n, 4)
    cs.take(15, 2)
    assert cs.stranded == 10
    level, plan = find_placement(cs, 0, 8) or (None, [])
    assert level == Level.DOMAIN
    assert sorted(plan) == [(16, 4), (17, 4)]
    # 11 GPUs do not fit domain 0 any more: domain 1
    level, plan = find_placement(cs, 0, 11) or (None, [])
    assert level == Level.DOMAIN
    assert set(domains_of(cs, plan)) == {1}


def test_whole_domain_job_takes_a_fully_free_domain() -> None:
    cs = ClusterState(nvl_topo(2))
    cs.take(0, 1)  # domain 0 is no longer whole
    level, plan = find_placement(cs, 0, 72) or (None, [])
    assert level == Level.DOMAIN
    assert domains_of(cs, plan) == {1: 72}


def test_job_bigger_than_a_domain_takes_whole_domains() -> None:
    """Three racks, rack 0 has one GPU used: a 144-GPU job takes racks 1 and 2 whole."""
    cs = ClusterState(nvl_topo(3))
    cs.take(0, 1)
    level, plan = find_placement(cs, 0, 144) or (None, [])
    assert level == Level.POD
    assert domains_of(cs, plan) == {1: 72, 2: 72}


def test_remainder_of_a_multi_domain_job_keeps_other_whole_domains_whole() -> None:
    """100 GPUs in a pod of three racks, rack 0 partly used: one whole rack plus 28 from the
    partial rack 0 (best fit), so rack 2 stays whole for the next big job."""
    cs = ClusterState(nvl_topo(3))
    cs.take(0, 1)
    level, plan = find_placement(cs, 0, 100) or (None, [])
    assert level == Level.POD
    by_dom = domains_of(cs, plan)
    assert sum(by_dom.values()) == 100
    assert by_dom[0] == 28
    assert sorted(v for d, v in by_dom.items() if d != 0) == [72]


def two_pod_hgx(nodes_per_pod: int = 2, sites: int = 1) -> Topology:
    per_site = [[hgx(nodes_per_pod)], [hgx(nodes_per_pod)]]
    total = 8 * nodes_per_pod * 2 * sites
    return compile_topology(make_fleet([per_site] * sites, [tenant("a", {"h100": total})]))


def test_pod_level_best_fit_least_leftover() -> None:
    """Pod 0: 2 whole servers (16 free). Pod 1: one whole server + one with 4 free (12). A 10-GPU
    job fits both; best fit (least leftover) is pod 1: 8 on its whole server, 2 on the partial
    one. Taking pod 0 instead would break a whole server and strand 10 GPUs instead of 2."""
    cs = ClusterState(two_pod_hgx())
    cs.take(2, 4)  # pod 1 = nodes 2, 3
    level, plan = find_placement(cs, 0, 10) or (None, [])
    assert level == Level.POD
    assert {cs.dom_pod[cs.node_dom[n]] for n, _ in plan} == {1}


def test_pod_level_prefers_pod_with_whole_domains_when_leftover_ties() -> None:
    cs = ClusterState(two_pod_hgx())
    level, plan = find_placement(cs, 0, 16) or (None, [])
    assert level == Level.POD
    assert sorted(plan) == [(0, 8), (1, 8)]


def test_site_level_spans_pods_of_one_site() -> None:
    cs = ClusterState(two_pod_hgx())
    level, plan = find_placement(cs, 0, 24) or (None, [])
    assert level == Level.SITE
    assert sum(g for _, g in plan) == 24
    assert {cs.dom_pod[cs.node_dom[n]] for n, _ in plan} == {0, 1}


def test_never_spans_sites_unless_allowed() -> None:
    """Two sites of 32 GPUs each: a 40-GPU job only fits across sites."""
    cs = ClusterState(two_pod_hgx(sites=2))
    assert find_placement(cs, 0, 32) is not None
    assert find_placement(cs, 0, 40) is None
    level, plan = find_placement(cs, 0, 40, cross_site=True) or (None, [])
    assert level == Level.CROSS_SITE
    assert sum(g for _, g in plan) == 40
    assert {cs.pod_site[cs.dom_pod[cs.node_dom[n]]] for n, _ in plan} == {0, 1}


def test_a_fitting_job_stays_in_one_site_even_when_cross_site_is_allowed() -> None:
    cs = ClusterState(two_pod_hgx(sites=2))
    cs.take(0, 8)
    level, plan = find_placement(cs, 0, 24, cross_site=True) or (None, [])
    assert level == Level.SITE
    assert len({cs.pod_site[cs.dom_pod[cs.node_dom[n]]] for n, _ in plan}) == 1


def test_no_placement_when_not_enough_free() -> None:
    cs = ClusterState(hgx_topo(2))
    cs.take(0, 8)
    cs.take(1, 1)
    assert find_placement(cs, 0, 8) is None
    assert find_placement(cs, 0, 7) == (Level.NODE, [(1, 7)])


def test_classes_are_separate() -> None:
    topo = compile_topology(
        make_fleet([[[hgx(1), nvl(1)]]], [tenant("a", {"h100": 8, "gb200": 72})])
    )
    cs = ClusterState(topo)
    h100 = topo.classes.index("h100")
    gb200 = topo.classes.index("gb200")
    assert find_placement(cs, h100, 9) is None
    level, plan = find_placement(cs, gb200, 9) or (None, [])
    assert level == Level.DOMAIN
    assert all(cs.dom_class[cs.node_dom[n]] == gb200 for n, _ in plan)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 8)), max_size=25))
def test_one_node_domains_are_answered_by_the_node_level(takes: list[tuple[int, int]]) -> None:
    """HGX domains are single nodes, so no domain buckets are kept for their class; the
    node level alone finds a one-node placement whenever any node has room, and the
    domain level is never the answer there. NVL72 racks keep theirs."""
    topo = compile_topology(
        make_fleet([[[hgx(6), nvl(1)]]], [tenant("a", {"h100": 48, "gb200": 72})])
    )
    cs = ClusterState(topo)
    h100 = topo.classes.index("h100")
    assert cs.dom_buckets_kept == [c != h100 for c in range(len(topo.classes))]
    held = []
    for node, count in takes:  # random partial allocations, some released again
        if cs.node_free[node] >= count:
            held.append([(node, cs.take(node, count))])
        if len(held) > 3:
            cs.release(held.pop(0))
        cs.check()
        for gpus in range(1, 17):
            found = find_placement(cs, h100, gpus)
            roomy = [n for n in range(6) if cs.node_free[n] >= gpus]
            if gpus <= 8:
                assert (found is not None and found[0] == Level.NODE) == bool(roomy)
            assert found is None or found[0] != Level.DOMAIN


def _state(cs: ClusterState) -> tuple[object, ...]:
    return (
        cs.node_free,
        cs.node_mask,
        cs.dom_free,
        cs.buckets(),
        cs.cpod_free,
        cs.csite_free,
        cs.cpod_full,
        cs.class_free,
        cs.stranded,
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.tuples(st.integers(0, 8), st.integers(1, 4)))),
        max_size=20,
    )
)
def test_batched_updates_leave_the_state_of_node_by_node_updates(
    steps: list[tuple[bool, list[tuple[int, int]]]],
) -> None:
    """allocate/release update each NVLink domain once per run of its nodes; the state,
    down to the order inside every bucket (which decides later picks), is the one that
    taking and giving node by node leaves."""
    topo = compile_topology(
        make_fleet([[[nvl(3, nodes_per_domain=3)]]], [tenant("a", {"gb200": 36})])
    )
    batched, single = ClusterState(topo), ClusterState(topo)
    held: list[list[tuple[int, int]]] = []
    for release, wanted in steps:
        if release and held:
            placement = held.pop(0)
            batched.release(placement)
            for node, mask in placement:
                single.give(node, mask)
        else:
            plan: list[tuple[int, int]] = []
            free = list(batched.node_free)
            for node, count in wanted:  # a plan: distinct nodes, in domain runs or not
                if all(n != node for n, _ in plan) and free[node] >= count:
                    plan.append((node, count))
            if not plan:
                continue
            placement = batched.allocate(plan)
            assert placement == [(n, single.take(n, k)) for n, k in plan]
            held.append(placement)
        batched.check()
        assert _state(batched) == _state(single)


def test_reserve_exact_refuses_a_placement_without_taking_any_of_it() -> None:
    cs = ClusterState(hgx_topo(2))
    cs.take(1, 8)
    before = _state(cs)
    with pytest.raises(ValueError, match="node 1"):
        cs.reserve_exact([(0, 0b11), (1, 0b1)])  # node 0 is free, node 1 is not
    with pytest.raises(ValueError, match="node 0"):
        cs.reserve_exact([(0, 0b11), (0, 0b10)])  # the same GPU twice
    assert _state(cs) == before


# ----------------------------------------------------------------- through the scheduler
def test_scheduler_runs_a_cross_site_job_only_when_it_allows_it() -> None:
    topo = two_pod_hgx(sites=2)
    sched = Scheduler(topo)
    refused = make_job("big", gpus=40)
    reason = sched.submit(refused, 0.0)
    assert reason is not None
    assert "too big" in reason
    allowed = make_job("big-x", gpus=40, allow_cross_site=True)
    assert sched.submit(allowed, 0.0) is None
    res = sched.schedule(0.0)
    assert res.started == [allowed]
    assert allowed.level == Level.CROSS_SITE.value
    sched.cs.check()


def test_scheduler_records_the_level_of_each_placement() -> None:
    sched = Scheduler(nvl_topo(2))
    jobs = [
        make_job("n", gpus=4),
        make_job("d", gpus=8, submit=1),
        make_job("p", gpus=100, submit=2),
    ]
    levels = {}
    for j in jobs:
        sched.submit(j, j.submit_s)
        sched.schedule(j.submit_s)
        levels[j.id] = j.level
    assert levels == {"n": "node", "d": "domain", "p": "pod"}
    assert sum(sched.cs.gpus_of(j.placement) for j in jobs) == 112
    sched.cs.check()
