"""Data staging in the twin: scenario tests whose times are computed by hand.

The fleet: sites s0 (one 8-GPU H100 server) and s1 (``s1_nodes`` servers), joined by one
10 Gbit/s link (1.25e9 bytes/s) without latency, so 1.25e12 bytes take 1,000 s alone on it.
A blocker (8 GPUs, 5,000 s, no dataset) arrives first and takes s0 (the lowest node that
fits); then jobs whose data sits at s0 arrive at t = 10.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aifactory.fleet import compile_topology, parse_fleet
from aifactory.fleet.topology import Topology
from aifactory.reports.report import build_report
from aifactory.reports.results import link_util_column
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.netreport import network_summary
from aifactory.twin.results import jobs_table, summarize, timeseries_table
from aifactory.twin.simulator import SimResult, Simulation, TwinConfig
from aifactory.workload.job import Job
from builders import checked_simulation, hgx, make_fleet, tenant

TB125 = 1.25e12  # bytes: 1,000 s alone on the 10 Gbit/s link


def two_sites(s1_nodes: int = 1, gbps: float = 10.0) -> Topology:
    fleet = make_fleet([[[hgx(1)]], [[hgx(s1_nodes)]]], [tenant("a", {"h100": 8 + 8 * s1_nodes})])
    raw: dict[str, Any] = fleet.model_dump(mode="json")
    raw["links"] = [{"a": "s0", "b": "s1", "gbps": gbps, "latency_ms": 0.0}]
    return compile_topology(parse_fleet(raw))


def blocker() -> Job:
    return Job("blocker", "a", 0.0, 8, 5000.0)


def reader(name: str, dataset: str = "", size: float = TB125, **kw: Any) -> Job:
    return Job(
        name, "a", 10.0, 8, 1000.0, dataset=dataset, dataset_bytes=size, data_site="s0", **kw
    )


def run(topo: Topology, jobs: list[Job]) -> tuple[SimResult, dict[str, Job]]:
    res = Simulation(topo, jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    return res, {j.id: j for j in res.jobs}


def test_staged_first_then_placed_where_the_copy_went() -> None:
    # At t=10 s0 is busy until 5,000 (finish 6,000 there); s1 is free and the copy takes
    # 1,000 s (finish 10 + 1,000 + 1,000 = 2,010): s1. The job waits without GPUs.
    res, by = run(two_sites(), [blocker(), reader("r", "corpus")])
    r = by["r"]
    assert r.site == "s1"
    assert r.first_start_s == 1010.0
    assert r.end_s == 2010.0
    assert r.staging_s == 1000.0
    assert res.staging is not None
    assert res.staging.transfers.link_bytes == [TB125]


def test_two_copies_on_one_link_share_it() -> None:
    # Two datasets to s1 at once: 6.25e8 bytes/s each, 2,000 s -> both ready at 2,010.
    _, by = run(two_sites(2), [blocker(), reader("r1", "c1"), reader("r2", "c2")])
    for j in ("r1", "r2"):
        assert by[j].site == "s1"
        assert by[j].first_start_s == 2010.0
        assert by[j].end_s == 3010.0
        assert by[j].staging_s == 2000.0


def test_one_copy_serves_every_job_that_needs_it() -> None:
    res, by = run(two_sites(2), [blocker(), reader("r1", "corpus"), reader("r2", "corpus")])
    assert [by[j].first_start_s for j in ("r1", "r2")] == [1010.0, 1010.0]
    assert res.staging is not None
    assert res.staging.copies_made == 1


def test_a_job_waiting_for_its_copy_says_staging() -> None:
    jobs = [blocker(), reader("r", "corpus"), reader("h", "c2", stage_hold=True)]
    jobs[2].gpus = 8
    res = Simulation(
        two_sites(2), jobs, SchedulerConfig(backfill=BackfillMode.NONE), TwinConfig(until_s=500.0)
    ).run()
    table = jobs_table(res)
    reason = dict(
        zip(
            table.column("job_id").to_pylist(),
            table.column("pending_reason").to_pylist(),
            strict=True,
        )
    )
    assert reason["r"] == "staging"  # waits for its copy without GPUs
    assert reason["h"] == "staging"  # holds s1's second server for its own copy


def test_holding_gpus_from_placement() -> None:
    # stage_hold: placed at s1 at t=10, holds its GPUs while the copy runs (10..1,010),
    # then runs 1,000 s: ends at 2,010, its GPUs busy from 10.
    _, by = run(two_sites(), [blocker(), reader("r", "corpus", stage_hold=True)])
    r = by["r"]
    assert r.site == "s1"
    assert r.first_start_s == 10.0
    assert r.end_s == 2010.0
    assert r.staging_s == 1000.0


def test_waiting_at_home_beats_a_slow_copy() -> None:
    # At 0.1 Gbit/s the copy takes 100,000 s: waiting for s0 (finish 6,000) wins.
    _, by = run(two_sites(gbps=0.1), [blocker(), reader("r", "corpus")])
    r = by["r"]
    assert r.site == "s0"
    assert r.first_start_s == 5000.0
    assert r.staging_s == 0.0


def test_data_home_free_no_copy() -> None:
    res, by = run(two_sites(), [reader("r", "corpus")])
    assert by["r"].site == "s0"
    assert by["r"].first_start_s == 10.0
    assert res.staging is not None
    assert res.staging.copies_made == 0


def test_inert_without_datasets() -> None:
    res, by = run(two_sites(), [blocker(), Job("x", "a", 10.0, 8, 100.0)])
    assert res.staging is None
    assert by["x"].site is None
    assert by["x"].first_start_s == 10.0  # unpinned: s1


def test_a_pinned_job_runs_only_at_its_site() -> None:
    # s0 is free, but the job is pinned to s1, busy with the blocker's twin until 5,000.
    jobs = [Job("b1", "a", 0.0, 8, 5000.0, site="s1"), Job("p", "a", 10.0, 8, 100.0, site="s1")]
    _, by = run(two_sites(), jobs)
    assert by["p"].first_start_s == 5000.0
    assert by["b1"].placement == by["p"].placement == [(1, 255)]  # node 1: s1's server


def test_an_unknown_or_too_small_site_is_refused() -> None:
    sched = Scheduler(two_sites())
    assert sched.submit(Job("u", "a", 0.0, 8, 10.0, site="nowhere"), 0.0) == (
        "unknown site: 'nowhere'"
    )
    reason = sched.submit(Job("big", "a", 0.0, 16, 10.0, site="s0"), 0.0)
    assert reason is not None
    assert reason.startswith("too big: 16 GPUs asked, at most 8")


def test_network_results() -> None:
    # The first scenario: 1.25 TB over s0-s1 from 10 to 1,010 (the link full meanwhile),
    # one job staged for 1,000 s; samples every 300 s at 0, 300, 600, 900 see it busy.
    res, by = run(two_sites(), [blocker(), reader("r", "corpus")])
    net = network_summary(res)
    link = net["links"]["s0-s1"]
    assert link["gbps"] == 10.0
    assert link["tb_moved"] == pytest.approx(1.25)
    assert link["peak_utilization"] == 1.0
    assert net["staging"] == {
        "jobs_staged": 1,
        "copies": 1,
        "tb_copied": 1.25,
        "staging_hours": pytest.approx(1000 / 3600),
        "staging_hours_by_tenant": {"a": pytest.approx(1000 / 3600)},
    }
    assert net["cross_site"]["jobs"] == 0
    ts = timeseries_table(res)
    util = ts.column(link_util_column("s0-s1")).to_pylist()
    t = ts.column("t_s").to_pylist()
    assert [u for u, s in zip(util, t, strict=True) if 10 < s < 1010] == [1.0, 1.0, 1.0]
    assert util[0] == 0.0  # at t=0 nothing moved yet
    jobs = jobs_table(res)
    i = jobs.column("job_id").to_pylist().index("r")
    assert jobs.column("staging_s")[i].as_py() == 1000.0
    assert jobs.column("site")[i].as_py() == "s1"
    assert by["r"].slowdown == 1.0


def test_report_draws_the_network() -> None:
    res, _ = run(two_sites(), [blocker(), reader("r", "corpus")])
    summary = summarize(res, fleet="tiny", trace="t", policy="fifo", backfill="none", seed=0)
    page, _ = build_report(summary, jobs_table(res), timeseries_table(res))
    assert "Links, data staging and cross-site gangs" in page
    assert "10 Gb/s, 1 TB, peak 100%" in page  # the s0-s1 link's label on the map
    quiet, _ = run(two_sites(), [Job("x", "a", 0.0, 8, 100.0)])
    summary = summarize(quiet, fleet="tiny", trace="t", policy="fifo", backfill="none", seed=0)
    page, _ = build_report(summary, jobs_table(quiet), timeseries_table(quiet))
    assert "Links, data staging" not in page  # nothing moved, nothing spanned


def test_data_fields_are_bounded() -> None:
    sched = Scheduler(two_sites())
    bad = Job("n", "a", 0.0, 8, 10.0, dataset_bytes=-1.0, data_site="s0")
    assert (sched.submit(bad, 0.0) or "").startswith("invalid field: dataset_bytes:")
    bad = Job("g", "a", 0.0, 8, 10.0, grad_bytes=float("nan"))
    assert (sched.submit(bad, 0.0) or "").startswith("invalid field: grad_bytes:")
    bad = Job("s", "a", 0.0, 8, 10.0, dataset_bytes=1.0)
    assert (sched.submit(bad, 0.0) or "").startswith("invalid field: data_site:")


def test_a_held_run_evicted_while_staging_loses_no_work() -> None:
    # r holds s1 from 10 while its copy runs (10..1,010). At 500 a priority-100 job pinned
    # to s1 evicts it: r did no work (progress 0), lost 490 s x 8 GPUs of holding. h runs
    # 500..600; r starts again at 600, waits for the same copy (done at 1,010), then pays
    # its 60 s restart overhead and runs its 1,000 s: ends at 2,070.
    jobs = [
        blocker(),
        reader("r", "corpus", stage_hold=True),
        Job("h", "a", 500.0, 8, 100.0, priority=100, site="s1"),
    ]
    res = Simulation(two_sites(), jobs, SchedulerConfig(backfill=BackfillMode.NONE)).run()
    by = {j.id: j for j in res.jobs}
    r = by["r"]
    assert by["h"].first_start_s == 500.0
    assert r.preemptions == 1
    assert r.lost_preempt_gpu_s == pytest.approx(490.0 * 8)
    assert r.run_start_s == 600.0
    assert r.end_s == pytest.approx(2070.0)
    assert r.staging_s == pytest.approx(490.0 + 410.0)  # both runs' holds for the copy
    assert res.staging is not None
    assert res.staging.copies_made == 1


def test_a_job_pinned_by_its_owner_is_staged_to_that_site() -> None:
    # s0 is free (its data's home), but the job says s1: the copy runs 0..1,000 first.
    _, by = run(
        two_sites(),
        [Job("p", "a", 0.0, 8, 100.0, site="s1", dataset="c", dataset_bytes=TB125, data_site="s0")],
    )
    assert by["p"].first_start_s == 1000.0
    assert by["p"].staging_s == 1000.0


def test_random_mix_keeps_every_invariant_and_drains() -> None:
    """Seeded: pinned jobs, datasets (both ways of waiting), spanning gangs and plain jobs
    on three linked sites, with priorities (preemption); invariants after every event."""
    rng = np.random.default_rng(20)
    fleet = make_fleet(
        [[[hgx(2)]], [[hgx(3)]], [[hgx(2)]]],
        [tenant("a", {"h100": 56})],
    )
    raw: dict[str, Any] = fleet.model_dump(mode="json")
    raw["links"] = [
        {"a": "s0", "b": "s1", "gbps": 10.0, "latency_ms": 1.0},
        {"a": "s1", "b": "s2", "gbps": 40.0, "latency_ms": 1.0},
    ]
    topo = compile_topology(parse_fleet(raw))
    jobs = []
    for i in range(120):
        kw: dict[str, Any] = {"priority": int(rng.choice([0, 0, 100]))}
        kind = rng.integers(0, 4)
        gpus = int(rng.choice([4, 8, 16]))
        if kind == 0:
            kw["site"] = f"s{rng.integers(0, 3)}"
        elif kind == 1:
            kw |= {
                "dataset": f"d{rng.integers(0, 3)}",
                "dataset_bytes": float(rng.uniform(1e11, 2e12)),
                "data_site": f"s{rng.integers(0, 3)}",
                "stage_hold": bool(rng.integers(0, 2)),
            }
        elif kind == 2:
            gpus = int(rng.choice([16, 24, 32]))
            kw |= {"allow_cross_site": True, "grad_bytes": 1e10, "step_s": 1.0}
        jobs.append(
            Job(
                f"j{i}",
                "a",
                float(rng.uniform(0, 20000)),
                gpus,
                float(rng.uniform(100, 3000)),
                checkpoint_s=600.0,
                **kw,
            )
        )
    result, checks = checked_simulation(topo, jobs)
    assert checks > 0
    assert all(j.state.value == "completed" for j in result.jobs), [
        (j.id, j.state.value) for j in result.jobs if j.state.value != "completed"
    ]
    # The mix exercises what it is for: gangs that spanned (slower), and preemptions.
    spans = [j for j in result.jobs if j.level == "cross-site"]
    assert spans
    assert all(j.slowdown > 1.0 for j in spans)
    assert sum(j.preemptions for j in result.jobs) > 0
    assert result.staging is not None
    assert result.staging.copies_made > 0
