"""Sites under their power caps (issue #18 §1).

Hand cases on HGX H100 servers (8 GPUs; 700 W busy, 150 W idle per GPU in the catalogue)
at sites whose cap (power_mw / PUE) holds the idle draw plus a given number of busy
servers, worked by hand; and a Hypothesis test over random fleets and caps, run through
the checked twin, that no site ever draws more than its cap (builders.check_power after
every event), with the rule off as the control where caps are passed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aifactory.fleet import Topology, compile_topology
from aifactory.scheduler.config import SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.simulator import TwinConfig
from aifactory.workload.job import Job, JobState
from builders import check_invariants, checked_simulation, hgx, make_fleet, make_job, tenant

PUE = 1.2  # make_fleet's
IDLE_W, EXTRA_W = 150.0, 550.0  # h100: idle, and busy over idle, per GPU


def cap_mw(servers: int, busy_servers: float) -> float:
    """A site's power_mw for ``servers`` HGX servers of which ``busy_servers`` may be busy."""
    it_w = servers * 8 * IDLE_W + busy_servers * 8 * EXTRA_W
    return it_w * PUE / 1e6


def fleet(servers: list[int], busy: list[float]) -> Topology:
    """One pod per site of HGX H100 servers, owned by tenant 'a' with all of them as quota."""
    sites = [[[hgx(n)]] for n in servers]
    caps = [cap_mw(n, b) for n, b in zip(servers, busy, strict=True)]
    return compile_topology(
        make_fleet(sites, [tenant("a", {"h100": 8 * sum(servers)})], power_mw=caps)
    )


def site_of(sched: Scheduler, job: Job) -> set[int]:
    cs = sched.cs
    return {cs.pod_site[cs.dom_pod[cs.node_dom[n]]] for n, _mask in job.placement}


def test_a_start_that_would_pass_the_cap_waits_with_reason_power_cap() -> None:
    sched = Scheduler(fleet([4], [2.5]))  # room for 2 busy servers of 4
    jobs = [make_job(f"j{i}", gpus=8, run=100.0) for i in range(3)]
    for j in jobs:
        sched.submit(j, 0.0)
    sched.schedule(0.0)
    check_invariants(sched)
    assert [j.state for j in jobs] == [JobState.RUNNING, JobState.RUNNING, JobState.PENDING]
    assert sched.pending_reason(jobs[2]) == "power_cap"
    sched.finish(jobs[0], 100.0)
    sched.schedule(100.0)
    check_invariants(sched)
    assert jobs[2].state is JobState.RUNNING


def test_without_the_rule_the_cap_is_passed() -> None:
    sched = Scheduler(fleet([4], [2.5]), SchedulerConfig(power_cap=False))
    jobs = [make_job(f"j{i}", gpus=8) for i in range(3)]
    for j in jobs:
        sched.submit(j, 0.0)
    sched.schedule(0.0)
    assert all(j.state is JobState.RUNNING for j in jobs)


def test_a_site_at_its_cap_is_passed_over_for_one_with_room() -> None:
    # site 0 (one server busy already) is the best fit; its cap allows just that one
    sched = Scheduler(fleet([2, 4], [1.0, 4.0]))
    first = make_job("first", gpus=8)
    sched.submit(first, 0.0)
    sched.schedule(0.0)
    assert site_of(sched, first) == {0}  # best fit: the smaller site
    second = make_job("second", gpus=8)
    sched.submit(second, 1.0)
    sched.schedule(1.0)
    check_invariants(sched)
    assert site_of(sched, second) == {1}


def test_a_cross_site_gang_takes_no_more_of_a_site_than_its_room() -> None:
    # 16 GPUs: site 0 has room for 1 busy server, site 1 for 1: the gang needs both
    sched = Scheduler(fleet([2, 2], [1.0, 1.0]))
    gang = make_job("gang", gpus=16, allow_cross_site=True)
    sched.submit(gang, 0.0)
    sched.schedule(0.0)
    check_invariants(sched)
    assert gang.state is JobState.RUNNING
    assert site_of(sched, gang) == {0, 1}
    plain = make_job("plain", gpus=16)  # may not cross: no site has room for 16
    sched.submit(plain, 1.0)
    sched.schedule(1.0)
    assert plain.state is JobState.PENDING


@st.composite
def capped_fleets(draw: st.DrawFn) -> tuple[Topology, list[float]]:
    servers = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))]
    busy = [draw(st.floats(0.5, n + 0.5)) for n in servers]  # from one busy server to all
    return fleet(servers, busy), busy


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(capped_fleets(), st.data())
def test_no_site_ever_draws_more_than_its_cap(
    case: tuple[Topology, list[float]], data: Any
) -> None:
    topo, _busy = case
    jobs = [
        Job(
            f"j{i}",
            "a",
            data.draw(st.floats(0.0, 100.0)),
            data.draw(st.sampled_from([1, 2, 4, 8, 8, 16])),
            data.draw(st.floats(1.0, 200.0)),
            priority=data.draw(st.sampled_from([0, 0, 100])),
            allow_cross_site=data.draw(st.booleans()),
        )
        for i in range(data.draw(st.integers(1, 20)))
    ]
    cfg = SchedulerConfig(policy=data.draw(st.sampled_from(["fifo", "las", "fair"])))
    result, checks = checked_simulation(topo, jobs, cfg, TwinConfig(seed=0))
    assert checks >= result.events  # check_power held before every event
    event(f"a start was refused for power: {result.scheduler.power.refused > 0}")
