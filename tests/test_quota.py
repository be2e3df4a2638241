"""Quota with Kueue semantics (issue #3 §4): nominal quota per tenant and class; borrow idle
cohort capacity up to the borrowing limit; lend at most the lending limit; borrowed capacity
is reclaimable.

The fleet used here (32 H100 in 4 HGX servers, nominal quotas adding up to 32):

- ``a``: cohort c, nominal 16, lending limit 8 (so 8 are never lent), borrowing limit 4;
- ``b``: cohort c, nominal 8, lends all of it, no borrowing limit;
- ``solo``: no cohort, nominal 8 (can neither borrow nor lend).

Cohort pool = 8 (a's lendable) + 8 (b's) = 16. Ceilings, worked by hand:
a = min(16 + 4, 8 guaranteed + 16 pool) = 20; b = min(8 + inf, 0 + 16) = 16; solo = 8.
"""

from __future__ import annotations

import pytest

from aifactory.fleet import Fleet, Topology, compile_topology
from aifactory.scheduler.quota import QuotaBook
from aifactory.scheduler.scheduler import Scheduler
from builders import hgx, make_fleet, make_job, simulate, tenant


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return make_fleet(
        [[[hgx(4)]]],
        [
            tenant(
                "a", {"h100": {"nominal": 16, "lending_limit": 8, "borrowing_limit": 4}}, cohort="c"
            ),
            tenant("b", {"h100": 8}, cohort="c"),
            tenant("solo", {"h100": 8}),
        ],
    )


@pytest.fixture
def topo(fleet: Fleet) -> Topology:
    return compile_topology(fleet)


@pytest.fixture
def book(fleet: Fleet) -> QuotaBook:
    return QuotaBook(fleet, ("h100",))


# The book indexes tenants in the fleet's order.
A, B, SOLO = 0, 1, 2


def test_tenants_are_indexed_in_fleet_order(book: QuotaBook) -> None:
    assert book.index == {"a": A, "b": B, "solo": SOLO}
    assert [book.cohort_name(t) for t in (A, B, SOLO)] == ["c", "c", None]
    assert book.cohort_members == [[A, B]]


def test_ceilings_worked_by_hand(book: QuotaBook) -> None:
    assert book.cohort_pool == [[16]]
    assert book.ceiling(A, 0) == 20
    assert book.ceiling(B, 0) == 16
    assert book.ceiling(SOLO, 0) == 8


def test_no_cohort_means_held_to_nominal(book: QuotaBook) -> None:
    assert book.fits(SOLO, 0, 8)
    assert not book.fits(SOLO, 0, 9)
    book.add(SOLO, 0, 8)
    assert not book.fits(SOLO, 0, 1)
    assert book.lent(SOLO, 0) == 0


def test_borrowing_limit(book: QuotaBook) -> None:
    assert book.fits(A, 0, 20)
    assert not book.fits(A, 0, 21)  # nominal 16 + borrowing limit 4
    book.add(A, 0, 20)
    assert book.borrowed(A, 0) == 4
    assert not book.fits(A, 0, 1)


def test_lending_limit_keeps_the_guaranteed_part(book: QuotaBook) -> None:
    """a is idle, yet b gets at most a's lendable 8 on top of its own 8."""
    assert book.fits(B, 0, 16)
    assert not book.fits(B, 0, 17)
    book.add(B, 0, 16)
    assert book.borrowed(B, 0) == 8
    assert book.lent(A, 0) == 8
    # a still has its guaranteed 8, and nothing more while b holds the pool
    assert book.fits(A, 0, 8)
    assert not book.fits(A, 0, 9)
    assert book.shortfall(A, 0, 9) == 1  # within a's nominal: reclaim 1 from b
    assert book.shortfall(A, 0, 16) == 8
    assert book.shortfall(A, 0, 17) == -1  # beyond nominal: reclaim cannot help
    assert book.shortfall(B, 0, 1) == -1


def test_usage_refund_restores_the_pool(book: QuotaBook) -> None:
    book.add(B, 0, 16)
    book.add(A, 0, 8)
    assert book.cohort_draw == [[16]]
    book.add(B, 0, -16)
    book.add(A, 0, -8)
    assert book.cohort_draw == [[0]]
    assert book.fits(A, 0, 20)


