"""The twin end to end (issue #3 §9-§10): inputs adapted to a fleet, the simulation, the
summary contract, per-job and time-series tables, failures, the forecast, and the Philly
trace replayed on ``philly-2017``."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aifactory.fleet import Fleet
from aifactory.physics.failures import load_failure_model
from aifactory.scheduler.config import SchedulerConfig, Tuning
from aifactory.scheduler.policies.las import LasParams
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.failures import FailureInjector
from aifactory.twin.forecast import forecast, forecast_run
from aifactory.twin.inputs import InputOptions, jobs_from_table
from aifactory.twin.run import TwinSpec, run_twin
from aifactory.twin.simulator import Simulation, TwinConfig, no_gc
from aifactory.workload.job import JobState
from aifactory.workload.schema import TRACE_SCHEMA
from builders import hgx, hgx_topo, make_fleet, make_job, tenant

CONTRACT = {
    "fleet", "trace", "policy", "backfill", "seed", "jobs", "completed", "unfinished",
    "rejected", "avg_jct_s", "p50_jct_s", "p99_jct_s", "avg_queue_s", "p50_queue_s",
    "p99_queue_s", "makespan_s", "utilization", "preemptions", "events", "wall_s", "per_tenant",
}  # fmt: skip
PER_TENANT = {"jobs", "avg_jct_s", "avg_queue_s", "gpu_hours"}


def trace(rows: list[dict[str, Any]]) -> pa.Table:
    """A normalised trace table from partial rows (defaults for the rest)."""
    full = []
    for i, r in enumerate(rows):
        full.append(
            {
                "job_id": r.get("job_id", f"j{i}"),
                "tenant": r.get("tenant", "a"),
                "submit_s": float(r["submit_s"]),
                "duration_s": float(r["duration_s"]),
                "gpus": int(r.get("gpus", 1)),
                "gpu_class": r.get("gpu_class"),
                "estimate_s": r.get("estimate_s"),
                "priority": int(r.get("priority", 0)),
                "observed_start_s": r.get("observed_start_s"),
                "status": r.get("status"),
            }
        )
    return pa.Table.from_pylist(full, schema=TRACE_SCHEMA)


def one_node_fleet() -> Fleet:
    return make_fleet([[[hgx(1)]]], [tenant("a", {"h100": 8}), tenant("other")], default_tenant="a")


THREE = [
    {"submit_s": 0, "gpus": 8, "duration_s": 100},
    {"submit_s": 10, "gpus": 8, "duration_s": 50},
    {"submit_s": 20, "gpus": 4, "duration_s": 30},
]


# ------------------------------------------------------------------ summary contract
def test_summary_worked_by_hand() -> None:
    """One 8-GPU server, FIFO: j0 0-100, j1 100-150, j2 150-180 (j2 waits: j1 is ahead).
    JCT 100, 140, 160; queue 0, 90, 130; makespan 180 (first submit to last end); busy
    GPU-s 800 + 400 + 120 = 1320 of 8 x 180 = 1440."""
    run = run_twin(
        TwinSpec(fleet="tiny", trace="dir/t.parquet"), table=trace(THREE), fleet=one_node_fleet()
    )
    s = run.summary
    assert set(s) >= CONTRACT
    assert (s["fleet"], s["trace"], s["policy"], s["backfill"], s["seed"]) == (
        "tiny", "t.parquet", "fifo", "easy", 0,
    )  # fmt: skip
    assert (s["jobs"], s["completed"], s["unfinished"], s["rejected"]) == (3, 3, 0, 0)
    assert s["avg_jct_s"] == pytest.approx(400 / 3)
    assert s["p50_jct_s"] == pytest.approx(140)
    assert s["avg_queue_s"] == pytest.approx(220 / 3)
    assert s["p50_queue_s"] == pytest.approx(90)
    assert s["preemptions"] == 0
    assert s["per_tenant"]["a"]["gpu_hours"] == pytest.approx(1320 / 3600)
    assert s["makespan_s"] == pytest.approx(180.0)
    assert s["utilization"] == pytest.approx(1320 / 1440)


def test_summary_contract_types_and_per_tenant() -> None:
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=trace(THREE), fleet=one_node_fleet())
    s = run.summary
    for key in ("jobs", "completed", "unfinished", "rejected", "preemptions", "events", "seed"):
        assert isinstance(s[key], int), key
    for key in ("avg_jct_s", "p99_jct_s", "avg_queue_s", "p99_queue_s", "makespan_s", "wall_s"):
        assert isinstance(s[key], float), key
    assert s["p99_jct_s"] >= s["p50_jct_s"]
    assert s["events"] > 0
    assert set(s["per_tenant"]) == {"a"}
    assert set(s["per_tenant"]["a"]) >= PER_TENANT
    assert s["per_tenant"]["a"]["jobs"] == 3


def test_rejected_jobs_are_counted_with_reasons() -> None:
    rows = [*THREE, {"submit_s": 5, "gpus": 9, "duration_s": 10}]
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=trace(rows), fleet=one_node_fleet())
    s = run.summary
    assert (s["jobs"], s["completed"], s["rejected"], s["unfinished"]) == (4, 3, 1, 0)
    assert s["rejected_reasons"] == {"too big": 1}
    table = run.jobs_table().to_pylist()
    assert [r["state"] for r in table if r["job_id"] == "j3"] == ["rejected"]
    assert [r["jct_s"] for r in table if r["job_id"] == "j3"] == [None]


def test_until_leaves_unfinished_jobs_counted() -> None:
    run = run_twin(
        TwinSpec(fleet="tiny", trace="t", until_s=120.0), table=trace(THREE), fleet=one_node_fleet()
    )
    s = run.summary
    assert (s["completed"], s["unfinished"], s["rejected"]) == (1, 2, 0)
    assert s["completed"] + s["unfinished"] + s["rejected"] == s["jobs"]


def test_jobs_table_rows() -> None:
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=trace(THREE), fleet=one_node_fleet())
    rows = {r["job_id"]: r for r in run.jobs_table().to_pylist()}
    assert rows["j1"]["start_s"] == 100.0
    assert rows["j1"]["queue_s"] == 90.0
    assert rows["j1"]["jct_s"] == 140.0
    assert rows["j2"]["end_s"] == 180.0
    assert rows["j2"]["placement"] == "node"
    assert rows["j2"]["gpu_class"] == "h100"
    assert rows["j0"]["gpu_hours"] == pytest.approx(800 / 3600)
    assert {r["state"] for r in rows.values()} == {"completed"}


def test_timeseries_samples_every_five_minutes() -> None:
    rows = [
        {"submit_s": 0, "gpus": 4, "duration_s": 700},
        {"submit_s": 400, "gpus": 2, "duration_s": 500},
    ]
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=trace(rows), fleet=one_node_fleet())
    ts = run.timeseries_table().to_pydict()
    assert ts["t_s"][:4] == [0.0, 300.0, 600.0, 900.0]
    # 4 GPUs until 700, plus 2 from 400 to 900
    assert ts["busy_gpus"][:4] == [4, 4, 6, 0]
    assert ts["busy:a"][:4] == [4, 4, 6, 0]
    assert all(p > 0 for p in ts["power_mw"])


# ------------------------------------------------------------------ inputs
def test_unknown_and_missing_tenants_go_to_the_default_and_are_counted() -> None:
    rows = [
        {"submit_s": 0, "duration_s": 10, "tenant": "a"},
        {"submit_s": 1, "duration_s": 10, "tenant": "vc-unknown"},
        {"submit_s": 2, "duration_s": 10, "tenant": "vc-unknown"},
        {"submit_s": 3, "duration_s": 10, "tenant": ""},
    ]
    jobs, report = jobs_from_table(trace(rows), one_node_fleet(), InputOptions())
    assert [j.tenant for j in jobs] == ["a"] * 4
    assert report.remapped == {"vc-unknown": 2}
    assert report.no_tenant == 1
    assert report.default_tenant == "a"
    run = run_twin(TwinSpec(fleet="tiny", trace="t"), table=trace(rows), fleet=one_node_fleet())
    assert run.summary["inputs"]["remapped_jobs"] == 2
    assert run.summary["inputs"]["jobs_without_tenant"] == 1


def test_missing_estimates_use_true_run_time() -> None:
    rows = [
        {"submit_s": 0, "duration_s": 10},
        {"submit_s": 1, "duration_s": 20, "estimate_s": 99.0},
    ]
    jobs, report = jobs_from_table(trace(rows), one_node_fleet(), InputOptions())
    assert [j.estimate_s for j in jobs] == [10.0, 99.0]
    assert report.estimates_from_runtime == 1


def test_time_scale_multiplies_inter_arrival_times() -> None:
    rows = [{"submit_s": s, "duration_s": 10} for s in (100, 140, 300)]
    jobs, _ = jobs_from_table(trace(rows), one_node_fleet(), InputOptions(time_scale=0.25))
    assert [j.submit_s for j in jobs] == pytest.approx([0.0, 10.0, 50.0])
    with pytest.raises(ValueError, match="time_scale"):
        jobs_from_table(trace(rows), one_node_fleet(), InputOptions(time_scale=0))


def test_estimate_error_is_seeded_log_normal() -> None:
    rows = [{"submit_s": i, "duration_s": 100} for i in range(200)]
    table = trace(rows)

    def estimates(seed: int, spread: float) -> np.ndarray:
        jobs, _ = jobs_from_table(
            table, one_node_fleet(), InputOptions(estimate_error=spread, seed=seed)
        )
        return np.array([j.estimate_s for j in jobs])

    assert np.array_equal(estimates(1, 0.5), estimates(1, 0.5))
    assert not np.array_equal(estimates(1, 0.5), estimates(2, 0.5))
    assert np.all(estimates(1, 0.0) == 100.0)
    logs = np.log(estimates(3, 0.5) / 100.0)
    assert abs(logs.mean()) < 0.15  # median factor 1
    assert 0.35 < logs.std() < 0.65  # spread 0.5
    with pytest.raises(ValueError, match="estimate_error"):
        jobs_from_table(table, one_node_fleet(), InputOptions(estimate_error=-1))


def test_a_trace_with_a_repeated_job_id_is_refused_before_anything_runs() -> None:
    rows = [
        {"job_id": "x", "submit_s": 0, "duration_s": 10},
        {"job_id": "y", "submit_s": 1, "duration_s": 10},
        {"job_id": "x", "submit_s": 2, "duration_s": 10},
    ]
    with pytest.raises(ValueError, match=r"job_id: 1 ids appear more than once \(e.g. 'x'\)"):
        jobs_from_table(trace(rows), one_node_fleet(), InputOptions())


def test_a_simulation_refuses_a_repeated_id_unless_its_caller_checked() -> None:
    """Given jobs directly, the twin checks ids itself; either way its scheduler keeps no
    index by id (the ids are known to be unique)."""
    jobs = [make_job("x", gpus=1), make_job("y", gpus=1), make_job("x", gpus=1, submit=5.0)]
    with pytest.raises(ValueError, match="job id 'x' appears more than once"):
        Simulation(hgx_topo(1), jobs)
    sim = Simulation(hgx_topo(1), jobs[:2])
    result = sim.run()
    assert [j.state for j in result.jobs] == [JobState.COMPLETED] * 2
    assert sim.sched.by_id == {}
    # ended: held no more, and their seats freed (each index names the dead seat)
    assert [seat.index for seat in sim.sched.seats] == [-1, -1]
    assert all(sim.sched.seat_of(j) is None for j in jobs[:2])


def test_restoring_a_job_works_with_or_without_the_id_index() -> None:
    """restore_running adds a job it does not know yet, once, with or without by_id."""
    for index_ids in (True, False):
        sched = Scheduler(hgx_topo(1), SchedulerConfig(tuning=Tuning(index_ids=index_ids)))
        job = make_job("r", gpus=2)
        sched.submit(job, 0.0)
        started = sched.schedule(0.0).started
        assert started == [job]
        placement = list(job.placement)
        twin = Scheduler(hgx_topo(1), SchedulerConfig(tuning=Tuning(index_ids=index_ids)))
        copy = make_job("r", gpus=2)
        twin.restore_running(copy, placement, 0.0)
        assert [seat.job for seat in twin.seats] == [copy]
        seat = twin.seat_of(copy)
        assert seat is not None
        assert seat.job is copy
        assert ("r" in twin.by_id) is index_ids
        assert twin.busy_gpus == 2


# ------------------------------------------------------------------ failures
@dataclass(frozen=True)
class _Cause:
    name: str
    scope: str

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        return 50.0


@dataclass(frozen=True)
class _Model:
    rate_per_gpu_hour: float
    scope: str

    def sample_cause(self, rng: np.random.Generator) -> Any:
        return _Cause(self.scope, self.scope)


@pytest.mark.parametrize("scope", ["node", "job"])
def test_failures_interrupt_jobs_which_still_finish(scope: str) -> None:
    from builders import checked_simulation  # noqa: PLC0415 (local: only these tests use it)

    topo = hgx_topo(2)
    jobs = [
        make_job(f"j{i}", submit=i * 50.0, gpus=4, run=2000.0, checkpoint_s=100.0) for i in range(6)
    ]
    injector = FailureInjector(_Model(1.0, scope))  # 16 GPU-hours/hour -> ~one failure per 225 s
    result, _ = checked_simulation(topo, jobs, SchedulerConfig(), TwinConfig(seed=3), injector)
    assert result.failures > 0
    assert all(j.state == JobState.COMPLETED for j in result.jobs)
    assert sum(j.failures for j in result.jobs) > 0
    assert sum(j.lost_failure_gpu_s for j in result.jobs) > 0
    for j in result.jobs:
        assert j.end_s is not None
        assert j.end_s - j.submit_s >= j.duration_s
    assert injector.down == {}  # every failed node was repaired before the run ended
    # failures are not preemptions
    assert result.scheduler.preemptions == sum(j.preemptions for j in result.jobs)


def test_failure_index_drops_ended_jobs_and_changes_no_interruption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node's list of started jobs is compacted as it grows (its ended jobs dropped): it
    stays short over hundreds of starts between failures, and every failure interrupts the
    same jobs as with a list that keeps every job (compaction off)."""
    from aifactory.twin import failures  # noqa: PLC0415

    def once() -> tuple[list[tuple[str, float | None, int]], int, int]:
        jobs = [make_job(f"j{i}", submit=i * 25.0, gpus=4, run=100.0) for i in range(400)]
        injector = FailureInjector(_Model(0.1, "node"))
        sim = Simulation(hgx_topo(2), jobs, None, TwinConfig(seed=4), injector)
        result = sim.run()
        longest = max((len(v) for v in injector._node_jobs.values()), default=0)
        return [(j.id, j.end_s, j.failures) for j in result.jobs], result.failures, longest

    compacted, failed, longest = once()
    bound = 2 * failures.COMPACT_MIN
    monkeypatch.setattr(failures, "COMPACT_MIN", 1 << 40)
    kept, failed_kept, longest_kept = once()
    assert failed == failed_kept > 0
    assert sum(f for _, _, f in compacted) > 0  # some failure hit a running job
    assert compacted == kept
    assert longest < bound < longest_kept


