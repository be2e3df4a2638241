"""Owners run on their own hardware and lend it by name (issue #17 §1).

Hand cases on tiny fleets where two or three owners paid for GPUs of one class: a job
runs on its tenant's own hardware while that has room, borrows a named lender's idle GPUs
(the most idle lender first) only beyond that, and a lender that takes its quota back
evicts borrowers from exactly its own hardware (or waits, with ``reclaim_lent: false``).
A property test runs random multi-owner fleets through the checked twin: after every
event each job runs on its scheduling class's owner's hardware and the quota rules,
recomputed from the spec with the owner rules, hold.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from librt.vecs import vec
from mypy_extensions import i64

from aifactory.fleet import Topology, compile_topology, load_fleet
from aifactory.scheduler.config import SchedulerConfig
from aifactory.scheduler.owners import home_then_most_idle, sched_classes
from aifactory.scheduler.quota import QuotaCell
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.simulator import TwinConfig
from aifactory.workload.job import Job, JobState
from builders import check_invariants, checked_simulation, hgx, make_fleet, make_job, tenant


def two_owners(
    a: int = 2,
    b: int = 2,
    *,
    cohort: str | None = "c",
    b_quota: dict[str, Any] | None = None,
    c: int = 0,
) -> Topology:
    """Owners a and b (and c with ``c`` servers) each paid for HGX H100 servers (8 GPUs each)
    at one site; each one's nominal quota is its own hardware."""
    groups = [hgx(a, owner="a"), hgx(b, owner="b")]
    tenants = [
        tenant("a", {"h100": 8 * a}, cohort=cohort),
        tenant("b", {"h100": b_quota or 8 * b}, cohort=cohort),
    ]
    if c:
        groups.append(hgx(c, owner="c"))
        tenants.append(tenant("c", {"h100": 8 * c}, cohort=cohort))
    return compile_topology(make_fleet([[groups]], tenants))


def owner_of(sched: Scheduler, job: Job) -> set[str]:
    """The owners of the domains a running job holds."""
    topo = sched.topo
    doms = {sched.cs.node_dom[node] for node, _mask in job.placement}
    return {topo.owners[int(topo.domain_owner[d])] for d in doms}


def start(sched: Scheduler, jobs: list[Job], now: float = 0.0) -> None:
    for job in jobs:
        sched.submit(job, now)
    sched.schedule(now)
    check_invariants(sched)


def test_a_class_of_two_owners_is_scheduled_as_one_class_per_owner() -> None:
    sc = sched_classes(two_owners())
    assert sc.topo.classes == ("h100@a", "h100@b")
    assert sc.of_flavor == ((0, 1),)
    assert sc.home[("a", 0)] == "a"
    assert sc.home[("b", 0)] == "b"
    sched = Scheduler(two_owners())
    a = sched.quota.index["a"]
    assert [cell.nominal for cell in sched.quota.cells[a]] == [16, 0]
    # without the switch, one class as before
    plain = Scheduler(two_owners(), SchedulerConfig(owner_hardware=False))
    assert plain.sclasses.topo.classes == ("h100",)


def test_a_job_runs_on_its_owners_hardware_even_where_a_lender_is_more_idle() -> None:
    sched = Scheduler(two_owners(a=1, b=3))
    job = make_job("j", "a", gpus=8)
    start(sched, [job])
    assert job.state is JobState.RUNNING
    assert owner_of(sched, job) == {"a"}
    assert job.hardware_owner == "a"
    assert job.placed_class == "h100"  # the fleet's class, not the scheduling class


def test_beyond_its_own_hardware_a_tenant_borrows_a_named_lender_and_is_placed_there() -> None:
    sched = Scheduler(two_owners(a=1, b=2))
    own, borrowed = make_job("own", "a", gpus=8), make_job("more", "a", gpus=8)
    start(sched, [own, borrowed])
    assert owner_of(sched, own) == {"a"}
    assert owner_of(sched, borrowed) == {"b"}
    assert borrowed.hardware_owner == "b"
    rows = {(r["tenant"], r["hardware_owner"]): r for r in sched.quota_table()}
    assert rows["a", "b"]["borrowed"] == 8
    assert rows["a", "a"]["used"] == 8
    sched.finish(own, 100.0)
    sched.finish(borrowed, 50.0)
    served = sched.served_by_owner(100.0)
    assert served["a"] == {"a": 800.0, "b": 400.0}


def test_the_most_idle_lender_lends_first() -> None:
    # a's own server is busy; b has 1 server, c has 3: the borrowed job goes to c
    sched = Scheduler(two_owners(a=1, b=1, c=3))
    own, more = make_job("own", "a", gpus=8), make_job("more", "a", gpus=8)
    start(sched, [own, more])
    assert owner_of(sched, more) == {"c"}


