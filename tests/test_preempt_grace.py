"""Preemption that saves work (issue #18 §2): hand cases and a property.

Fleet ``hgx1``: one HGX H100 server (8 GPUs), tenant ``a`` owning it. Jobs: ``L``, low
priority, 8 GPUs, 1,000 s of work, submitted at 0; ``H``, priority 10, 8 GPUs, 100 s,
submitted at 100, which preempts ``L`` at 100 (PriorityRule). Restart overhead 60 s.
Figures are worked out by hand in each test's docstring.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from aifactory.fleet import Topology, compile_topology
from aifactory.scheduler.config import MAX_GRACE_S, SchedulerConfig, job_problem
from aifactory.scheduler.scheduler import Scheduler
from aifactory.workload.job import Job, JobState
from builders import check_invariants, hgx, hgx_topo, make_fleet, make_job, simulate, tenant
from test_scheduler_properties import SETTINGS, JobSpec, cases, compare_with_reference, run


def pair(**low: Any) -> list[Job]:
    """``L`` (priority 0, 1,000 s, extra fields ``low``) and ``H`` (priority 10, 100 s)."""
    return [
        make_job("L", submit=0.0, run=1000.0, priority=0, **low),
        make_job("H", submit=100.0, run=100.0, priority=10),
    ]


def test_without_grace_the_victim_loses_its_work_as_before() -> None:
    """No grace: at 100 ``H`` evicts ``L`` and starts at once (ends 200); ``L`` had no
    checkpoint and loses its 100 s (800 GPU-s), restarts at 200 with the 60 s overhead and
    its whole 1,000 s: ends 1,260."""
    jobs = simulate(hgx_topo(1), pair())
    assert jobs["H"].first_start_s == 100.0
    assert jobs["H"].end_s == 200.0
    assert jobs["L"].end_s == 1260.0
    assert jobs["L"].preemptions == 1
    assert jobs["L"].lost_preempt_gpu_s == 800.0


@pytest.mark.parametrize("where", ["config", "job"])
def test_a_victim_with_grace_keeps_its_gpus_saves_and_loses_only_the_grace(where: str) -> None:
    """Grace 30 s (the scheduler's default, or the job's own): at 100 ``L`` is told to stop
    and keeps the GPUs until 130 while it saves its 100 s; ``H`` starts at 130 (ends 230).
    ``L`` loses only the grace (30 s x 8 GPUs = 240 GPU-s; its first start paid no
    overhead), restarts at 230 with 60 s overhead and 900 s left: ends 1,190."""
    if where == "config":
        jobs = simulate(hgx_topo(1), pair(), preempt_grace_s=30.0)
    else:
        jobs = simulate(hgx_topo(1), pair(preempt_grace_s=30.0))
    assert jobs["H"].first_start_s == 130.0
    assert jobs["H"].end_s == 230.0
    assert jobs["L"].end_s == 1190.0
    assert jobs["L"].preemptions == 1
    assert jobs["L"].lost_preempt_gpu_s == 240.0
    states = [s for _, s in jobs["L"].history]
    assert states[:4] == [JobState.PENDING, JobState.RUNNING, JobState.PREEMPTED, JobState.PENDING]
    assert [t for t, _ in jobs["L"].history][2:4] == [100.0, 130.0]  # preempted, then waits


def test_a_job_that_says_zero_grace_overrides_the_default() -> None:
    """``L`` asks for no grace (0) while the scheduler's default is 30 s: as without grace."""
    jobs = simulate(hgx_topo(1), pair(preempt_grace_s=0.0), preempt_grace_s=30.0)
    assert jobs["H"].first_start_s == 100.0
    assert jobs["L"].end_s == 1260.0


def test_a_grace_too_short_to_write_a_checkpoint_saves_nothing() -> None:
    """Checkpoint writes take 10 s, ``L`` checkpoints every 50 s and has a 5 s grace: at
    100 it has written one checkpoint (50 s of work, at 50-60) and done 40 s more, which a
    5 s grace cannot save: progress 50 s, lost 40 s + the 5 s grace = 45 s x 8 = 360
    GPU-s. It still holds the GPUs for the grace: ``H`` starts at 105."""
    jobs = simulate(
        hgx_topo(1), pair(checkpoint_s=50.0, preempt_grace_s=5.0), checkpoint_write_s=10.0
    )
    assert jobs["H"].first_start_s == 105.0
    assert jobs["L"].lost_preempt_gpu_s == 360.0
    # 950 s left from 205: 60 s overhead + 950 s + 18 writes of 10 s (none at the very end)
    assert jobs["L"].end_s == 205.0 + 60.0 + 950.0 + 180.0