def test_failures_are_seeded() -> None:
    def once(seed: int) -> list[tuple[str, float | None]]:
        jobs = [make_job(f"j{i}", submit=i * 50.0, gpus=4, run=2000.0) for i in range(6)]
        sim = Simulation(
            hgx_topo(2), jobs, None, TwinConfig(seed=seed), FailureInjector(_Model(1.0, "node"))
        )
        return [(j.id, j.end_s) for j in sim.run().jobs]

    assert once(5) == once(5)
    assert once(5) != once(6)


# ------------------------------------------------------------------ forecast
def test_forecast_matches_the_twin_when_estimates_are_exact() -> None:
    """Stop a run at t=60, forecast from its scheduler, and compare with the run that goes
    on: with exact estimates (the default) the forecast is the future."""

    def jobs() -> list[Any]:
        return [
            make_job("A", submit=0, gpus=8, run=100),
            make_job("B", submit=10, gpus=16, run=50),
            make_job("C", submit=20, gpus=8, run=30),
            make_job("D", submit=30, gpus=4, run=300),
            make_job("E", submit=40, gpus=8, run=20),
        ]

    full = {j.id: j for j in Simulation(hgx_topo(2), jobs()).run().jobs}
    part = Simulation(hgx_topo(2), jobs(), config=TwinConfig(until_s=60.0))
    live = part.run().jobs
    sched = part.sched
    predicted = forecast(sched, 60.0)
    # every job still pending or running at 60 is forecast, and only those
    assert set(predicted) == {j.id for j in live if not j.done}
    assert len(predicted) >= 3
    for jid, (start, end) in predicted.items():
        assert start == pytest.approx(full[jid].first_start_s), jid
        assert end == pytest.approx(full[jid].end_s), jid