def test_without_a_cohort_a_tenant_never_runs_on_anothers_idle_hardware() -> None:
    sched = Scheduler(two_owners(a=1, b=3, cohort=None))
    own, more = make_job("own", "a", gpus=8), make_job("more", "a", gpus=8)
    start(sched, [own, more])
    assert owner_of(sched, own) == {"a"}
    assert more.state is JobState.PENDING
    assert sched.pending_reason(more) == "quota"


def test_a_borrowing_limit_caps_the_sum_over_all_lenders() -> None:
    """a (one server, borrowing limit 8) could take 8 GPUs of b's idle server and 8 of c's
    if the limit held per lender; it is one figure for the class (Kueue's borrowingLimit),
    so its third job waits for quota while b's and c's hardware stand half idle."""
    topo = compile_topology(
        make_fleet(
            [[[hgx(1, owner="a"), hgx(1, owner="b"), hgx(1, owner="c")]]],
            [
                tenant("a", {"h100": {"nominal": 8, "borrowing_limit": 8}}, cohort="k"),
                tenant("b", {"h100": 8}, cohort="k"),
                tenant("c", {"h100": 8}, cohort="k"),
            ],
        )
    )
    sched = Scheduler(topo)
    jobs = [make_job(f"a{i}", "a", gpus=4) for i in range(5)]
    start(sched, jobs)
    running = [j for j in jobs if j.state is JobState.RUNNING]
    assert len(running) == 4  # 8 own + 8 borrowed, wherever they are placed
    waiting = [j for j in jobs if j.state is JobState.PENDING]
    assert [sched.pending_reason(j) for j in waiting] == ["quota"]
    away = [j for j in running if owner_of(sched, j) != {"a"}]
    assert sum(j.gpus for j in away) == 8
    book = sched.quota
    assert book.borrowing[book.index["a"]] == [8]


def test_a_lender_reclaims_exactly_its_own_hardware() -> None:
    sched = Scheduler(two_owners(a=1, b=1, c=1))
    own = make_job("own", "a", gpus=8)
    on_b = make_job("on-b", "a", gpus=8)
    on_c = make_job("on-c", "a", gpus=8)
    start(sched, [own, on_b, on_c])
    by_owner = {next(iter(owner_of(sched, j))): j for j in (own, on_b, on_c)}
    assert set(by_owner) == {"a", "b", "c"}
    back = make_job("b-back", "b", gpus=8)
    sched.submit(back, 10.0)
    res = sched.schedule(10.0)
    check_invariants(sched)
    assert res.preempted == [by_owner["b"]]  # only the job on b's servers
    assert owner_of(sched, back) == {"b"}
    assert by_owner["c"].state is JobState.RUNNING
    assert by_owner["a"].state is JobState.RUNNING


def test_a_lender_that_does_not_reclaim_waits_for_its_borrowers() -> None:
    sched = Scheduler(two_owners(a=1, b=1, b_quota={"nominal": 8, "reclaim_lent": False}))
    own, on_b = make_job("own", "a", gpus=8, run=100.0), make_job("on-b", "a", gpus=8, run=50.0)
    start(sched, [own, on_b])
    assert owner_of(sched, on_b) == {"b"}
    back = make_job("b-back", "b", gpus=8)
    sched.submit(back, 10.0)
    res = sched.schedule(10.0)
    assert res.preempted == []
    assert back.state is JobState.PENDING
    sched.finish(on_b, 50.0)
    sched.schedule(50.0)
    check_invariants(sched)
    assert owner_of(sched, back) == {"b"}


def test_a_consortium_runs_on_its_platforms_hardware() -> None:
    platform = tenant("gov", cohort="c")
    platform["children"] = [tenant("c1", {"h100": 8}), tenant("c2", {"h100": 8})]
    fleet = make_fleet(
        [[[hgx(2, owner="gov"), hgx(2, owner="priv")]]],
        [platform, tenant("priv", {"h100": 16}, cohort="c")],
    )
    sched = Scheduler(compile_topology(fleet))
    jobs = [make_job(f"c1-{i}", "c1", gpus=8) for i in range(2)]
    start(sched, jobs)
    assert owner_of(sched, jobs[0]) == {"gov"}
    # c1's second job borrows: its sibling's idle quota on the platform comes first
    # (the platform's hardware is c1's home), the private owner's only beyond it
    assert owner_of(sched, jobs[1]) == {"gov"}
    third = make_job("c1-2", "c1", gpus=8)
    start(sched, [third], 1.0)
    assert owner_of(sched, third) == {"priv"}
    assert sched.served_by_owner(2.0)["c1"] == {"gov": 32.0, "priv": 8.0}


