"""The scheduler core against hostile or unlucky input (issue #14).

- One pass never starts a job that it then preempts: the demo fleet's reported case (a
  low-priority gang submitted just before a bigger normal-priority one), and a property
  over random workloads driven through ``Scheduler`` directly (submits, finishes and
  passes interleaved): no job is both started and preempted by one ``schedule()`` call,
  every started job holds exactly its gang, no GPU is given twice.
- Job fields are checked at submit (and when a running job is restored): a bad field
  fails that job alone, with a reason naming the field, and never the pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aifactory.fleet import Topology, compile_topology, load_fleet
from aifactory.scheduler.config import (
    MAX_PRIORITY,
    MAX_SECONDS,
    MIN_CHECKPOINT_S,
    BackfillMode,
    SchedulerConfig,
    Tuning,
)
from aifactory.scheduler.policies.las import LasParams
from aifactory.scheduler.records import CycleResult
from aifactory.scheduler.scheduler import Scheduler
from aifactory.workload.job import Job, JobState
from builders import check_invariants, hgx, make_fleet, nvl, tenant
from test_scheduler_properties import POLICIES, fleets

LOW, NORMAL, HIGH = -100, 0, 100  # the service's priority classes


def demo() -> Topology:
    return compile_topology(load_fleet("demo"))


def service_scheduler(topo: Topology) -> Scheduler:
    """As the service builds it (service.loop.new_scheduler: fifo, EASY)."""
    return Scheduler(topo, SchedulerConfig(policy="fifo", backfill=BackfillMode.EASY))


def api_job(
    id: str,  # noqa: A002 (mirrors Job's own parameter name)
    gpus: int,
    priority: int,
    *,
    submit: float = 100.0,
    gpu_class: str | None = "gb200",
    tenant: str = "lab",
    **kw: Any,
) -> Job:
    """A job as the service's ``to_job`` builds it: the time limit is also the estimate."""
    return Job(
        id, tenant, submit, gpus, 3600.0, estimate_s=3600.0, gpu_class=gpu_class,
        priority=priority, **kw,
    )  # fmt: skip


def check_cycle(sched: Scheduler, res: CycleResult) -> None:
    """What a caller of ``schedule()`` relies on (the service launches ``started``)."""
    started = {j.id for j in res.started}
    preempted = {j.id for j in res.preempted}
    assert not started & preempted, f"started and preempted in one pass: {started & preempted}"
    assert len(started) == len(res.started), "a job started twice in one pass"
    for j in res.started:
        assert j.state is JobState.RUNNING, j
        assert j.placement, f"{j.id}: started with an empty placement"
        assert sum(mask.bit_count() for _, mask in j.placement) == j.gpus, j
        assert sched.placement_of(j), j
    for j in res.preempted:
        assert j.state is JobState.PENDING, j
        assert not j.placement, j
    check_invariants(sched)  # no GPU given twice, gangs whole, quota held, counts agree


# ------------------------------------------------------------------ the reported case
@pytest.mark.parametrize("gap", [0.0, 0.5], ids=["same-instant", "half-a-second-apart"])
def test_demo_low_and_normal_submitted_together_start_once(gap: float) -> None:
    """demo: 432 GB200 GPUs, tenant ``lab`` holds 288 and may borrow the rest. A low
    200-GPU gang then a normal 250-GPU one, both pending at one pass: 200 + 250 > 432,
    so at most one runs. FIFO tries the low one first and starts it; the normal one
    cannot fit and outranks it. The pass withdraws the low start (it never ran) rather
    than report it started and preempted: the normal gang runs, the low one waits with
    no preemption, no restart overhead and no run in its history."""
    sched = service_scheduler(demo())
    low = api_job("1", 200, LOW)
    normal = api_job("2", 250, NORMAL, submit=100.0 + gap)
    assert sched.submit(low, 100.0) is None
    assert sched.submit(normal, 100.0 + gap) is None
    res = sched.schedule(101.0)
    check_cycle(sched, res)
    assert [j.id for j in res.started] == ["2"]
    assert res.preempted == []
    assert low.state is JobState.PENDING
    assert (low.first_start_s, low.preemptions, low.overhead_s) == (None, 0, 0.0)
    assert low.history == [(100.0, JobState.PENDING)]
    assert low.preempted_for == {"2"}  # it never takes the GPUs back from the normal job
    assert sched.preemptions == 0
    # The next pass has nothing to start (182 GPUs free, 200 asked) until the normal ends.
    check_cycle(sched, sched.schedule(102.0))
    assert low.state is JobState.PENDING
    sched.finish(normal, 3701.0)
    res = sched.schedule(3701.0)
    check_cycle(sched, res)
    assert [j.id for j in res.started] == ["1"]
    assert low.first_start_s == 3701.0


