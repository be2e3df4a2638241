"""Named tiny scenarios with HAND-COMPUTED start (and end) times (issue #3 §10, second bullet).

Each scenario says, in its ``why``, how its figures were worked out from the issue's rules.
Fleets: ``hgxN`` = one site, one pod, N HGX H100 servers (8 GPUs each), tenant ``a`` with
nominal N x 8; ``cohort2`` = 2 servers, tenants ``a`` and ``b`` with nominal 8 each in one
cohort; ``cohort3`` = 3 servers, ``a`` nominal 16 and ``b`` nominal 8 in one cohort.
Jobs are (id, tenant, submit s, GPUs, true run s, extra Job fields). Runs use the real twin
(:class:`Simulation`) with every invariant checked after every event. Defaults: fifo, EASY
backfill, preemption on, restart overhead 60 s, checkpoint writes free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from aifactory.fleet import Topology, compile_topology
from aifactory.scheduler.config import BackfillMode, SchedulerConfig, Tuning
from aifactory.scheduler.policies import REGISTRY, PolicyName, TenantUsage, make_policy, register
from aifactory.scheduler.policies.fair import FairParams, FairPolicy
from aifactory.scheduler.policies.fifo import FifoPolicy
from aifactory.scheduler.policies.las import LasParams, LasPolicy
from aifactory.scheduler.preemption import RULES, PreemptReason
from aifactory.scheduler.preemption import register as register_rule
from aifactory.scheduler.scheduler import Scheduler
from aifactory.scheduler.usage import DecayedUsage
from aifactory.workload.job import JobState
from builders import hgx, hgx_topo, make_fleet, make_job, simulate, tenant

EASY = BackfillMode.EASY
NONE = BackfillMode.NONE


def cohort(nodes: int, a: int, b: int) -> Callable[[], Topology]:
    def build() -> Topology:
        return compile_topology(
            make_fleet(
                [[[hgx(nodes)]]],
                [tenant("a", {"h100": a}, cohort="c"), tenant("b", {"h100": b}, cohort="c")],
            )
        )

    return build


FLEETS: dict[str, Callable[[], Topology]] = {
    "hgx1": lambda: hgx_topo(1),
    "hgx2": lambda: hgx_topo(2),
    "hgx3": lambda: hgx_topo(3),
    "cohort2": cohort(2, 8, 8),
    "cohort3": cohort(3, 16, 8),
}

J = tuple[Any, ...]  # (id, tenant, submit, gpus, run[, {extra}])


@dataclass(frozen=True)
class Scenario:
    id: str
    fleet: str
    jobs: tuple[J, ...]
    starts: dict[str, float]
    why: str
    config: dict[str, Any] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    preemptions: dict[str, int] = field(default_factory=dict)


# The ordering workload: a 16-GPU job holds the fleet until 100; three 8-GPU jobs wait.
ORDER = (
    ("A", "a", 0, 16, 100),
    ("B", "a", 1, 8, 300),
    ("C", "a", 2, 8, 50),
    ("D", "a", 3, 8, 100),
)
PRIO = (
    ("A", "a", 0, 16, 100),
    ("B", "a", 1, 8, 300),
    ("C", "a", 2, 8, 50, {"priority": 100}),
    ("D", "a", 3, 8, 100, {"priority": 100}),
)
LAS_LONG = (("Y", "a", 0, 8, 1000), ("X", "a", 500, 8, 100))
TWO_TENANTS = (("a1", "a", 0, 16, 100), ("a2", "a", 1, 16, 100), ("b1", "b", 2, 16, 100))
EASY_3 = (
    ("A", "a", 0, 16, 100),
    ("B", "a", 1, 24, 100),
    ("C", "a", 2, 8, 1000),
    ("D", "a", 3, 8, 50),
)
HEAD_16 = (("A", "a", 0, 8, 100), ("B", "a", 1, 16, 50), ("C", "a", 2, 8, 1000))
PER_TENANT = (
    ("a1", "a", 0, 8, 100),
    ("a2", "a", 1, 24, 50),
    ("a3", "a", 2, 8, 10),
    ("b1", "b", 3, 8, 10),
)
CKPT = (("A", "a", 0, 8, 1000, {"checkpoint_s": 100}), ("B", "a", 250, 8, 100, {"priority": 100}))

SCENARIOS = [
    # ------------------------------------------------------------------ ordering policies
    Scenario(
        "fifo-submit-order",
        "hgx2",
        ORDER,
        {"A": 0, "B": 100, "C": 100, "D": 150},
        "A ends at 100; B and C (submitted first) fill 16 GPUs; C ends at 150, then D.",
        {"policy": "fifo"},
    ),
    Scenario(
        "sjf-shortest-estimate-first",
        "hgx2",
        ORDER,
        {"A": 0, "C": 100, "D": 100, "B": 150},
        "At 100 the order is C (50 s), D (100 s), B (300 s); C ends at 150 and B starts.",
        {"policy": "sjf"},
    ),
    Scenario(
        "sjf-orders-by-estimate-not-true-run-time",
        "hgx2",
        (
            ("A", "a", 0, 16, 100),
            ("B", "a", 1, 8, 300, {"estimate_s": 10}),
            ("C", "a", 2, 8, 50, {"estimate_s": 1000}),
            ("D", "a", 3, 8, 100),
        ),
        {"A": 0, "B": 100, "D": 100, "C": 200},
        "Estimates: B 10, D 100, C 1000. B and D start at 100; D ends first (200), then C.",
        {"policy": "sjf"},
    ),
    Scenario(
        "las-no-service-yet-is-fifo",
        "hgx2",
        ORDER,
        {"A": 0, "B": 100, "C": 100, "D": 150},
        "No waiting job has attained service: all in queue 0, FIFO inside it.",
        {"policy": "las"},
    ),
    Scenario(
        "las-preempts-job-past-threshold",
        "hgx1",
        LAS_LONG,
        {"Y": 0, "X": 500},
        "At 500 Y has 8 x 500 = 4000 GPU-s > 3600 (queue 1); X (queue 0) evicts it. Y had no "
        "checkpoint: it loses all 500 s and restarts at 600 with 60 s overhead: 600+60+1000.",
        {"policy": "las"},
        ends={"X": 600, "Y": 1660},
        preemptions={"Y": 1, "X": 0},
    ),
    Scenario(
        "las-below-threshold-no-preemption",
        "hgx1",
        (("Y", "a", 0, 8, 1000), ("X", "a", 400, 8, 100)),
        {"Y": 0, "X": 1000},
        "At 400 Y has 3200 GPU-s < 3600: same queue as X, no eviction; X waits for Y.",
        {"policy": "las"},
        preemptions={"Y": 0},
    ),
    Scenario(
        "fifo-never-preempts-for-order",
        "hgx1",
        LAS_LONG,
        {"Y": 0, "X": 1000},
        "FIFO is not preemptive: X waits for Y to end at 1000.",
        {"policy": "fifo"},
        preemptions={"Y": 0},
    ),
    Scenario(
        "fair-serves-the-lighter-tenant-first",
        "cohort2",
        TWO_TENANTS,
        {"a1": 0, "b1": 100, "a2": 200},
        "a1 borrows b's 8 GPUs until 100. At 100 a has decayed usage > 0, b has none: b1 goes "
        "first although a2 was submitted earlier.",
        {"policy": "fair"},
    ),
    Scenario(
        "fair-same-instant-arrivals",
        "cohort2",
        (
            ("a0", "a", 0, 8, 1000),
            ("b0", "b", 0, 8, 50),
            ("a1", "a", 100, 8, 100),
            ("b1", "b", 100, 8, 100),
        ),
        {"b1": 100, "a1": 200},
        "At 100 a holds 8 GPUs (a0) and has decayed usage; b holds none and used 8 GPUs for "
        "50 s only: b has the lower share, so b1 takes the 8 free GPUs, and a1 (beyond a's "
        "nominal: no reclaim) waits for b1 to end at 200. No preemption is needed.",
        {"policy": "fair"},
        ends={"b1": 200, "a1": 300},
        preemptions={"a1": 0},
    ),
    Scenario(
        "fifo-ignores-tenants",
        "cohort2",
        TWO_TENANTS,
        {"a1": 0, "a2": 100, "b1": 200},
        "Same jobs under FIFO: submit order.",
        {"policy": "fifo"},
    ),
    Scenario(
        "priority-classes-first",
        "hgx2",
        PRIO,
        {"A": 0, "C": 100, "D": 100, "B": 150},
        "Preemption off: at 100 the class-100 jobs C, D go first; B when C ends at 150.",
        {"policy": "priority", "preemption": False},
    ),
    Scenario(
        "fifo-ignores-priority-classes",
        "hgx2",
        PRIO,
        {"A": 0, "B": 100, "C": 100, "D": 150},
        "Preemption off, FIFO: submit order whatever the class.",
        {"policy": "fifo", "preemption": False},
    ),
    # ------------------------------------------------------------------ backfill
    Scenario(
        "easy-backfills-short-job-only",
        "hgx3",
        EASY_3,
        {"A": 0, "D": 3, "B": 100, "C": 200},
        "B (24 GPUs) is reserved at 100 (A's end) with 0 spare. C would run to 1002 > 100 on one "
        "of those GPUs: it waits. D ends at 53 <= 100: it backfills at 3. B 100-200, then C.",
        {"backfill": EASY},
    ),
    Scenario(
        "none-strict-order",
        "hgx3",
        EASY_3,
        {"A": 0, "B": 100, "C": 200, "D": 200},
        "No backfill: nothing passes the blocked B; C and D start when B ends at 200.",
        {"backfill": NONE},
    ),
    Scenario(
        "easy-backfills-into-spare-gpus",
        "hgx3",
        (("A", "a", 0, 16, 100), ("B", "a", 1, 16, 100), ("C", "a", 2, 8, 1000)),
        {"A": 0, "C": 2, "B": 100},
        "B (16) is reserved at 100 when 24 GPUs will be free: 8 spare. C is long but needs only "
        "the 8 spare GPUs: it starts at 2 without delaying B.",
        {"backfill": EASY},
    ),
    Scenario(
        "easy-reserves-head-over-long-backfill",
        "hgx2",
        HEAD_16,
        {"A": 0, "B": 100, "C": 150},
        "B (16) is reserved at 100 with 0 spare; C would end at 1002 > 100: it must wait. B runs "
        "100-150, then C.",
        {"backfill": EASY},
    ),
    Scenario(
        "none-stops-at-blocked-head",
        "hgx2",
        HEAD_16,
        {"A": 0, "B": 100, "C": 150},
        "Strict order gives the same answer here.",
        {"backfill": NONE},
    ),
    Scenario(
        "easy-trusts-running-estimates",
        "hgx2",
        (("A", "a", 0, 8, 100, {"estimate_s": 1000}), ("B", "a", 1, 16, 50), ("C", "a", 2, 8, 500)),
        {"A": 0, "C": 2, "B": 502},
        "The shadow comes from A's ESTIMATE (1000): C ends at 502 <= 1000 and backfills. A really "
        "ends at 100, so B then waits for C (502).",
        {"backfill": EASY},
    ),
    Scenario(
        "easy-trusts-candidate-estimate",
        "hgx2",
        (("A", "a", 0, 8, 100), ("B", "a", 1, 16, 50), ("C", "a", 2, 8, 1000, {"estimate_s": 50})),
        {"A": 0, "C": 2, "B": 1002},
        "C's estimate (ends 52 <= shadow 100) lets it backfill; it really runs 1000 s, so B waits.",
        {"backfill": EASY},
    ),
    Scenario(
        "none-strict-per-tenant-queue",
        "cohort3",
        PER_TENANT,
        {"a1": 0, "b1": 3, "a2": 100, "a3": 150},
        "a's queue stops at a2 (24 GPUs, blocked): a3 waits. b's queue is separate: b1 fits at 3. "
        "a2 starts when a1 ends (100), a3 when a2 ends (150).",
        {"backfill": NONE},
    ),
    Scenario(
        "easy-holder-starts-between-deep-scans",
        "hgx2",
        (("A", "a", 0, 8, 100), ("X", "a", 0, 8, 85), ("B", "a", 1, 16, 50)),
        {"A": 0, "X": 0, "B": 100},
        "Deep scans every 30 s. B (16 GPUs) is blocked; the deep scan when X ends at 85 gives it "
        "the reservation (shadow 100, A's estimated end). A ends at 100, 15 s after that scan: "
        "the pass there tries heads only, and B is the head and holds the reservation, so it "
        "starts at once (its own reservation does not hold it back until the scan at 115).",
        {"backfill": EASY, "backfill_interval_s": 30.0},
        ends={"B": 150},
    ),
    Scenario(
        "easy-between-deep-scans-others-respect-the-reservation",
        "hgx2",
        (
            ("A", "a", 0, 8, 100),
            ("X", "a", 0, 8, 85),
            ("B", "a", 1, 16, 50),
            ("C", "a", 2, 8, 40),
        ),
        {"A": 0, "X": 0, "B": 100, "C": 150},
        "As above, with an 8-GPU C waiting behind B. The deep scan at 85 tries C on X's 8 free "
        "GPUs: it would end at 125, after B's shadow (100), and there is no spare: it waits. "
        "At 100 B (the holder) starts on all 16; C starts when B ends at 150.",
        {"backfill": EASY, "backfill_interval_s": 30.0},
        ends={"B": 150, "C": 190},
    ),
    Scenario(
        "easy-per-tenant",
        "cohort3",
        PER_TENANT,
        {"a1": 0, "a3": 2, "b1": 3, "a2": 100},
        "a2 reserved at 100; a3 (ends 12) and b1 (ends 13) end before it: both backfill.",
        {"backfill": EASY},
    ),
    # ------------------------------------------------------------------ preemption
    Scenario(
        "priority-preemption-loses-work-since-checkpoint",
        "hgx1",
        CKPT,
        {"A": 0, "B": 250},
        "B (class 100) evicts A at 250. A checkpointed at 100 and 200: keeps 200 s, loses 50. It "
        "restarts when B ends (350), pays 60 s, does the remaining 800: ends 350+60+800 = 1210.",
        {"policy": "priority"},
        ends={"B": 350, "A": 1210},
        preemptions={"A": 1},
    ),
    Scenario(
        "priority-preemption-for-each-waiting-job",
        "hgx2",
        (
            ("L1", "a", 0, 8, 1000),
            ("L2", "a", 0, 7, 1000),
            ("S", "a", 0, 1, 100),
            ("H1", "a", 100, 8, 500, {"priority": 100}),
            ("H2", "a", 100, 8, 500, {"priority": 100}),
        ),
        {"H1": 100, "H2": 100},
        "S ends at 100 (1 GPU free on L2's server). H1 evicts L2 (loses 700 GPU-s < L1's 800), H2 "
        "evicts L1: both class-100 jobs start at 100 and end at 600; L1 and L2 (15 GPUs) restart "
        "at 600: 600 + 60 + 1000 = 1660.",
        {"policy": "priority"},
        ends={"H1": 600, "H2": 600, "L1": 1660, "L2": 1660},
        preemptions={"L1": 1, "L2": 1},
    ),
    Scenario(
        "priority-preemption-under-fifo",
        "hgx1",
        CKPT,
        {"A": 0, "B": 250},
        "Priority preemption does not depend on the ordering policy when the job is at the head.",
        {"policy": "fifo"},
        ends={"B": 350, "A": 1210},
        preemptions={"A": 1},
    ),
    Scenario(
        "restart-overhead-is-configurable",
        "hgx1",
        CKPT,
        {"A": 0, "B": 250},
        "Same with restart_overhead_s = 0: 350 + 800 = 1150.",
        {"policy": "priority", "restart_overhead_s": 0.0},
        ends={"A": 1150},
        preemptions={"A": 1},
    ),
    Scenario(
        "preemption-off",
        "hgx1",
        CKPT,
        {"A": 0, "B": 1000},
        "No preemption: B waits for A.",
        {"policy": "priority", "preemption": False},
        preemptions={"A": 0},
    ),
    Scenario(
        "non-preemptible-job-is-never-a-victim",
        "hgx1",
        (
            ("A", "a", 0, 8, 1000, {"preemptible": False}),
            ("B", "a", 250, 8, 100, {"priority": 100}),
        ),
        {"A": 0, "B": 1000},
        "A is not preemptible: B waits.",
        {"policy": "priority"},
        preemptions={"A": 0},
    ),
    Scenario(
        "same-class-no-preemption",
        "hgx1",
        (("A", "a", 0, 8, 1000), ("B", "a", 250, 8, 100)),
        {"A": 0, "B": 1000},
        "Equal classes: no eviction.",
        {"policy": "priority"},
        preemptions={"A": 0},
    ),
    Scenario(
        "quota-reclaim",
        "cohort2",
        (
            ("a1", "a", 0, 8, 1000, {"checkpoint_s": 50}),
            ("a2", "a", 0, 8, 1000),
            ("b1", "b", 100, 8, 100),
        ),
        {"a1": 0, "a2": 0, "b1": 100},
        "a uses 16 (8 borrowed from b). b1 asks for b's nominal at 100: reclaim. a1 checkpointed "
        "at 100 (loses nothing) and a2 would lose 800 GPU-s: a1 is the victim. a1 restarts when "
        "b1 ends (200): 200 + 60 + 900 = 1160.",
        ends={"a1": 1160, "a2": 1000, "b1": 200},
        preemptions={"a1": 1, "a2": 0},
    ),
    Scenario(
        "victim-least-work-lost",
        "hgx2",
        (
            ("V1", "a", 0, 8, 1000),
            ("V2", "a", 0, 8, 1000, {"checkpoint_s": 30}),
            ("H", "a", 100, 8, 10, {"priority": 100}),
        ),
        {"V1": 0, "V2": 0, "H": 100},
        "At 100 V1 would lose 800 GPU-s, V2 (checkpoint at 90) 80: V2 is evicted and restarts at "
        "110 with 910 s left: 110 + 60 + 910 = 1080.",
        {"policy": "priority"},
        ends={"V1": 1000, "V2": 1080},
        preemptions={"V1": 0, "V2": 1},
    ),
    Scenario(
        "victim-fewest-gpus-beyond-need",
        "hgx2",
        (
            ("V1", "a", 0, 8, 1000, {"checkpoint_s": 10}),
            ("V2", "a", 0, 2, 1000, {"checkpoint_s": 10}),
            ("V3", "a", 0, 6, 1000, {"preemptible": False}),
            ("H", "a", 100, 2, 10, {"priority": 100}),
        ),
        {"V1": 0, "V2": 0, "H": 100},
        "Both V1 and V2 checkpointed at 100 (lose nothing). H needs 2: V2 frees exactly 2, V1 "
        "would free 6 beyond the need. V2 restarts at 110: 110 + 60 + 900 = 1070.",
        {"policy": "priority"},
        ends={"V1": 1000, "V2": 1070},
        preemptions={"V1": 0, "V2": 1},
    ),
    Scenario(
        "no-preemption-loop",
        "hgx1",
        (
            ("Y", "a", 0, 8, 2000),
            ("X", "a", 20, 4, 5000),
            ("W", "a", 21, 4, 100),
            ("W2", "a", 2600, 2, 100),
        ),
        {"Y": 0, "X": 20, "W": 21, "W2": 2600},
        "LAS thresholds 100 and 10000 GPU-s. X (queue 0) evicts Y (160 GPU-s: queue 1) at 20. "
        "By the pass at 2700 (W2 ends) X has 4 x 2680 = 10720 GPU-s: queue 2, worse than Y's "
        "queue 1, so Y would evict X, but Y was preempted for X: no loop. Y waits for X to end "
        "(5020): 5020 + 60 + 2000 = 7080.",
        {"policy": "las", "las": LasParams((100.0, 10000.0))},
        ends={"X": 5020, "Y": 7080},
        preemptions={"X": 0, "Y": 1},
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(sc: Scenario) -> None:
    jobs = [
        make_job(j[0], j[1], float(j[2]), j[3], float(j[4]), **(j[5] if len(j) > 5 else {}))
        for j in sc.jobs
    ]
    got = simulate(FLEETS[sc.fleet](), jobs, **sc.config)
    assert {k: got[k].first_start_s for k in sc.starts} == pytest.approx(sc.starts), sc.why
    if sc.ends:
        assert {k: got[k].end_s for k in sc.ends} == pytest.approx(sc.ends), sc.why
    if sc.preemptions:
        assert {k: got[k].preemptions for k in sc.preemptions} == sc.preemptions, sc.why
    assert all(j.state == JobState.COMPLETED for j in got.values())


def test_preempted_job_history_and_lost_work() -> None:
    """The victim of a priority preemption: its lifecycle history and the work it lost
    (50 s x 8 GPUs since its checkpoint at 200)."""
    jobs = [
        make_job("A", checkpoint_s=100.0, run=1000.0),
        make_job("B", submit=250.0, priority=100),
    ]
    got = simulate(hgx_topo(1), jobs, policy="priority")
    a = got["A"]
    assert a.history == [
        (0.0, JobState.PENDING),
        (0.0, JobState.RUNNING),
        (250.0, JobState.PREEMPTED),
        (250.0, JobState.PENDING),
        (350.0, JobState.RUNNING),
        (1210.0, JobState.COMPLETED),
    ]
    assert a.lost_preempt_gpu_s == pytest.approx(50.0 * 8)
    assert a.preempted_for == {"B"}


def test_no_preemption_loop_driven_directly() -> None:
    """Drive the core by hand: X evicts Y; later X sinks below Y in LAS, and a full pass runs.
    Y must not evict X. Control: forget that Y was preempted for X, and the same pass does
    evict X, so it is the rule, not something else, that stops the loop."""
    sched = Scheduler(hgx_topo(1), SchedulerConfig(policy="las", las=LasParams((100.0, 10000.0))))
    y = make_job("Y", run=2000.0)
    x = make_job("X", submit=20.0, gpus=4, run=5000.0)
    sched.submit(y, 0.0)
    assert sched.schedule(0.0).started == [y]
    sched.submit(x, 20.0)
    res = sched.schedule(20.0)
    assert res.started == [x]
    assert res.preempted == [y]
    assert y.preempted_for == {"X"}
    # At 3000 X holds 4 x 2980 GPU-s (queue 2); Y is in queue 1 and needs X's GPUs.
    sched.capacity_changed()
    res = sched.schedule(3000.0)
    assert res.preempted == []
    assert res.started == []
    assert x.state == JobState.RUNNING
    y.preempted_for = frozenset()
    sched.capacity_changed()
    res = sched.schedule(3001.0)
    assert res.preempted == [x]
    assert res.started == [y]
    sched.cs.check()


# ---------------------------------------------------------------------- core odds and ends
def test_cancel_pending_and_running_jobs() -> None:
    sched = Scheduler(hgx_topo(1))
    run, wait = make_job("run"), make_job("wait", submit=1.0)
    sched.submit(run, 0.0)
    sched.schedule(0.0)
    sched.submit(wait, 1.0)
    assert sched.schedule(1.0).started == []
    sched.cancel(wait, 2.0)
    assert wait.state == JobState.CANCELLED
    assert sched.pending_count == 0
    sched.cancel(run, 3.0)
    assert run.history[-1] == (3.0, JobState.CANCELLED)
    assert list(sched.cs.class_free) == [8]
    assert sched.quota.cells[sched.tenant_index["a"]][0].used == 0
    sched.cs.check()
    # the cancelled job's stale queue entry never starts
    assert sched.schedule(4.0).started == []


def test_duplicate_submit_raises() -> None:
    sched = Scheduler(hgx_topo(1))
    first = make_job("x")
    sched.submit(first, 0.0)
    with pytest.raises(ValueError, match="already submitted"):
        sched.submit(make_job("x"), 0.0)
    with pytest.raises(ValueError, match="already submitted"):
        sched.submit(first, 0.0)  # the same object again
    assert sched.by_id["x"].job is first
    assert [seat.job for seat in sched.seats] == [first]


def test_pass_without_changes_decides_nothing() -> None:
    sched = Scheduler(hgx_topo(1))
    sched.submit(make_job("x", gpus=4), 0.0)
    assert len(sched.schedule(0.0).started) == 1
    before = sched.passes
    assert sched.schedule(5.0).started == []
    assert sched.passes == before  # nothing changed: no pass at all


def test_policy_registry() -> None:
    assert {p.value for p in REGISTRY} == {"fifo", "sjf", "las", "fair", "priority"}
    for name in REGISTRY:
        assert make_policy(name).name == name
    with pytest.raises(ValueError, match=r"unknown 'bogus'.*fifo"):
        make_policy("bogus")
    with pytest.raises(ValueError, match="twice"):
        register(PolicyName.FIFO, FifoPolicy)
    with pytest.raises(ValueError, match="policy"):
        Scheduler(hgx_topo(1), SchedulerConfig(policy="bogus"))


def test_las_queues_and_thresholds() -> None:
    las = LasPolicy((100.0, 1000.0))
    assert [las.queue_of(x) for x in (0.0, 99.9, 100.0, 999.0, 1000.0, 1e9)] == [0, 0, 1, 1, 2, 2]
    job = make_job("j", gpus=4)
    job.state = JobState.RUNNING
    job.run_start_s = 10.0
    assert las.rank(job, 34.0) == 0  # 4 x 24 = 96 GPU-s
    assert las.rank(job, 36.0) == 1  # 104 GPU-s
    with pytest.raises(ValueError, match="increasing"):
        LasPolicy((1000.0, 100.0))
    with pytest.raises(ValueError, match="positive"):
        LasPolicy((0.0,))


def test_decayed_usage_half_life_worked_by_hand() -> None:
    """10 GPUs held for one half-life from nothing: the decayed average is 10 x (1 - 1/2) = 5;
    released for another half-life: 5 / 2 = 2.5."""
    usage = DecayedUsage(1, 1, half_life_s=100.0)
    usage.change(0, 0, 10, 0.0)
    usage.advance(0, 100.0)
    assert usage.average_gpus(0)[0] == pytest.approx(5.0)
    usage.change(0, 0, -10, 100.0)
    usage.advance(0, 200.0)
    assert usage.average_gpus(0)[0] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="half_life"):
        DecayedUsage(1, 1, half_life_s=0.0)


def test_fair_share_is_weighted_by_entitlement() -> None:
    """Equal usage, unequal entitlement: the tenant entitled to more goes first."""
    policy = FairPolicy()
    big = TenantUsage(decayed_gpus=(4.0,), running_gpus=(4,), weight=0.75)
    small = TenantUsage(decayed_gpus=(4.0,), running_gpus=(4,), weight=0.25)
    usage = {"big": big, "small": small}
    assert policy.tenant_key("big", usage, (16,)) < policy.tenant_key("small", usage, (16,))
    # (4 + 4) / (2 x 16) / 0.25 = 1.0
    assert policy.tenant_key("small", usage, (16,)) == pytest.approx(1.0)


def test_a_head_turned_away_for_quota_is_reconsidered_once_gpus_run_short() -> None:
    """Between deep scans, a head turned away only by its tenant's quota is not remembered
    as turned away: once an allocation leaves its class short of GPUs, the job would now
    make the class's reservation, and the next pass must let it.

    Three HGX nodes; a holds 8 GPUs of quota, b 16; a 30 s backfill interval.
    t=0 a1 (a, 8) starts: a's quota is full. t=1 j (a, 8) waits for quota, 16 GPUs free.
    t=2 (deep scan) x (b, 1) starts; t=3 y (b, 1). t=4 z (b, 7) starts in a pass between
    scans that found j turned away (for quota alone): 7 GPUs are left, fewer than j's 8.
    t=5 w (b, 1) arrives: in that pass j is blocked for GPUs and gets the reservation
    (w still starts: it fits in the spare GPUs).
    """
    topo = hgx_topo(3, tenants=[tenant("a", {"h100": 8}), tenant("b", {"h100": 16})])
    sched = Scheduler(topo, SchedulerConfig(backfill_interval_s=30.0))
    steps = [("a1", "a", 0.0, 8), ("j", "a", 1.0, 8), ("x", "b", 2.0, 1)]
    steps += [("y", "b", 3.0, 1), ("z", "b", 4.0, 7), ("w", "b", 5.0, 1)]
    started: dict[str, float] = {}
    for name, who, at, gpus in steps:
        sched.submit(make_job(name, who, at, gpus, 1000.0), at)
        started |= {job.id: at for job in sched.schedule(at).started}
    assert started == {"a1": 0.0, "x": 2.0, "y": 3.0, "z": 4.0, "w": 5.0}
    holders = [sched.seats[r.holder].job.id for r in sched._reservations.values()]
    assert holders == ["j"]


def test_a_head_turned_away_for_quota_is_asked_again_after_an_earlier_head_starts() -> None:
    """Within one pass between deep scans: a head turned away only by its quota, with GPUs
    to spare, must still be asked when its turn in the merge comes, because an earlier
    head that starts can leave the class short of GPUs, and the job then makes the
    class's reservation (a pass that set such heads aside with the ones turned away by
    reservations would miss it).

    Three HGX nodes; a, b and c hold 8 GPUs of quota each; a 30 s backfill interval.
    t=0 a1 (a, 8), b1 (b, 4, ends at t=10) and c1 (c, 4) start: 8 GPUs free.
    t=0.5 z (b, 8) waits for b's quota; t=1 j (a, 8) waits for a's (deep scan at t=1:
    no reservation, both have GPUs). t=10 b1 ends; in that pass z starts first (earlier
    submit) and leaves 4 GPUs, fewer than j's 8: j gets the reservation.
    """
    topo = hgx_topo(
        3, tenants=[tenant("a", {"h100": 8}), tenant("b", {"h100": 8}), tenant("c", {"h100": 8})]
    )
    sched = Scheduler(topo, SchedulerConfig(backfill_interval_s=30.0))
    started: dict[str, float] = {}
    steps = [("a1", "a", 0.0, 8, 1000.0), ("b1", "b", 0.0, 4, 10.0), ("c1", "c", 0.0, 4, 1000.0)]
    steps += [("z", "b", 0.5, 8, 1000.0), ("j", "a", 1.0, 8, 1000.0)]
    for name, who, at, gpus, run in steps:
        sched.submit(make_job(name, who, at, gpus, run), at)
        started |= {job.id: at for job in sched.schedule(at).started}
    assert started == {"a1": 0.0, "b1": 0.0, "c1": 0.0}
    assert not sched._reservations
    sched.finish(sched.by_id["b1"].job, 10.0)
    started |= {job.id: 10.0 for job in sched.schedule(10.0).started}
    assert started["z"] == 10.0
    holders = [sched.seats[r.holder].job.id for r in sched._reservations.values()]
    assert holders == ["j"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("policy", "bogus"),
        ("restart_overhead_s", -1.0),
        ("checkpoint_write_s", float("nan")),
        ("backfill_interval_s", float("inf")),
        ("fair", FairParams(0.0)),
        ("las", LasParams((2000.0, 100.0))),
        ("las", LasParams((float("nan"),))),
        ("backfill_depth", 0),
    ],
)
def test_a_config_out_of_bounds_is_refused_naming_its_field(field: str, value: object) -> None:
    name = field if field not in {"fair", "las"} else f"{field}\\.[a-z_]+"
    with pytest.raises(ValueError, match=f"scheduler config: {name}:"):
        SchedulerConfig(**{field: value})  # type: ignore[arg-type]  # (each field's bad value)


def test_the_wakeup_comes_with_the_pass_that_asks_for_it() -> None:
    """With a backfill interval, a pass that leaves preemption to the next deep scan says
    in its result when that scan is due; the deep scan itself asks for no wake-up."""
    sched = Scheduler(hgx_topo(1), SchedulerConfig(backfill_interval_s=30.0))
    sched.submit(make_job("a", gpus=8, run=1000.0), 0.0)
    sched.capacity_changed()  # a full pass at t=0: the deep scan of that instant
    first = sched.schedule(0.0)
    assert [j.id for j in first.started] == ["a"]
    assert first.wakeup_s is None
    sched.submit(make_job("b", gpus=8, submit=1.0, run=1000.0, priority=5), 1.0)
    second = sched.schedule(1.0)
    assert not second.started
    assert second.wakeup_s == 30.0  # the next deep scan, where b may preempt a
    assert sched.schedule(2.0).wakeup_s == 30.0  # a pass between scans asks again
    deep = sched.schedule(30.0)
    assert [j.id for j in deep.preempted] == ["a"]
    assert [j.id for j in deep.started] == ["b"]
    assert deep.wakeup_s is None


# The scenarios of the two bugs the turned-away shortcuts once had (commits a8a5868 and
# 4c20143), replayed with the shortcuts on and off: both must decide the same.
# Events: ("submit", job, tenant, time, GPUs, run seconds) or ("finish", job, time).
SHORTCUT_CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[Any, ...]]]] = {
    "quota-alone head gets the reservation once GPUs run short (a8a5868)": (
        [tenant("a", {"h100": 8}), tenant("b", {"h100": 16})],
        [
            ("submit", "a1", "a", 0.0, 8, 1000.0),
            ("submit", "j", "a", 1.0, 8, 1000.0),
            ("submit", "x", "b", 2.0, 1, 1000.0),
            ("submit", "y", "b", 3.0, 1, 1000.0),
            ("submit", "z", "b", 4.0, 7, 1000.0),
            ("submit", "w", "b", 5.0, 1, 1000.0),
        ],
    ),
    "quota-alone head is asked after an earlier head starts (4c20143)": (
        [tenant("a", {"h100": 8}), tenant("b", {"h100": 8}), tenant("c", {"h100": 8})],
        [
            ("submit", "a1", "a", 0.0, 8, 1000.0),
            ("submit", "b1", "b", 0.0, 4, 10.0),
            ("submit", "c1", "c", 0.0, 4, 1000.0),
            ("submit", "z", "b", 0.5, 8, 1000.0),
            ("submit", "j", "a", 1.0, 8, 1000.0),
            ("finish", "b1", 10.0),
            ("finish", "a1", 40.0),
        ],
    ),
}


def _replay(
    tenants: list[dict[str, Any]], events: list[tuple[Any, ...]], *, shortcuts: bool
) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Every decision of a replay (started/preempted, job, time) and the final holders."""
    sched = Scheduler(
        hgx_topo(3, tenants=tenants),
        SchedulerConfig(backfill_interval_s=30.0, tuning=Tuning(shortcuts=shortcuts)),
    )
    decisions: list[tuple[str, str, float]] = []
    for event in events:
        if event[0] == "submit":
            _, name, who, at, gpus, run = event
            sched.submit(make_job(name, who, at, gpus, run), at)
        else:
            _, name, at = event
            sched.finish(sched.by_id[name].job, at)
        res = sched.schedule(at)
        decisions += [("start", j.id, at) for j in res.started]
        decisions += [("preempt", j.id, at) for j in res.preempted]
    holders = sorted(sched.seats[r.holder].job.id for r in sched._reservations.values())
    return decisions, holders


@pytest.mark.parametrize("name", list(SHORTCUT_CASES))
def test_the_shortcuts_decide_as_the_reference_in_the_scenarios_of_their_bugs(name: str) -> None:
    tenants, events = SHORTCUT_CASES[name]
    reference = _replay(tenants, events, shortcuts=False)
    assert _replay(tenants, events, shortcuts=True) == reference
    assert reference[1] == ["j"] or any(d[1] == "j" for d in reference[0])


def test_preemption_rules_are_a_registry_by_reason() -> None:
    assert set(RULES) == set(PreemptReason)
    with pytest.raises(ValueError, match="twice"):
        register_rule(PreemptReason.RANK, RULES[PreemptReason.RANK])
