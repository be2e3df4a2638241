"""Cross-site gangs: the ring all-reduce model and the rule 'span only when it finishes
sooner than waiting', with hand-computed times.

Fleet: sites s0 and s1 with two 8-GPU H100 servers each, one 100 Gbit/s link (1.25e10
bytes/s) with 1 ms latency. The spanning job: 16 GPUs, 1,000 s of work, 1.25e10 gradient
bytes per 1 s step. Ring all-reduce on 2 sites (Patarasuk & Yuan 2009):
2 (2-1)/2 x 1.25e10 / 1.25e10 + 2 (2-1) x 0.001 = 1.002 s per step, so a step takes
2.002 s and the run 2,002 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from aifactory.fleet import compile_topology, parse_fleet
from aifactory.fleet.topology import Topology
from aifactory.physics.comm import ring_allreduce_s, span_slowdown
from aifactory.physics.links import Network
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.scheduler.sites import SiteOption, choose
from aifactory.twin.forecast import forecast
from aifactory.twin.netreport import network_summary
from aifactory.twin.simulator import Simulation
from aifactory.workload.job import Job
from builders import hgx, make_fleet, tenant


def topo() -> Topology:
    fleet = make_fleet([[[hgx(2)]], [[hgx(2)]]], [tenant("a", {"h100": 32})])
    raw: dict[str, Any] = fleet.model_dump(mode="json")
    raw["links"] = [{"a": "s0", "b": "s1", "gbps": 100.0, "latency_ms": 1.0}]
    return compile_topology(parse_fleet(raw))


def spanner(submit: float = 1.0) -> Job:
    return Job("j", "a", submit, 16, 1000.0, allow_cross_site=True, grad_bytes=1.25e10, step_s=1.0)


def run(jobs: list[Job]) -> dict[str, Job]:
    res = Simulation(topo(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    return {j.id: j for j in res.jobs}


def test_ring_allreduce_time() -> None:
    assert ring_allreduce_s(1.25e10, 2, 1.25e10, 0.001) == pytest.approx(1.002)
    # 4 members: 2 x 3/4 = 1.5 transfers of the buffer, 6 latencies.
    assert ring_allreduce_s(8.0, 4, 2.0, 0.5) == pytest.approx(6.0 + 3.0)
    assert ring_allreduce_s(8.0, 1, 2.0, 0.5) == 0.0
    net = Network(["x", "y", "z"], [("x", "y", 100.0, 1.0)])
    assert span_slowdown(net, [0, 1], 1.25e10, 1.0) == pytest.approx(2.002)
    assert span_slowdown(net, [0], 1.25e10, 1.0) == 1.0
    assert span_slowdown(net, [0, 2], 1.25e10, 1.0) == float("inf")  # no path
    assert span_slowdown(net, [0, 1], 0.0, 1.0) == 1.0  # no gradient size given


def test_spans_when_waiting_is_longer() -> None:
    # Blockers hold 8 GPUs at each site until 5,000 and 10,000: waiting finishes at
    # 5,000 + 1,000 = 6,000; spanning at 1 + 2,002 = 2,003.
    by = run(
        [
            Job("b0", "a", 0.0, 8, 5000.0, site="s0"),
            Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
            spanner(),
        ]
    )
    j = by["j"]
    assert j.level == "cross-site"
    assert j.first_start_s == 1.0
    assert j.slowdown == pytest.approx(2.002)
    assert j.end_s == pytest.approx(2003.0)


def test_waits_when_one_site_frees_sooner() -> None:
    # b0 ends at 500: waiting for s0 finishes at 1,500, before spanning's 2,003.
    by = run(
        [
            Job("b0", "a", 0.0, 8, 500.0, site="s0"),
            Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
            spanner(),
        ]
    )
    j = by["j"]
    assert j.level != "cross-site"
    assert j.first_start_s == 500.0
    assert j.end_s == 1500.0
    assert j.slowdown == 1.0


# ------------------------------------------------------------------ spanning from the data
# The spanning job now reads a 1.25e13-byte corpus kept at s0: alone on the link a copy
# to s1 takes 1.25e13 / 1.25e10 + 0.001 = 1,000.001 s (the chooser's estimate) and
# 1,000 s in flight (a copy streams: no latency). Spanning from s0 (its 8 free GPUs and
# 8 at s1) finishes at 1 + 2,002 = 2,003 and reads the corpus from s0 (nothing copied).


def data_spanner() -> Job:
    job = spanner()
    job.dataset, job.dataset_bytes, job.data_site = "corpus", 1.25e13, "s0"
    return job


def run_sim(jobs: list[Job]) -> tuple[Any, dict[str, Job]]:
    res = Simulation(topo(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    return res, {j.id: j for j in res.jobs}


def test_pinned_job_spans_from_its_data_when_that_finishes_first() -> None:
    # s0 frees at 10,000 (finish 11,000); s1 frees at 1,500 and the copy is there at
    # 1,001, so s1 finishes at 2,500; spanning finishes at 2,003: it spans from s0.
    res, by = run_sim(
        [
            Job("b0", "a", 0.0, 8, 10000.0, site="s0"),
            Job("b1", "a", 0.0, 8, 1500.0, site="s1"),
            data_spanner(),
        ]
    )
    j = by["j"]
    assert j.site == "s0"
    assert j.span_from_site
    assert j.level == "cross-site"
    assert j.first_start_s == 1.0
    assert j.end_s == pytest.approx(2003.0)
    assert j.staging_s == 0.0
    assert res.staging.copies_made == 0
    assert res.staging.spanned_jobs == 1


def test_pinned_job_waits_for_a_copy_when_that_finishes_first() -> None:
    # s1 frees at 900: the copy (there at 1,001) is the later, so s1 finishes at
    # 1,001.001 + 1,000 = 2,001.001 by the chooser's estimate, before spanning's 2,003:
    # it is copied to s1 and runs there, 1,001 -> 2,001.
    res, by = run_sim(
        [
            Job("b0", "a", 0.0, 8, 10000.0, site="s0"),
            Job("b1", "a", 0.0, 8, 900.0, site="s1"),
            data_spanner(),
        ]
    )
    j = by["j"]
    assert j.site == "s1"
    assert not j.span_from_site
    assert j.level != "cross-site"
    assert j.first_start_s == pytest.approx(1001.0)
    assert j.end_s == pytest.approx(2001.0)
    assert res.staging.copies_made == 1


def test_a_tie_goes_to_one_site() -> None:
    # Both finish at 2,000 from now = 0: the single site wins; a second sooner, the span.
    one = SiteOption(1, 500.0, 1000.0, 1000.0)
    span = SiteOption(0, 0.0, 0.0, 2000.0, spans=True)
    assert choose([span, one], 0.0) is one
    sooner = SiteOption(0, 0.0, 0.0, 1999.0, spans=True)
    assert choose([one, sooner], 0.0) is sooner
    # Holding GPUs from placement, the copy starts only at 500: s1 finishes at 2,500.
    assert choose([span, one], 0.0, hold=True) is span


# ------------------------------------------------------------------ links and GPU-hours
# The ring on two sites sends 2 (2-1)/2 x 1.25e10 = 1.25e10 bytes each way per step over
# the one link: 2.5e10 bytes a step, a step of 2.002 s, 1,000 steps in the 2,002 s run.


def test_spanning_traffic_counts_on_the_link() -> None:
    jobs = [
        Job("b0", "a", 0.0, 8, 5000.0, site="s0"),
        Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
        spanner(),
    ]
    res = Simulation(topo(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    spans = res.spans
    assert spans is not None
    assert spans.link_bytes == [pytest.approx(1000 * 2.5e10)]
    net = network_summary(res)
    link = net["links"]["s0-s1"]
    assert link["tb_moved"] == pytest.approx(25.0)
    # Samples every 300 s, 0 ... 10,200 (35: the last one comes after b1's end at
    # 10,000): the gang's 2.5e10 / 2.002 bytes/s of the link's 1.25e10 at the 6 samples
    # 300 ... 1,800 (0 and 2,100 on: idle).
    assert len(spans.samples) == 35
    assert link["peak_utilization"] == pytest.approx(2.0 / 2.002)
    assert link["avg_utilization"] == pytest.approx(6 * (2.0 / 2.002) / 35)
    cross = net["cross_site"]
    assert cross["jobs"] == 1
    assert cross["gpu_hours"] == pytest.approx(16 * 2002.0 / 3600.0)
    assert cross["avg_slowdown"] == pytest.approx(2.002)
    assert cross["gpu_hours_slowdown"] == pytest.approx(16 * 2002.0 / 3600.0 * (1 - 1 / 2.002))


def test_every_cross_site_run_counts() -> None:
    # j spans from 1; h (priority 10, 8 GPUs at s1, 100 s) evicts it at 1,000 (b1 may
    # not be evicted). b0 ends at 1,050, when s0 alone holds j: its second run is in one
    # site. Its cross-site GPU-hours are its first run's, 16 x 999 GPU-seconds.
    jobs = [
        Job("b0", "a", 0.0, 8, 1050.0, site="s0", preemptible=False),
        Job("b1", "a", 0.0, 8, 10000.0, site="s1", preemptible=False),
        spanner(),
        Job("h", "a", 1000.0, 8, 100.0, site="s1", priority=10, preemptible=False),
    ]
    res = Simulation(topo(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    by = {j.id: j for j in res.jobs}
    j = by["j"]
    assert j.preemptions == 1
    assert j.level != "cross-site"
    cross = network_summary(res)["cross_site"]
    assert cross["jobs"] == 1
    assert cross["gpu_hours"] == pytest.approx(16 * 999.0 / 3600.0)


# ------------------------------------------------------------------ estimates
def test_expected_end_and_forecast_use_the_slowed_run() -> None:
    # j spans at 1: its estimate is 1,000 s of work, 2,002 s slowed, so its expected end
    # is 2,003 (not 1,001). w (8 GPUs at s0, 100 s) waits for it: s0's GPUs are b0's
    # until 5,000 and j's until 2,003, so w is forecast to run 2,003 -> 2,103.
    sched = Scheduler(topo(), SchedulerConfig(backfill=BackfillMode.NONE))
    for job in (
        Job("b0", "a", 0.0, 8, 5000.0, site="s0"),
        Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
    ):
        sched.submit(job, 0.0)
    sched.schedule(0.0)
    j = spanner()
    sched.submit(j, 1.0)
    sched.schedule(1.0)
    assert j.level == "cross-site"
    assert j.slowdown == pytest.approx(2.002)
    assert sched.expected_end(j) == pytest.approx(2003.0)
    w = Job("w", "a", 2.0, 8, 100.0, site="s0")
    sched.submit(w, 2.0)
    sched.schedule(2.0)
    out = forecast(sched, 2.0)
    assert out["j"] == (1.0, pytest.approx(2003.0))
    assert out["w"] == (pytest.approx(2003.0), pytest.approx(2103.0))


def test_a_gang_spanning_from_a_site_takes_that_site_first() -> None:
    # Three sites of 16 GPUs; s0 has 4 free, s1 and s2 8 each. An unpinned 16-GPU gang
    # takes the sites with the most free (s1 and s2); one spanning from s0 takes s0's 4,
    # then s1's 8 (most free, then the lower index), then 4 of s2's.
    fleet = make_fleet([[[hgx(2)]], [[hgx(2)]], [[hgx(2)]]], [tenant("a", {"h100": 48})])
    topo3 = compile_topology(parse_fleet(fleet.model_dump(mode="json")))
    for anchored in (False, True):
        sched = Scheduler(topo3, SchedulerConfig(backfill=BackfillMode.NONE))
        for name, gpus, site in (
            ("x0", 8, "s0"),
            ("y0", 4, "s0"),
            ("x1", 8, "s1"),
            ("x2", 8, "s2"),
        ):
            sched.submit(Job(name, "a", 0.0, gpus, 1000.0, site=site), 0.0)
        sched.schedule(0.0)
        g = Job("g", "a", 1.0, 16, 100.0, allow_cross_site=True)
        if anchored:
            g.site, g.span_from_site = "s0", True
        sched.submit(g, 1.0)
        sched.schedule(1.0)
        assert g.level == "cross-site"
        by_site: dict[str, int] = {}
        for node, local in sched.placement_of(g):
            site = node.split("/")[0]
            by_site[site] = by_site.get(site, 0) + len(local)
        assert by_site == ({"s0": 4, "s1": 8, "s2": 4} if anchored else {"s1": 8, "s2": 8})


def test_a_copy_shares_the_link_with_a_gang() -> None:
    # No latency; the gang all-reduces 2.5e9 bytes per 1 s step: 2.5e9 / 1.25e10 = 0.2 s
    # more a step (slowdown 1.2), so it runs 1 -> 1,201 and each of its two ring hops
    # wants 2.5e9 / 1.2 bytes/s, 1/3 of the link together. A copy of 8.3e12 bytes to s1
    # (r, pinned there) from t = 2 gets the other 2/3, 1.25e10 x 2/3 bytes/s: 1,000 s.
    fleet = make_fleet([[[hgx(2)]], [[hgx(2)]]], [tenant("a", {"h100": 32})])
    raw: dict[str, Any] = fleet.model_dump(mode="json")
    raw["links"] = [{"a": "s0", "b": "s1", "gbps": 100.0, "latency_ms": 0.0}]
    size = 1.25e10 * 2 / 3 * 1000.0
    jobs = [
        Job("b0", "a", 0.0, 8, 10000.0, site="s0"),
        Job("b1", "a", 0.0, 8, 10000.0, site="s1"),
        Job("j", "a", 1.0, 16, 1000.0, allow_cross_site=True, grad_bytes=2.5e9, step_s=1.0),
        Job("r", "a", 2.0, 8, 100.0, site="s1", dataset="c", dataset_bytes=size, data_site="s0"),
    ]
    res = Simulation(
        compile_topology(parse_fleet(raw)), jobs, SchedulerConfig(backfill=BackfillMode.NONE)
    ).run()
    by = {j.id: j for j in res.jobs}
    assert by["j"].end_s == pytest.approx(1201.0)
    assert by["r"].staging_s == pytest.approx(1000.0)
    assert by["r"].first_start_s == pytest.approx(1201.0)  # j's GPUs at s1
    # The link carried the copy and 1,000 steps x 2 hops x 2.5e9 bytes of all-reduce.
    assert res.staging is not None
    assert res.staging.transfers.link_bytes == [pytest.approx(size + 5e12)]