def test_a_job_running_before_the_pass_is_still_preempted() -> None:
    """Withdrawal is only for starts of the same pass: a low job started by an earlier
    pass is evicted as before (counted, with its restart overhead)."""
    sched = service_scheduler(demo())
    low = api_job("1", 200, LOW)
    sched.submit(low, 100.0)
    check_cycle(sched, sched.schedule(100.0))
    normal = api_job("2", 250, NORMAL, submit=101.0)
    sched.submit(normal, 101.0)
    res = sched.schedule(101.0)
    check_cycle(sched, res)
    assert ([j.id for j in res.started], [j.id for j in res.preempted]) == (["2"], ["1"])
    assert (low.preemptions, low.first_start_s, low.overhead_s) == (1, 100.0, 60.0)


def test_a_withdrawn_victim_is_cheaper_than_work_already_running() -> None:
    """Two low 100-GPU gangs of ``lab``: one running since t=0, one started in this pass.
    A normal 250-GPU gang needs one of them gone (lab may hold 360: 288 nominal + the 72
    that ``startup`` lends): it gets the fresh one's start withdrawn (losing nothing),
    not the one with an hour of work and no checkpoint."""
    sched = service_scheduler(demo())
    old = api_job("old", 100, LOW, submit=0.0)
    sched.submit(old, 0.0)
    check_cycle(sched, sched.schedule(0.0))
    fresh = api_job("fresh", 100, LOW, submit=3600.0)
    normal = api_job("normal", 250, NORMAL, submit=3600.0)
    sched.submit(fresh, 3600.0)
    sched.submit(normal, 3600.0)
    res = sched.schedule(3600.0)
    check_cycle(sched, res)
    assert [j.id for j in res.started] == ["normal"]
    assert res.preempted == []
    assert old.state is JobState.RUNNING
    assert fresh.state is JobState.PENDING


# ------------------------------------------------------------------ property
@st.composite
def small_or_demo(draw: st.DrawFn) -> Topology:
    if draw(st.integers(0, 3)) == 0:
        return demo()
    return draw(fleets())


Step = tuple[str, Any]


@st.composite
def scripts(draw: st.DrawFn, topo: Topology) -> list[Step]:
    """Submits, finishes (of the k-th running job) and passes, interleaved."""
    names = [t.name for t, _, _ in topo.fleet.iter_tenants()]
    classes = [None, *topo.classes]
    # Gangs sized to the fleet, so that passes often find it full and preempt.
    big = topo.gpus_total > 200
    sizes = [8, 36, 72, 100, 144, 200, 250, 300] if big else [1, 2, 4, 8, 8, 12, 16, 24]
    steps: list[Step] = []
    for i in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["submit"] * 4 + ["pass", "pass", "finish"]))
        if kind == "submit":
            steps.append(
                (
                    "submit",
                    {
                        "id": f"j{i}",
                        "tenant": draw(st.sampled_from(names)),
                        "gpus": draw(st.sampled_from(sizes)),
                        "run": draw(st.floats(1.0, 5000.0, allow_nan=False)),
                        "gpu_class": draw(st.sampled_from(classes)),
                        "priority": draw(st.sampled_from([LOW, LOW, NORMAL, HIGH])),
                        "preemptible": draw(st.integers(0, 4)) > 0,
                        "checkpoint_s": draw(st.sampled_from([None, 1.0, 60.0, 600.0])),
                        "allow_cross_site": draw(st.booleans()),
                    },
                )
            )
        elif kind == "finish":
            steps.append(("finish", draw(st.integers(0, 1000))))
        else:
            steps.append(("pass", draw(st.sampled_from([0.0, 0.0, 1.0, 30.0, 400.0]))))
    steps.append(("pass", 0.0))
    return steps