def test_forecast_run_takes_future_arrivals_and_fails_restored_jobs() -> None:
    """One server, A running until 100 from a snapshot at 60: an arrival at 80 waits for
    it, starts at 100 and ends at 130 (forecast_run's ``arrivals``); without failures the
    answer is forecast()'s. At a rate that makes failures certain within the horizon the
    restored A is hit too (a resumed run indexes its restored jobs, and its first failure
    comes after the snapshot), and the same seed draws the same run."""
    part = Simulation(
        hgx_topo(1), [make_job("A", submit=0, gpus=8, run=100)], config=TwinConfig(until_s=60.0)
    )
    part.run()
    sched = part.sched
    later = make_job("L", submit=80.0, gpus=8, run=30)
    run = forecast_run(sched, 60.0, horizon_s=1000.0, arrivals=[later])
    assert run.starts == {"A": (0.0, 100.0), "L": (100.0, 130.0)}
    assert forecast_run(sched, 60.0, horizon_s=1000.0).starts == forecast(
        sched, 60.0, horizon_s=1000.0
    )
    often = load_failure_model("llama3").with_rate(50.0)  # 400 failures/hour on 8 GPUs
    hit = forecast_run(sched, 60.0, horizon_s=1000.0, failures=often, seed=3)
    assert hit.failures > 0
    assert "A" in hit.interrupted
    again = forecast_run(sched, 60.0, horizon_s=1000.0, failures=often, seed=3)
    assert (again.starts, again.failures, again.interrupted) == (
        hit.starts,
        hit.failures,
        hit.interrupted,
    )