def test_a_quota_no_owner_on_its_path_backs_leaves_the_class_whole() -> None:
    fleet = make_fleet(
        [[[hgx(1, owner="a"), hgx(1, owner="b")]]],
        [tenant("a", {"h100": 8}), tenant("b"), tenant("x", {"h100": 8})],
    )
    sc = sched_classes(compile_topology(fleet))
    assert not sc.split
    assert sc.topo.classes == ("h100",)


# ------------------------------------------------------------------ property
@st.composite
def owner_fleets(draw: st.DrawFn) -> Topology:
    owners = ["o0", "o1", "o2"][: draw(st.integers(2, 3))]
    sites = []
    for s in range(draw(st.integers(1, 2))):
        # (the first site has the first two owners' servers: the class is theirs jointly)
        groups = [
            hgx(draw(st.integers(1, 2)), owner=o)
            for i, o in enumerate(owners)
            if (s == 0 and i < 2) or draw(st.booleans())
        ]
        sites.append([groups or [hgx(1, owner=owners[0])]])
    cap = dict.fromkeys(owners, 0)
    for pods in sites:
        for groups in pods:
            for g in groups:
                cap[g["owner"]] += 8 * g["domains"]
    tenants = []
    for o in owners:
        q: dict[str, Any] = {"nominal": cap[o]}
        if draw(st.booleans()):
            q["lending_limit"] = draw(st.integers(0, cap[o]))
        if draw(st.booleans()):
            q["borrowing_limit"] = draw(st.integers(0, 16))
        if not draw(st.integers(0, 3)):
            q["reclaim_lent"] = False
        cohort = "c" if draw(st.integers(0, 3)) else None
        t = tenant(o, {"h100": q} if cap[o] else None, cohort=cohort)
        if cap[o] and draw(st.booleans()):  # a platform: its children share its hardware
            half = cap[o] // 2
            t["quotas"] = []
            t["children"] = [tenant(f"{o}-p0", {"h100": half}), tenant(f"{o}-p1", {"h100": half})]
        tenants.append(t)
    return compile_topology(make_fleet(sites, tenants))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(owner_fleets(), st.data())
def test_every_job_runs_on_its_classs_owner_and_quotas_hold(topo: Topology, data: Any) -> None:
    leaves = [t.name for t, _, _ in topo.fleet.iter_tenants() if not t.children]
    jobs = [
        Job(
            f"j{i}",
            data.draw(st.sampled_from(leaves)),
            data.draw(st.floats(0.0, 100.0)),
            data.draw(st.sampled_from([1, 2, 4, 8, 8, 16])),
            data.draw(st.floats(1.0, 300.0)),
            priority=data.draw(st.sampled_from([0, 0, 100])),
            checkpoint_s=data.draw(st.sampled_from([None, 30.0])),
        )
        for i in range(data.draw(st.integers(1, 40)))
    ]
    cfg = SchedulerConfig(policy=data.draw(st.sampled_from(["fifo", "las", "fair"])))
    result, checks = checked_simulation(topo, jobs, cfg, TwinConfig(seed=0))
    assert checks >= result.events  # every invariant (owners included) held at every event
    sched = result.scheduler
    served = sched.served_by_owner(result.end_s)
    for job in result.jobs:
        if job.state is JobState.COMPLETED:
            assert job.hardware_owner, job
    event(f"split: {sched.sclasses.split}")
    away = any(owner != sched.home_owner(t) for t, row in served.items() for owner in row)
    event(f"work on a lender's hardware: {away}")
    event(f"preemptions: {sched.preemptions > 0}")
    total = sum(v for row in served.values() for v in row.values())
    attained = sum(j.attained for j in result.jobs)
    assert abs(total - attained) < 1e-6 * max(1.0, attained)