@dataclass(frozen=True)
class Case:
    topo: Topology
    cfg: SchedulerConfig
    steps: list[Step]


@st.composite
def driven_cases(draw: st.DrawFn) -> Case:
    topo = draw(small_or_demo())
    cfg = SchedulerConfig(
        policy=draw(st.sampled_from(POLICIES)),
        backfill=draw(st.sampled_from(list(BackfillMode))),
        restart_overhead_s=draw(st.sampled_from([0.0, 60.0])),
        checkpoint_write_s=draw(st.sampled_from([0.0, 5.0])),
        las=LasParams(draw(st.sampled_from([(3600.0,), (200.0, 2000.0)]))),
        backfill_interval_s=draw(st.sampled_from([0.0, 0.0, 30.0])),
        tuning=Tuning(shortcuts=draw(st.booleans())),
    )
    return Case(topo, cfg, draw(scripts(topo)))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(driven_cases())
def test_no_pass_starts_a_job_it_preempts(case: Case) -> None:
    sched = Scheduler(case.topo, case.cfg)
    now = 0.0
    preempted = 0
    submitted: list[Job] = []
    for kind, arg in case.steps:
        if kind == "submit":
            job = Job(
                arg["id"], arg["tenant"], now, arg["gpus"], arg["run"],
                gpu_class=arg["gpu_class"], priority=arg["priority"],
                preemptible=arg["preemptible"], checkpoint_s=arg["checkpoint_s"],
                allow_cross_site=arg["allow_cross_site"],
            )  # fmt: skip
            submitted.append(job)
            sched.submit(job, now)
        elif kind == "finish":
            running = sched.running_jobs()
            if running:
                sched.finish(running[arg % len(running)], now)
        else:
            now += arg
            res = sched.schedule(now)
            check_cycle(sched, res)
            preempted += len(res.preempted)
        check_invariants(sched)
    for j in submitted:
        if j.first_start_s is None:
            assert all(state is not JobState.RUNNING for _, state in j.history), j
    event(f"preempted {'>0' if preempted else '0'}")
    event(f"withdrawn {'>0' if sched.withdrawn else '0'}")


# ------------------------------------------------------------------ bad fields
def test_subnormal_checkpoint_interval_fails_that_job_not_the_pass() -> None:
    """The report: ``checkpoint_interval_s=5e-324`` was accepted; once that job ran,
    pricing it as a preemption victim raised OverflowError in every pass, so nothing of
    any tenant was scheduled. Now the submit refuses it, naming the field."""
    sched = service_scheduler(demo())
    bad = api_job("bad", 300, LOW, checkpoint_s=5e-324)
    reason = sched.submit(bad, 100.0)
    sched.schedule(100.0)  # (where it was accepted, it started here)
    other = api_job("other", 200, HIGH, submit=160.0)
    assert sched.submit(other, 160.0) is None
    res = sched.schedule(160.0)  # (where it was accepted, this priced it as a victim)
    check_cycle(sched, res)
    assert [j.id for j in res.started] == ["other"]
    assert reason is not None
    assert reason.startswith("invalid field: checkpoint_s: "), reason
    assert bad.state is JobState.FAILED
    assert bad.end_s == 100.0
    assert sched.rejected["invalid field"] == 1


def _with(field: str, value: object) -> Job | None:
    """A valid job with one field set after construction (Job's constructor checks little);
    None where the compiled ``Job`` refuses the value's type, or converts it (its fields
    are typed: a ``bool`` set on ``gpus`` is stored as the int 1)."""
    job = api_job("x", 8, NORMAL)
    try:
        setattr(job, field, value)
    except TypeError:
        return None
    if type(getattr(job, field)) is not type(value):
        return None
    return job