def test_the_preemptor_waits_for_the_grace_with_its_reason() -> None:
    """Pass by pass on the scheduler itself: at 100 ``L`` is reported preempted but keeps
    its GPUs, ``H`` waits (reason ``preempt_grace``) and the pass asks for a wake-up at 130;
    a pass at 120 starts nobody, and the pass at 130 starts ``H`` on ``L``'s GPUs."""
    sched = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low, high = pair()
    sched.submit(low, 0.0)
    assert sched.schedule(0.0).started == [low]
    sched.submit(high, 100.0)
    res = sched.schedule(100.0)
    assert res.preempted == [low]
    assert res.started == []
    assert res.wakeup_s == 130.0
    assert low.state is JobState.PREEMPTED
    assert sched.pending_reason(high) == "preempt_grace"
    assert sched.saving_jobs() == [(low, 130.0)]
    assert sched.running_jobs() == []
    assert sum(sched.cs.class_free) == 0  # L still holds all 8 GPUs
    # H's claim charges nothing more to tenant a: its victim, a's own, is charged still.
    assert [s.claim_gpus for s in sched.claims.values()] == [0]
    assert sched.quota.cells[0][0].used == 8
    check_invariants(sched)
    assert sched.schedule(120.0).started == []
    res = sched.schedule(130.0)
    assert res.started == [high]
    assert low.state is JobState.PENDING
    assert sched.saving_jobs() == []
    assert sched.wait_times(130.0)["H"] == {"preempt_grace": 30.0}
    check_invariants(sched)


def test_a_rebuilt_scheduler_holds_a_saving_victim_for_its_claimant() -> None:
    """A scheduler rebuilt during a grace (the service's restart): the victim is restored
    running on its GPUs, then as saving until 130 for ``H``; ``H`` waits for it (reason
    ``preempt_grace``, no second preemption) and starts on its GPUs at 130, as in the
    scheduler that made the claim. ``claimant_of`` names what the service writes down."""
    first = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low, high = pair()
    first.submit(low, 0.0)
    first.schedule(0.0)
    first.submit(high, 100.0)
    first.schedule(100.0)
    assert first.claimant_of(low) is high
    assert first.claimant_of(high) is None
    placement = first.placement_of(low)

    sched = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low2, high2 = pair()
    sched.restore_running(low2, sched.placement_from(placement), 0.0)
    sched.submit(high2, 110.0)
    sched.restore_saving(low2, 130.0, high2, 110.0)
    assert low2.state is JobState.PREEMPTED
    assert sched.saving_jobs() == [(low2, 130.0)]
    check_invariants(sched)
    res = sched.schedule(110.0)
    assert res.preempted == []
    assert res.started == []
    assert res.wakeup_s == 130.0
    assert sched.pending_reason(high2) == "preempt_grace"
    res = sched.schedule(130.0)
    assert res.started == [high2]
    assert sched.placement_of(high2) == placement
    check_invariants(sched)
    with pytest.raises(ValueError, match="not a running job"):
        sched.restore_saving(low2, 200.0, None, 130.0)  # pending again, not running
    assert low2.state is JobState.PENDING


def test_cancelling_the_victim_or_the_preemptor_during_the_grace() -> None:
    """The victim cancelled while it saves gives its GPUs back at once (and the preemptor
    still starts when its claim is due); the preemptor cancelled leaves the victim to end
    its grace and wait again."""
    sched = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low, high = pair()
    sched.submit(low, 0.0)
    sched.schedule(0.0)
    sched.submit(high, 100.0)
    sched.schedule(100.0)
    sched.cancel(low, 110.0)
    assert low.state is JobState.CANCELLED
    assert sum(sched.cs.class_free) == 8
    check_invariants(sched)
    assert sched.schedule(130.0).started == [high]
    check_invariants(sched)

    sched = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low, high = pair()
    sched.submit(low, 0.0)
    sched.schedule(0.0)
    sched.submit(high, 100.0)
    sched.schedule(100.0)
    sched.cancel(high, 110.0)
    check_invariants(sched)
    res = sched.schedule(130.0)
    assert res.started == [low]  # its grace ended, nothing else waits: it runs again
    check_invariants(sched)


def test_a_failure_during_the_grace_ends_it_at_once() -> None:
    """A saving victim interrupted (its node failed) gives its GPUs back at once, keeping
    the work it had saved when told to stop; it waits again."""
    sched = Scheduler(hgx_topo(1), SchedulerConfig(preempt_grace_s=30.0))
    low, high = pair()
    sched.submit(low, 0.0)
    sched.schedule(0.0)
    sched.submit(high, 100.0)
    sched.schedule(100.0)
    sched.interrupt(low, 110.0)
    assert low.state is JobState.PENDING
    assert low.progress_s == 100.0
    assert sum(sched.cs.class_free) == 8
    check_invariants(sched)


def test_grace_bounds() -> None:
    """A job's grace and the default are bounded (0 to a day); the error names the field."""
    assert job_problem(make_job("x", preempt_grace_s=MAX_GRACE_S)) is None
    for bad in (-1.0, MAX_GRACE_S + 1, float("nan"), float("inf")):
        problem = job_problem(make_job("x", preempt_grace_s=bad))
        assert problem is not None
        assert problem.startswith("preempt_grace_s:")
        with pytest.raises(ValueError, match="preempt_grace_s"):
            SchedulerConfig(preempt_grace_s=bad)