def test_scheduler_b_borrows_only_the_lendable_part(topo: Topology) -> None:
    """Three 8-GPU jobs of b at t=0 on an otherwise idle fleet: two start (own 8 + a's lendable
    8), the third waits for one of them although a's guaranteed 8 (and solo's 8) are idle."""
    jobs = simulate(topo, [make_job(f"b{i}", "b", 0.0, 8, 100.0) for i in range(3)])
    assert [jobs[f"b{i}"].first_start_s for i in range(3)] == [0.0, 0.0, 100.0]


def test_scheduler_a_borrows_up_to_its_borrowing_limit(topo: Topology) -> None:
    jobs = simulate(topo, [make_job("a20", "a", 0.0, 20, 100.0), make_job("a1", "a", 1.0, 1, 10.0)])
    assert jobs["a20"].first_start_s == 0.0
    assert jobs["a1"].first_start_s == 100.0  # 21 would exceed nominal + borrowing limit


def test_scheduler_solo_cannot_borrow_idle_gpus(topo: Topology) -> None:
    jobs = simulate(topo, [make_job(f"s{i}", "solo", 0.0, 8, 100.0) for i in range(2)])
    assert [jobs["s0"].first_start_s, jobs["s1"].first_start_s] == [0.0, 100.0]


def test_jobs_beyond_the_ceiling_are_rejected_with_the_reason(topo: Topology) -> None:
    sched = Scheduler(topo)
    cases = {
        "a": (21, 20),
        "b": (17, 16),
        "solo": (9, 8),
    }
    for t, (asked, most) in cases.items():
        job = make_job(f"{t}-big", t, 0.0, asked)
        reason = sched.submit(job, 0.0)
        assert reason == (
            f"too big: {asked} GPUs asked, at most {most} can ever be given to tenant '{t}'"
        )
        assert job.state.value == "failed"
        assert job.first_start_s is None
    for t, (_, most) in cases.items():
        assert sched.submit(make_job(f"{t}-max", t, 0.0, most), 0.0) is None
    assert sched.rejected == {"too big": 3}


def test_unknown_tenant_and_class_are_rejected(topo: Topology) -> None:
    sched = Scheduler(topo)
    reason = sched.submit(make_job("x", "nobody"), 0.0)
    assert reason is not None
    assert reason.startswith("unknown tenant")
    assert "'nobody'" in reason
    reason = sched.submit(make_job("y", "a", gpu_class="gb200"), 0.0)
    assert reason is not None
    assert reason.startswith("unknown GPU class")
    assert sched.rejected == {"unknown tenant": 1, "unknown GPU class": 1}


def test_reclaim_lender_gets_its_nominal_back(topo: Topology) -> None:
    """b borrows a's lendable 8 (b0, b1 at t=0; a0 holds a's guaranteed 8). At t=10 a asks for 8
    more, within its nominal 16: the pool is dry, so one of b's jobs is preempted (each loses
    10 s x 8 GPUs, no checkpoints; the tie goes to the first submitted, b0) and a1 starts at 10.
    b0 restarts when a0 ends at 100 (a0, a1 hold 16; b1 holds b's nominal)."""
    jobs = simulate(
        topo,
        [
            make_job("a0", "a", 0.0, 8, 100.0),
            make_job("b0", "b", 0.0, 8, 1000.0),
            make_job("b1", "b", 0.0, 8, 1000.0),
            make_job("a1", "a", 10.0, 8, 100.0),
        ],
    )
    assert jobs["a1"].first_start_s == 10.0
    preempted = [j for j in ("b0", "b1") if jobs[j].preemptions]
    assert len(preempted) == 1
    victim = jobs[preempted[0]]
    assert victim.lost_preempt_gpu_s == 10.0 * 8
    # a0 ends at 100: b gets a's lendable 8 back; the victim restarts with 60 s overhead
    assert [s.value for _, s in victim.history] == [
        "pending",
        "running",
        "preempted",
        "pending",
        "running",
        "completed",
    ]
    assert victim.history[-2][0] == 100.0
    assert victim.end_s == pytest.approx(100.0 + 60.0 + 1000.0)


def test_quota_table_rows(topo: Topology) -> None:
    sched = Scheduler(topo)
    rows = {(r["tenant"], r["gpu_class"]): r for r in sched.quota_table()}
    assert rows["a", "h100"]["nominal"] == 16
    assert rows["a", "h100"]["lending_limit"] == 8
    assert rows["a", "h100"]["borrowing_limit"] == 4
    assert rows["b", "h100"]["borrowing_limit"] is None
    assert rows["solo", "h100"]["cohort"] is None