@pytest.mark.parametrize("horizon_s", [0.0, -1.0, math.nan, math.inf])
def test_a_forecast_refuses_a_horizon_that_is_not_a_positive_time(horizon_s: float) -> None:
    part = Simulation(hgx_topo(1), [make_job("A", submit=0, gpus=8, run=100)])
    part.run()
    with pytest.raises(ValueError, match="horizon_s"):
        forecast(part.sched, 0.0, horizon_s=horizon_s)


def test_a_forecast_over_a_tiny_horizon_ends_and_forecasts_what_has_started() -> None:
    """A horizon far below a second once hung the forecast (it sampled once per horizon)."""
    jobs = [make_job("A", submit=0, gpus=8, run=100), make_job("B", submit=0, gpus=8, run=50)]
    part = Simulation(hgx_topo(1), jobs, config=TwinConfig(until_s=10.0))
    part.run()
    predicted = forecast(part.sched, 10.0, horizon_s=1e-133)
    assert predicted == {"A": (0.0, 100.0)}  # B cannot start within the horizon


def test_forecast_leaves_the_live_scheduler_as_it_was() -> None:
    """The forecast runs the twin on clones: the scheduler it reads from is unchanged."""
    jobs = [
        make_job("low", submit=0, gpus=16, run=200, priority=-100, checkpoint_s=60.0),
        make_job("other", submit=5, gpus=8, run=400),
        make_job("high", submit=50, gpus=16, run=40, priority=100),
    ]
    part = Simulation(hgx_topo(2), jobs, config=TwinConfig(until_s=60.0))
    part.run()
    sched = part.sched

    def state() -> list[tuple[str, str, float, int]]:
        return [(j.id, j.state.value, j.progress_s, j.preemptions) for j in jobs]

    before = (state(), sched.running_count, sched.pending_count, sched.busy_gpus)
    predicted = forecast(sched, 60.0)
    assert set(predicted) == {"low", "other", "high"}
    assert (state(), sched.running_count, sched.pending_count, sched.busy_gpus) == before