# (field, value): every one is refused at submit, by a reason naming the field.
BAD: list[tuple[str, object]] = [
    ("gpus", 0),
    ("gpus", -8),
    ("gpus", True),
    ("gpus", 8.0),
    ("gpus", 2**31),
    ("duration_s", math.nan),
    ("duration_s", math.inf),
    ("duration_s", 0.0),
    ("duration_s", -1.0),
    ("duration_s", MAX_SECONDS * 2),
    ("estimate_s", math.nan),
    ("estimate_s", -math.inf),
    ("estimate_s", 0.0),
    ("submit_s", math.nan),
    ("submit_s", math.inf),
    ("submit_s", -math.inf),
    ("checkpoint_s", 5e-324),
    ("checkpoint_s", 0.0),
    ("checkpoint_s", -60.0),
    ("checkpoint_s", 0.5),
    ("checkpoint_s", math.nan),
    ("checkpoint_s", math.inf),
    ("checkpoint_s", MAX_SECONDS * 2),
    ("priority", MAX_PRIORITY + 1),
    ("priority", -MAX_PRIORITY - 1),
    ("priority", 1.5),
    ("priority", True),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_field_is_refused_at_submit(field: str, value: object) -> None:
    sched = service_scheduler(demo())
    job = _with(field, value)
    if job is None:
        return  # refused or converted by the compiled class's typed field
    reason = sched.submit(job, 100.0)
    assert reason is not None
    assert reason.startswith(f"invalid field: {field}: "), reason
    assert job.state is JobState.FAILED
    assert sched.pending_count == 0
    assert sched.schedule(100.0).started == []


GOOD: list[tuple[str, object]] = [
    ("gpus", 1),
    ("checkpoint_s", None),
    ("checkpoint_s", MIN_CHECKPOINT_S),
    ("checkpoint_s", 1800.0),
    ("priority", MAX_PRIORITY),
    ("priority", -MAX_PRIORITY),
    ("submit_s", -5.0),
    ("estimate_s", 1e-3),
    ("duration_s", MAX_SECONDS),
]


@pytest.mark.parametrize(("field", "value"), GOOD, ids=[f"{f}={v!r}" for f, v in GOOD])
def test_edge_values_are_accepted(field: str, value: object) -> None:
    sched = service_scheduler(demo())
    job = _with(field, value)
    assert job is not None
    assert sched.submit(job, 100.0) is None
    assert [j.id for j in sched.schedule(100.0).started] == ["x"]


def test_restoring_a_running_job_with_a_bad_field_raises() -> None:
    """restore_running has no rejection path (the job already runs somewhere): it raises,
    naming the job and the field, instead of poisoning every later pass."""
    topo = demo()
    sched = service_scheduler(topo)
    probe = service_scheduler(topo)
    ok = api_job("ok", 8, NORMAL)
    probe.submit(ok, 0.0)
    probe.schedule(0.0)
    placement = list(ok.placement)
    bad = api_job("bad", 8, NORMAL, checkpoint_s=5e-324)
    with pytest.raises(ValueError, match=r"job bad: checkpoint_s: "):
        sched.restore_running(bad, placement, 0.0)
    assert sched.running_count == 0
    assert sum(sched.cs.class_free) == topo.gpus_total


def test_small_fleet_rejects_before_the_too_big_check() -> None:
    """A bad field is reported as such even where the job would also be too big."""
    topo = compile_topology(make_fleet([[[hgx(1), nvl(1, nodes_per_domain=2)]]], [tenant("a")]))
    sched = Scheduler(topo)
    job = Job("j", "a", 0.0, 4096, 10.0)
    job.duration_s = math.nan
    reason = sched.submit(job, 0.0)
    assert reason is not None
    assert reason.startswith("invalid field: duration_s: ")
