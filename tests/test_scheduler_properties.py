"""Property tests over random small fleets and workloads (issue #3 §10, first bullet).

Each example builds a random fleet (1-2 sites, 1-2 pods each, HGX H100 servers and shrunk
GB200 NVL domains), random tenants (with or without a cohort, random nominal / lending /
borrowing limits) and up to 20 random jobs, and runs the real twin with a kernel that
checks every invariant of ``builders.check_invariants`` after every event: no GPU
allocated twice, free + used (+ down) = capacity, gangs all-or-nothing, quota ceilings and
lending limits, in one site unless allowed. At the end: every job is terminal (completed
or rejected), every JCT >= its run time, and the same seed gives the same summary.
Failures are injected in some examples (a made-up high rate) to exercise eviction paths.
A differential property checks that the scheduler's shortcuts (every memo and skip of
``aifactory.scheduler.shortcuts``) never change a decision, and a seeded test that the
comparison takes each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aifactory.fleet import Topology, compile_topology
from aifactory.scheduler.config import BackfillMode, SchedulerConfig, Tuning
from aifactory.scheduler.policies.fair import FairParams
from aifactory.scheduler.policies.las import LasParams
from aifactory.scheduler.shortcuts import NAMES
from aifactory.twin.failures import FailureInjector
from aifactory.twin.results import summarize
from aifactory.twin.simulator import SimResult, TwinConfig
from aifactory.workload.job import Job, JobState
from builders import checked_simulation, hgx, make_fleet, nvl, tenant

POLICIES = ("fifo", "sjf", "las", "fair", "priority")
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------ a fake failure model
@dataclass(frozen=True)
class _Cause:
    name: str
    scope: str

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(10.0, 200.0))


@dataclass(frozen=True)
class _Model:
    """High rate so that a few failures land in a ~1000 s run of a ~50-GPU fleet."""

    rate: float

    @property
    def rate_per_gpu_hour(self) -> float:
        return self.rate

    def sample_cause(self, rng: np.random.Generator) -> Any:
        return _Cause("node", "node") if rng.random() < 0.5 else _Cause("soft", "job")


# ------------------------------------------------------------------ strategies
@st.composite
def fleets(draw: st.DrawFn) -> Topology:
    sites = []
    for _ in range(draw(st.integers(1, 2))):
        pods = []
        for _ in range(draw(st.integers(1, 2))):
            groups = []
            if draw(st.booleans()):
                groups.append(hgx(draw(st.integers(1, 3)), owner="t0"))
            if draw(st.booleans()) or not groups:
                groups.append(
                    nvl(
                        draw(st.integers(1, 2)),
                        owner="t0",
                        nodes_per_domain=draw(st.integers(2, 3)),
                    )
                )
            pods.append(groups)
        sites.append(pods)
    # class capacities, to split quotas without exceeding them
    cap: dict[str, int] = {}
    for pods in sites:
        for groups in pods:
            for g in groups:
                per_domain = 8 if g["model"] == "h100" else 4 * g["nodes_per_domain"]
                cap[g["model"]] = cap.get(g["model"], 0) + g["domains"] * per_domain
    n_tenants = draw(st.integers(1, 3))
    left = dict(cap)
    tenants = []
    for i in range(n_tenants):
        quotas: dict[str, int | dict[str, Any]] = {}
        for cls in cap:
            if i and not draw(st.booleans()):
                continue
            # sizeable shares: quota-less tenants would only exercise rejection
            nominal = draw(st.sampled_from([left[cls], left[cls] // 2, left[cls] // 3, 0]))
            left[cls] -= nominal
            q: dict[str, Any] = {"nominal": nominal}
            if draw(st.booleans()):
                q["lending_limit"] = draw(st.integers(0, nominal))
            if draw(st.booleans()):
                q["borrowing_limit"] = draw(st.integers(0, 24))
            quotas[cls] = q
        cohort = "c" if draw(st.integers(0, 3)) else None
        tenants.append(tenant(f"t{i}", quotas, cohort=cohort))
    return compile_topology(make_fleet(sites, tenants))


JobSpec = tuple[Any, ...]


@st.composite
def workloads(draw: st.DrawFn, topo: Topology, most: int = 20) -> list[JobSpec]:
    names = [t.name for t, _, _ in topo.fleet.iter_tenants()]
    classes = [None, *topo.classes]
    n = draw(st.integers(1, most))
    specs = []
    for i in range(n):
        run = draw(st.floats(1.0, 400.0, allow_nan=False))
        est_factor = draw(st.sampled_from([None, 0.3, 1.0, 3.0]))
        specs.append(
            (
                f"j{i}",
                draw(st.sampled_from([*names * 12, "ghost"])),
                draw(st.floats(0.0, 600.0, allow_nan=False)),
                draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4, 4, 8, 8, 12, 16, 24, 40])),
                run,
                {
                    "estimate_s": None if est_factor is None else run * est_factor,
                    "gpu_class": draw(st.sampled_from(classes)) if draw(st.booleans()) else None,
                    "priority": draw(st.sampled_from([0, 0, 100])),
                    "preemptible": draw(st.integers(0, 4)) > 0,
                    "checkpoint_s": draw(st.sampled_from([None, 15.0, 60.0])),
                    "allow_cross_site": draw(st.booleans()),
                },
            )
        )
    return specs


@st.composite
def cases(
    draw: st.DrawFn, most_jobs: int = 20
) -> tuple[Topology, list[JobSpec], SchedulerConfig, float]:
    topo = draw(fleets())
    specs = draw(workloads(topo, most_jobs))
    cfg = SchedulerConfig(
        policy=draw(st.sampled_from(POLICIES)),
        backfill=draw(st.sampled_from(list(BackfillMode))),
        preemption=draw(st.booleans()) or draw(st.booleans()),
        restart_overhead_s=draw(st.sampled_from([0.0, 60.0])),
        checkpoint_write_s=draw(st.sampled_from([0.0, 5.0])),
        las=LasParams(draw(st.sampled_from([(3600.0,), (200.0, 2000.0)]))),
        fair=FairParams(draw(st.sampled_from([600.0, 7 * 86400.0]))),
        # 0: a deep scan on every pass; 30: heads only between scans, as the main job runs.
        backfill_interval_s=draw(st.sampled_from([0.0, 0.0, 30.0])),
    )
    failure_rate = draw(st.sampled_from([0.0, 0.0, 0.5]))
    return topo, specs, cfg, failure_rate


def build(specs: list[JobSpec]) -> list[Job]:
    return [Job(s[0], s[1], s[2], s[3], s[4], **s[5]) for s in specs]


def run(
    topo: Topology, specs: list[JobSpec], cfg: SchedulerConfig, rate: float, seed: int = 0
) -> tuple[SimResult, int]:
    injector = FailureInjector(_Model(rate)) if rate else None
    return checked_simulation(topo, build(specs), cfg, TwinConfig(seed=seed), injector)


def summary_of(result: SimResult, cfg: SchedulerConfig) -> dict[str, Any]:
    s = summarize(
        result, fleet="tiny", trace="t", policy=cfg.policy, backfill=cfg.backfill.value, seed=0
    )
    del s["wall_s"]
    return s


# ------------------------------------------------------------------ properties
@SETTINGS
@given(cases())
def test_invariants_hold_after_every_event_and_every_job_ends(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float],
) -> None:
    topo, specs, cfg, rate = case
    result, checks = run(topo, specs, cfg, rate)
    assert checks >= result.events  # the kernel checked before every event it handed out
    jobs = result.jobs
    rejected = sum(result.rejected.values())
    completed = [j for j in jobs if j.state == JobState.COMPLETED]
    # every job ends in a terminal state: completed, or rejected with a reason
    assert all(j.done for j in jobs), [j for j in jobs if not j.done]
    assert len(completed) + rejected == len(jobs)
    for j in jobs:
        if j.state == JobState.FAILED:
            assert j.first_start_s is None, f"{j.id} failed after starting (no time limits here)"
        assert j.history[0] == (j.submit_s, JobState.PENDING)
        times = [t for t, _ in j.history]
        assert times == sorted(times), f"{j.id}: history goes back in time"
    for j in completed:
        assert j.first_start_s is not None
        assert j.end_s is not None
        assert j.first_start_s >= j.submit_s
        # JCT >= run time (equality only for a job that never waited nor restarted)
        assert j.end_s - j.submit_s >= j.duration_s - 1e-6, j
        assert j.end_s - j.first_start_s >= j.duration_s - 1e-6, j
        if j.preemptions == 0 and j.failures == 0 and not cfg.checkpoint_write_s:
            # one uninterrupted run without checkpoint writes takes exactly its run time
            assert abs(j.end_s - j.first_start_s - j.duration_s) < 1e-6, j
    assert result.scheduler.preemptions == sum(j.preemptions for j in jobs)
    event(f"completed {'0' if not completed else '>0'}")
    event(f"preemptions {'>0' if result.scheduler.preemptions else '0'}")
    event(f"failures {'>0' if result.failures else '0'}")
    event(f"rejected {'>0' if rejected else '0'}")
    if not cfg.preemption:
        assert result.scheduler.preemptions == 0
    s = summary_of(result, cfg)
    assert s["completed"] + s["unfinished"] + s["rejected"] == s["jobs"] == len(specs)
    assert s["unfinished"] == 0
    if completed:
        assert 0.0 < s["utilization"] <= 1.0 + 1e-9


@settings(SETTINGS, max_examples=60)
@given(cases(), st.integers(0, 2**16))
def test_same_seed_same_summary(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float], seed: int
) -> None:
    topo, specs, cfg, rate = case
    one, _ = run(topo, specs, cfg, rate or 0.5, seed)
    two, _ = run(topo, specs, cfg, rate or 0.5, seed)
    assert summary_of(one, cfg) == summary_of(two, cfg)
    assert [(j.id, j.first_start_s, j.end_s, j.state) for j in one.jobs] == [
        (j.id, j.first_start_s, j.end_s, j.state) for j in two.jobs
    ]


def decisions(result: SimResult) -> list[tuple[Any, ...]]:
    """Every decision about every job: its whole history (each start, eviction and end, with
    when), where it last ran (the topology level) and what it lost."""
    return [
        (j.id, tuple(j.history), j.level, j.preemptions, j.failures, j.progress_s)
        for j in result.jobs
    ]


def compare_with_reference(
    topo: Topology, specs: list[JobSpec], cfg: SchedulerConfig, rate: float
) -> dict[str, int]:
    """Run a case with the shortcuts on and off; assert that every decision is the same and
    that the reference took none; return how often each shortcut was taken."""
    fast, _ = run(topo, specs, cfg, rate)
    full, _ = run(topo, specs, replace(cfg, tuning=Tuning(shortcuts=False)), rate)
    assert decisions(fast) == decisions(full)
    assert not any(full.scheduler.shortcuts.taken().values()), full.scheduler.shortcuts.taken()
    return fast.scheduler.shortcuts.taken()


@settings(SETTINGS, max_examples=150)
@given(cases(most_jobs=60), st.booleans())
def test_shortcuts_change_no_decision(
    case: tuple[Topology, list[JobSpec], SchedulerConfig, float], between_scans: bool
) -> None:
    """Every memo and skip of :mod:`aifactory.scheduler.shortcuts` on, then every one off
    (the reference): every job starts, is evicted, ends and fails alike. Half the examples
    run with a backfill interval, where the turned-away skips act between deep scans."""
    topo, specs, cfg, rate = case
    if between_scans:
        cfg = replace(cfg, backfill=BackfillMode.EASY, backfill_interval_s=30.0)
    taken = compare_with_reference(topo, specs, cfg, rate)
    for name, count in taken.items():
        event(f"{name} {'>0' if count else '0'}")


def _busy_fleet() -> Topology:
    """Two classes in two sites, three tenants sharing a cohort with borrowing: enough
    contention that reservations, quota and preemption all turn jobs away."""
    sites = [
        [[hgx(3, owner="t0")], [nvl(2, owner="t0", nodes_per_domain=2)]],
        [[hgx(2, owner="t1")]],
    ]
    tenants = [
        tenant("t0", {"h100": {"nominal": 16, "borrowing_limit": 16}, "gb200": 8}, cohort="c"),
        tenant("t1", {"h100": {"nominal": 16, "lending_limit": 8}, "gb200": 8}, cohort="c"),
        tenant("t2", {"h100": 8, "gb200": {"nominal": 0, "borrowing_limit": 8}}, cohort="c"),
    ]
    return compile_topology(make_fleet(sites, tenants))


def _random_specs(rng: np.random.Generator, names: list[str], n: int) -> list[JobSpec]:
    sizes = [1, 1, 2, 2, 3, 4, 4, 8, 8, 12, 16, 24]
    specs: list[JobSpec] = []
    for i in range(n):
        run_s = float(rng.uniform(5.0, 400.0))
        specs.append(
            (
                f"j{i}",
                names[int(rng.integers(len(names)))],
                float(rng.uniform(0.0, 900.0)),
                sizes[int(rng.integers(len(sizes)))],
                run_s,
                {
                    "estimate_s": run_s * float(rng.choice([0.5, 1.0, 2.0])),
                    "gpu_class": [None, "h100", "gb200"][int(rng.integers(3))],
                    "priority": int(rng.choice([0, 0, 100])),
                    "preemptible": bool(rng.integers(5)),
                    "checkpoint_s": float(rng.choice([15.0, 60.0])),
                },
            )
        )
    return specs


def test_every_shortcut_is_taken_by_the_differential_runs() -> None:
    """The differential comparison covers every shortcut: over a few seeded busy workloads
    (every policy, with and without a backfill interval and failures), each memo and skip
    is taken at least once, and no decision differs from the reference's."""
    topo = _busy_fleet()
    total: dict[str, int] = dict.fromkeys(NAMES, 0)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        specs = _random_specs(rng, ["t0", "t1", "t2"], 70)
        for policy in POLICIES:
            for interval in (0.0, 30.0):
                cfg = SchedulerConfig(policy=policy, backfill_interval_s=interval)
                taken = compare_with_reference(topo, specs, cfg, 0.5 if seed % 2 else 0.0)
                for name, count in taken.items():
                    total[name] += count
    assert all(total.values()), f"shortcuts never taken: {total}"