# ------------------------------------------------------------------ Philly, end to end
@pytest.mark.slow
def test_philly_end_to_end(shared_dir: Path) -> None:
    path = shared_dir / "traces" / "philly" / "philly.csv"
    if not path.exists():
        pytest.skip(f"Philly trace not found at {path}")
    run = run_twin(TwinSpec(fleet="philly-2017", trace=str(path), policy="fifo"))
    s = run.summary
    assert set(s) >= CONTRACT
    assert s["fleet"] == "philly-2017"
    assert s["trace"] == "philly.csv"
    assert s["jobs"] == 82247 - sum(s["inputs"]["skipped_rows"].values())
    assert s["completed"] + s["unfinished"] + s["rejected"] == s["jobs"]
    assert s["unfinished"] == 0  # the twin runs until the queue drains
    assert s["completed"] > 0.99 * s["jobs"]
    assert 0.0 < s["utilization"] <= 1.0
    assert s["fleet_gpus"] == 2490
    # The four VCs that philly-2017 does not know (18 jobs) went to the default tenant.
    assert s["inputs"]["default_tenant"] == "philly-other"
    assert s["inputs"]["remapped_jobs"] == 18
    assert s["inputs"]["estimates_from_runtime"] == s["jobs"]
    assert sum(t["jobs"] for t in s["per_tenant"].values()) == s["jobs"]
    assert all(set(t) >= PER_TENANT for t in s["per_tenant"].values())
    assert s["avg_jct_s"] >= s["avg_queue_s"] >= 0
    assert s["p99_jct_s"] >= s["p50_jct_s"] > 0
    assert s["makespan_s"] > 0
    assert s["events"] > s["jobs"]
    # JCT >= run time for every job, on the real trace
    jobs = run.jobs_table().to_pydict()
    jct = np.array([x if x is not None else np.nan for x in jobs["jct_s"]])
    done = ~np.isnan(jct)
    assert np.all(jct[done] >= np.array(jobs["run_s"])[done] - 1e-6)