@settings(SETTINGS, max_examples=120)
@given(
    cases(most_jobs=40),
    st.sampled_from([1.0, 30.0, 200.0]),
    st.integers(0, 2**16),
    st.sampled_from(["las", "las", "priority", None]),
)
def test_no_gpu_is_given_twice_during_graces(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float],
    grace: float,
    salt: int,
    policy: str | None,
) -> None:
    """Random fleets and workloads (preemption on, mostly under LAS, which preempts most)
    with a default grace and some jobs' own (0 among them): every invariant after every
    event holds, the GPUs of victims still saving included (builders.check_invariants),
    and every job ends."""
    topo, specs, cfg, rate = case
    cfg = replace(cfg, preemption=True, policy=policy or cfg.policy)
    own = [0.0, None, None, 5.0, 120.0]
    specs = [
        (*s[:5], {**s[5], "preempt_grace_s": own[(i + salt) % len(own)]})
        for i, s in enumerate(specs)
    ]
    result, checks = run(topo, specs, replace(cfg, preempt_grace_s=grace), rate)
    assert checks >= result.events
    assert all(j.done for j in result.jobs), [j for j in result.jobs if not j.done]
    assert result.scheduler.preemptions == sum(j.preemptions for j in result.jobs)
    event(f"saved preemptions {'>0' if result.scheduler.saved_preemptions else '0'}")
    assert not result.scheduler.saving
    assert not result.scheduler.claims


def test_a_trace_column_gives_each_job_its_grace() -> None:
    """A trace's ``preempt_grace_s`` column (null: the run's default) reaches the jobs."""
    from aifactory.fleet import load_fleet  # noqa: PLC0415
    from aifactory.twin.inputs import InputOptions, jobs_from_table  # noqa: PLC0415
    from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_SCHEMA  # noqa: PLC0415

    n = 2
    cols: dict[str, Any] = {
        "job_id": ["a", "b"],
        "tenant": ["lab", "lab"],
        "submit_s": [0.0, 1.0],
        "duration_s": [10.0, 10.0],
        "gpus": [1, 1],
        "gpu_class": [None] * n,
        "estimate_s": [None] * n,
        "priority": [0] * n,
        "observed_start_s": [None] * n,
        "status": [None] * n,
    }
    schema = TRACE_SCHEMA.append(pa.field("preempt_grace_s", OPTIONAL_COLUMNS["preempt_grace_s"]))
    table = pa.table({**cols, "preempt_grace_s": [45.0, None]}, schema=schema)
    jobs, _ = jobs_from_table(table, load_fleet("demo"), InputOptions())
    assert [j.preempt_grace_s for j in jobs] == [45.0, None]


def test_a_claim_holds_its_quota_so_the_jobs_behind_it_do_not_reclaim_again() -> None:
    """Two servers, tenants ``a`` and ``b`` with 8 GPUs of nominal quota each in one
    cohort; ``b`` borrows ``a``'s share with two 8-GPU jobs. At 100 ``a``'s first job
    reclaims one of them, which saves until 130. ``a``'s second job at 110 is beyond
    ``a``'s nominal once the first is counted: it may not reclaim the other ``b`` job
    (without the claim's quota held, ``a`` looked idle and it did, evicting twice the
    victims needed)."""
    topo = compile_topology(
        make_fleet(
            [[[hgx(2)]]],
            [tenant("a", {"h100": 8}, cohort="c"), tenant("b", {"h100": 8}, cohort="c")],
        )
    )
    sched = Scheduler(topo, SchedulerConfig(preempt_grace_s=30.0))
    b1 = make_job("B1", tenant="b", run=1000.0)
    b2 = make_job("B2", tenant="b", run=2000.0)
    for job in (b1, b2):
        sched.submit(job, 0.0)
    assert sched.schedule(0.0).started == [b1, b2]
    a1 = make_job("A1", submit=100.0)
    sched.submit(a1, 100.0)
    first = sched.schedule(100.0).preempted
    assert len(first) == 1
    a2 = make_job("A2", submit=110.0)
    sched.submit(a2, 110.0)
    res = sched.schedule(110.0)
    assert res.preempted == []
    assert res.started == []
    check_invariants(sched)
    assert sched.schedule(130.0).started == [a1]
    assert b1.preemptions + b2.preemptions == 1
    check_invariants(sched)


@settings(SETTINGS, max_examples=80)
@given(cases(most_jobs=40), st.sampled_from([1.0, 30.0]), st.booleans())
def test_shortcuts_change_no_decision_with_graces(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float], grace: float, las: bool
) -> None:
    """The scheduler's shortcuts on and off give the same decisions when victims save
    (the differential test of test_scheduler_properties, with a default grace)."""
    topo, specs, cfg, rate = case
    cfg = replace(cfg, preemption=True, preempt_grace_s=grace, policy="las" if las else cfg.policy)
    compare_with_reference(topo, specs, cfg, rate)