@st.composite
def lender_fleets(draw: st.DrawFn) -> Topology:
    """Three or four owners of one class at one site, every quota with a borrowing limit
    (a platform's children too, and the platform itself when it declares a quota), so a
    borrower often has two or more lenders to spread its borrowing over."""
    owners = [f"o{i}" for i in range(draw(st.integers(3, 4)))]
    groups = [hgx(draw(st.integers(1, 2)), owner=o) for o in owners]
    tenants = []
    for o, g in zip(owners, groups, strict=True):
        cap = 8 * g["domains"]
        q: dict[str, Any] = {"nominal": cap, "borrowing_limit": draw(st.integers(0, 24))}
        t = tenant(o, {"h100": q}, cohort="c")
        if draw(st.booleans()):
            half = cap // 2
            kids = [
                tenant(
                    f"{o}-p{i}",
                    {"h100": {"nominal": half, "borrowing_limit": draw(st.integers(0, 24))}},
                )
                for i in range(2)
            ]
            t["children"] = kids
            if draw(st.booleans()):
                t["quotas"] = []  # a grouping: its children's sums, no limit of its own
        tenants.append(t)
    return compile_topology(make_fleet([[groups]], tenants))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(lender_fleets(), st.data())
def test_no_node_borrows_more_than_its_limit_summed_over_its_lenders(
    topo: Topology, data: Any
) -> None:
    """Random jobs on multi-lender fleets through the checked twin: after every event, what
    each tenant and each node of a tree holds above nominal, summed over the owners'
    hardware, is within its borrowing limit (recomputed from the spec by
    builders.check_quota), and the book's running sums agree with a recount."""
    leaves = [t.name for t, _, _ in topo.fleet.iter_tenants() if not t.children]
    jobs = [
        Job(
            f"j{i}",
            data.draw(st.sampled_from(leaves)),
            data.draw(st.floats(0.0, 100.0)),
            data.draw(st.sampled_from([1, 2, 4, 8, 8, 16])),
            data.draw(st.floats(1.0, 300.0)),
            priority=data.draw(st.sampled_from([0, 0, 100])),
        )
        for i in range(data.draw(st.integers(1, 40)))
    ]
    result, checks = checked_simulation(topo, jobs, SchedulerConfig(), TwinConfig(seed=0))
    assert checks >= result.events
    book = result.scheduler.quota
    assert all(v == 0 for row in book.borrowing for v in row)  # everything ended: all back
    away = any(
        job.hardware_owner and job.hardware_owner != result.scheduler.home_owner(job.tenant)
        for job in result.jobs
    )
    event(f"borrowed from another owner: {away}")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_owner_order_packed_into_ints_is_the_order_of_its_key_tuples(data: Any) -> None:
    """home_then_most_idle packs each class's key (away, value, class) into one int: the
    order is the key tuples' sorted order, quotas beyond the packed range included."""
    n = data.draw(st.integers(1, 12))
    big = st.integers(-(1 << 45), 1 << 45)
    nominal = data.draw(
        st.lists(st.one_of(st.integers(0, 64), big.map(abs)), min_size=n, max_size=n)
    )
    used = data.draw(st.lists(st.integers(0, 64), min_size=n, max_size=n))
    free = vec[i64](data.draw(st.lists(st.integers(0, 1 << 25), min_size=n, max_size=n)))
    cells = [QuotaCell(nom, nom, 0, used=u) for nom, u in zip(nominal, used, strict=True)]
    classes = tuple(data.draw(st.permutations(range(n))))
    keys = {
        c: (0, cells[c].used - cells[c].nominal, c) if cells[c].nominal > 0 else (1, -free[c], c)
        for c in classes
    }
    assert home_then_most_idle(classes, cells, free) == tuple(sorted(classes, key=keys.__getitem__))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_fits_skips_the_sum_over_lenders_only_where_no_limit_could_refuse(data: Any) -> None:
    """On korea-2025 with owner classes, a book that skips the sum over lenders where no
    level of a tenant's path has a borrowing limit (QuotaBook.limited) answers every fit
    as one that always checks it, over random charges."""
    topo = compile_topology(load_fleet("korea-2025"))
    fast = Scheduler(topo).quota
    full = Scheduler(topo).quota
    full.limited = [[full.split[c] for c in range(len(row))] for row in full.cells]
    skips = [
        (t, c)
        for t, row in enumerate(fast.limited)
        for c, lim in enumerate(row)
        if fast.split[c] and not lim
    ]
    assert skips  # (some tenants' fits on split classes skip the sum: research, lg-foundation)
    leaves = [t for t in range(len(fast.tenants)) if fast.is_leaf(t)]
    n_classes = len(fast.split)
    for _ in range(data.draw(st.integers(1, 60))):
        t = data.draw(st.sampled_from(leaves))
        c = data.draw(st.integers(0, n_classes - 1))
        gpus = data.draw(st.sampled_from([1, 8, 72, 1000, 9000, 30000]))
        got = fast.fits(t, c, gpus)
        assert got == full.fits(t, c, gpus), (fast.tenants[t], c, gpus)
        if got:
            fast.add(t, c, gpus)
            full.add(t, c, gpus)