def test_a_run_pauses_the_collector_and_restores_it() -> None:
    seen: list[bool] = []

    def failing_run() -> None:
        with no_gc():
            seen.append(gc.isenabled())
            msg = "boom"
            raise RuntimeError(msg)

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"):
        failing_run()
    assert seen == [False]
    assert gc.isenabled()  # restored even though the run raised
    gc.disable()
    try:
        with no_gc():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()


def test_a_run_makes_no_cyclic_garbage() -> None:
    """What no_gc relies on: a run with preemption (LAS), failures, checkpoints and
    restarts leaves nothing for the cyclic collector; reference counting freed it all."""
    topo = hgx_topo(2)
    jobs = [
        make_job(f"j{i}", submit=i * 40.0, gpus=(4, 8, 2)[i % 3], run=600.0, checkpoint_s=90.0)
        for i in range(30)
    ]
    sim = Simulation(
        topo,
        jobs,
        SchedulerConfig(policy="las", las=LasParams((500.0,))),
        TwinConfig(seed=1),
        FailureInjector(_Model(1.0, "node")),
    )
    gc.collect()
    gc.disable()
    try:
        result = sim.run()
        garbage = gc.collect()
    finally:
        gc.enable()
    assert result.scheduler.preemptions > 0
    assert result.failures > 0
    assert all(j.state == JobState.COMPLETED for j in result.jobs)
    assert garbage == 0
