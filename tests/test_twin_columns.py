"""The twin's summary and jobs table from columns, against the per-job loop they replaced.

aifactory.twin.results reads every job's fields once into arrays (JobColumns) and computes
the summary and ``jobs.parquet`` from those (issue #21 §4: the loops cost 1.1 s of a Philly
``simulate``). The reference below is the loop code as it was, kept here (with the fields
added since, power caps, grace and allocations, written in the same per-job style): on runs
that reach every state (completed, interrupted by the failure model, rejected as too big, cut
at a horizon while pending and running, preempted), the tables are equal and the summaries
equal up to float summation order (numpy's pairwise sums against Python's running sum).
"""

from __future__ import annotations

import gc
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aifactory.fleet import load_fleet
from aifactory.reports.results import JOBS_SCHEMA, WAIT_REASONS
from aifactory.twin.allocgate import REASON as ALLOCATION
from aifactory.twin.netreport import network_summary
from aifactory.twin.results import (
    _hours_at_cap,
    _service_figures,
    job_columns,
    jobs_table,
    service_times,
    summarize,
    useful_gpu_s,
)
from aifactory.twin.run import TwinRun, TwinSpec, run_twin
from aifactory.twin.simulator import SimResult
from aifactory.twin.stability import stability
from aifactory.workload.job import JobState
from aifactory.workload.progress import run_progress

DAY = 86400.0


def _pct(values: np.ndarray[Any, Any], q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def _mean(values: np.ndarray[Any, Any]) -> float | None:
    return float(values.mean()) if values.size else None


# ------------------------------------------------------------------ the reference (verbatim)
def ref_used_gpu_s(result: SimResult) -> np.ndarray[Any, Any]:
    """GPU-seconds each job held GPUs (including runs cut short and a run at the end)."""
    end = result.end_s
    out = np.empty(len(result.jobs))
    for i, job in enumerate(result.jobs):
        extra = job.gpus * max(0.0, end - job.run_start_s) if job.state == JobState.RUNNING else 0.0
        out[i] = job.attained + extra
    return out


def ref_summarize(
    result: SimResult,
    *,
    fleet: str,
    trace: str,
    policy: str,
    backfill: str,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary as the per-job loop computed it (the reference)."""
    jobs = result.jobs
    sched = result.scheduler
    topo = sched.topo
    waits = sched.wait_times(result.end_s)
    submit = np.array([j.submit_s for j in jobs])
    started = [j for j in jobs if j.first_start_s is not None]
    done = [j for j in jobs if j.state == JobState.COMPLETED]
    jct = np.array([j.end_s - j.submit_s for j in done if j.end_s is not None])
    queue = np.array([j.first_start_s - j.submit_s for j in started if j.first_start_s is not None])
    used = ref_used_gpu_s(result)
    first = float(submit.min()) if submit.size else 0.0
    last_end = max((j.end_s for j in jobs if j.end_s is not None), default=first)
    rejected = sum(result.rejected.values())
    unfinished = sum(1 for j in jobs if j.state in (JobState.PENDING, JobState.RUNNING))
    # A run that drained ends with its last job; a trailing observer sample is not work.
    # A run cut at its horizon (jobs still waiting or running) ends at the horizon.
    makespan = (result.end_s if unfinished else last_end) - first
    fleet_gpus = topo.gpus_total
    utilization = float(used.sum()) / (fleet_gpus * makespan) if makespan > 0 else 0.0

    nominal: dict[str, int] = defaultdict(int, sched.nominal_by_tenant())
    # Energy per tenant: busy GPU-seconds x busy watts x PUE of the class (capacity-weighted).
    pue = [s.pue for s in topo.fleet.sites]
    cap = np.zeros((len(topo.classes), len(topo.sites)))
    for c in range(len(topo.classes)):
        for s in range(len(topo.sites)):
            cap[c, s] = 0
    for d in range(topo.n_domains):
        cap[int(topo.domain_class[d]), int(topo.pod_site[topo.domain_pod[d]])] += topo.domain_gpus[
            d
        ]
    class_pue = (cap * np.array(pue)).sum(axis=1) / np.maximum(cap.sum(axis=1), 1)
    busy_w = np.array([m.busy_watts for m in topo.class_model]) * class_pue
    class_index = {name: c for c, name in enumerate(topo.classes)}

    cols = job_columns(result)
    svc = service_times(cols, result.end_s, useful_gpu_s(result, cols))
    # Whose hardware each tenant's GPU-hours ran on: its own (its own or its nearest
    # ancestor's: a consortium's platform), or borrowed from each lender by name.
    by_owner = sched.served_by_owner(result.end_s)
    lent: dict[str, float] = defaultdict(float)
    per: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, j in enumerate(jobs):
        groups[j.tenant].append(i)
    write_s = sched.cfg.checkpoint_write_s
    for t, idx in sorted(groups.items()):
        tj = [jobs[i] for i in idx]
        t_jct = np.array(
            [
                j.end_s - j.submit_s
                for j in tj
                if j.state == JobState.COMPLETED and j.end_s is not None
            ]
        )
        t_q = np.array([j.first_start_s - j.submit_s for j in tj if j.first_start_s is not None])
        t_used = used[idx]
        gpu_hours = float(t_used.sum()) / 3600.0
        useful = 0.0
        wall = 0.0
        for j in tj:
            if j.first_start_s is None or j.service:  # (ETTR: training work only)
                continue
            end = j.end_s if j.end_s is not None else result.end_s
            wall += (end - j.first_start_s) * j.gpus
            if j.state == JobState.COMPLETED:
                useful += j.duration_s * j.gpus
            elif j.state == JobState.RUNNING:
                gained, _ = run_progress(end - j.run_start_s, j.overhead_s, j.checkpoint_s, write_s)
                useful += (j.progress_s + gained) * j.gpus
            else:
                useful += j.progress_s * j.gpus
        energy = (
            sum(
                used[i] * busy_w[class_index[jobs[i].placed_class]]
                for i in idx
                if jobs[i].placed_class
            )
            / 3.6e9
        )
        quota_gpus = nominal.get(t, 0)
        home = sched.home_owner(t)
        borrowed_from = {
            owner: gpu_s / 3600.0
            for owner, gpu_s in sorted(by_owner.get(t, {}).items())
            if owner != home
        }
        for owner, hours in borrowed_from.items():
            lent[owner] += hours
        per[t] = {
            "jobs": len(tj),
            "avg_jct_s": _mean(t_jct),
            "avg_queue_s": _mean(t_q),
            "gpu_hours": gpu_hours,
            "quota_gpus": quota_gpus,
            "utilization_of_quota": (
                gpu_hours * 3600.0 / (quota_gpus * makespan)
                if quota_gpus and makespan > 0
                else None
            ),
            "ettr": useful / wall if wall > 0 else None,
            "gpu_hours_own": by_owner.get(t, {}).get(home, 0.0) / 3600.0 if home else 0.0,
            "gpu_hours_borrowed": sum(borrowed_from.values()),
            "gpu_hours_borrowed_by_lender": borrowed_from,
            "energy_mwh": energy,
            # services' figures: the same function (tests/test_services.py checks it)
            **_service_figures(svc, cols, np.isin(np.arange(len(jobs)), idx)),
            "gpu_hours_lost_failure": sum(j.lost_failure_gpu_s for j in tj) / 3600.0,
            "gpu_hours_lost_preemption": sum(j.lost_preempt_gpu_s for j in tj) / 3600.0,
            # Job-hours spent waiting, by the scheduler's reason (Slurm's REASON column).
            "wait_hours_by_reason": {
                r: sum(waits.get(j.id, {}).get(r, 0.0) for j in tj) / 3600.0 for r in WAIT_REASONS
            },
        }
    obs = result.observer
    site_names = list(topo.sites)
    peak = (
        np.max(np.array(obs.site_power_mw), axis=0)
        if obs.site_power_mw
        else np.zeros(len(site_names))
    )
    summary: dict[str, Any] = {
        "fleet": fleet,
        "trace": trace,
        "policy": policy,
        "backfill": backfill,
        "seed": seed,
        "jobs": len(jobs),
        "completed": len(done),
        "unfinished": unfinished,
        "rejected": rejected,
        "avg_jct_s": _mean(jct),
        "p50_jct_s": _pct(jct, 50),
        "p99_jct_s": _pct(jct, 99),
        "avg_queue_s": _mean(queue),
        "p50_queue_s": _pct(queue, 50),
        "p99_queue_s": _pct(queue, 99),
        "makespan_s": makespan,
        "utilization": utilization,
        "preemptions": sched.preemptions,
        "saved_preemptions": sched.saved_preemptions,
        "gpu_hours_lost_preemption": sum(j.lost_preempt_gpu_s for j in jobs) / 3600.0,
        "gpu_hours_lost_failure": sum(j.lost_failure_gpu_s for j in jobs) / 3600.0,
        "events": result.events,
        "wall_s": result.wall_s,
        "per_tenant": per,
        "tenant_parents": {t.name: p.name for t, p, _ in topo.fleet.iter_tenants() if p},
        "per_subtree": _subtrees(topo.fleet, jobs, per, nominal, makespan),
        "service": _service_figures(svc, cols, np.ones(len(jobs), dtype=np.bool_)),
        # from the observer's series, not per job: the same function (test_twin_stability)
        "stability": stability(
            obs.t, list(obs.tenants), obs.backlog_by_tenant, dict(nominal), fleet_gpus
        ),
        "fleet_gpus": fleet_gpus,
        "rejected_reasons": dict(result.rejected),
        "failures": result.failures,
        "quota": {t: n for t, n in nominal.items() if n},
        # GPU-hours of others' jobs each owner's hardware ran ("mixed": a class of several
        # owners that is not split by owner, see aifactory/scheduler/owners.py).
        "gpu_hours_lent_by_owner": dict(sorted(lent.items())),
        "energy": {
            "total_mwh": float(obs.energy_mwh_by_site.sum()),
            "idle_mwh": obs.idle_energy_mwh,
            "peak_mw_by_site": {s: float(peak[i]) for i, s in enumerate(site_names)},
            "site_capacity_mw": {s.name: s.power_mw for s in topo.fleet.sites},
            "mwh_by_site": {s: float(obs.energy_mwh_by_site[i]) for i, s in enumerate(site_names)},
            "hours_at_cap_by_site": _hours_at_cap(obs.t, obs.site_power_mw, topo),
        },
        "power_cap": {
            "on": sched.cfg.power_cap,
            "capped_sites": [s for i, s in enumerate(site_names) if sched.power.capped[i]],
            "gpu_hours_held": sum(waits.get(j.id, {}).get("power_cap", 0.0) * j.gpus for j in jobs)
            / 3600.0,
            "refused_starts": sched.power.refused,
        },
        # links and spanning: the same function (tests/test_staging.py checks its figures)
        "network": network_summary(result),
    }
    if extra:
        summary.update(extra)
    return summary


def ref_jobs_table(result: SimResult) -> pa.Table:
    """The jobs table as the per-job loop built it (the reference)."""
    jobs = result.jobs
    used = ref_used_gpu_s(result)
    rows: dict[str, list[Any]] = {name: [] for name in JOBS_SCHEMA.names}
    sched = result.scheduler
    waits = sched.wait_times(result.end_s)
    nothing: dict[str, float] = {}
    cols = job_columns(result)  # (services' downtime: the same function as the summary's)
    svc = service_times(cols, result.end_s, useful_gpu_s(result, cols))
    for i, j in enumerate(jobs):
        rejected = j.state == JobState.FAILED and j.first_start_s is None
        start = j.first_start_s
        end = j.end_s
        rows["job_id"].append(j.id)
        rows["tenant"].append(j.tenant)
        rows["kind"].append(j.kind)
        rows["state"].append("rejected" if rejected else j.state.value)
        rows["submit_s"].append(j.submit_s)
        rows["start_s"].append(start)
        rows["end_s"].append(end)
        rows["queue_s"].append(None if start is None else start - j.submit_s)
        rows["jct_s"].append(None if end is None or rejected else end - j.submit_s)
        rows["run_s"].append(j.duration_s)
        rows["gpus"].append(j.gpus)
        rows["gpu_class"].append(j.gpu_class or j.placed_class or None)
        rows["placement"].append(j.level)
        rows["hardware_owner"].append(j.hardware_owner or None)
        rows["service"].append(j.service)
        rows["downtime_s"].append(float(svc.down[i]) if svc.counted[i] else None)
        rows["preemptions"].append(j.preemptions)
        rows["failures"].append(j.failures)
        rows["gpu_hours"].append(float(used[i]) / 3600.0)
        rows["gpu_hours_lost_preemption"].append(j.lost_preempt_gpu_s / 3600.0)
        rows["gpu_hours_lost_failure"].append(j.lost_failure_gpu_s / 3600.0)
        waited = waits.get(j.id, nothing)
        for reason in WAIT_REASONS:
            rows[f"wait_{reason}_s"].append(waited.get(reason, 0.0))
        gate = result.allocations
        held = gate is not None and gate.is_held(j)
        staged = result.staging.reason(j) if result.staging is not None else None
        rows["pending_reason"].append(ALLOCATION if held else staged or sched.pending_reason(j))
        project = gate.project.get(j.id) if gate is not None else None
        rows["project"].append(project or None)
        rows["wait_allocation_s"].append(
            gate.waited.get(j.id, 0.0) if gate is not None and project else None
        )
        rows["charged_gpu_hours"].append(
            gate.charged.get(j.id, 0.0) / 3600.0 if gate is not None and project else None
        )
        rows["site"].append(j.site)
        rows["staging_s"].append(j.staging_s)
        rows["slowdown"].append(j.slowdown)
    return pa.table(rows, schema=JOBS_SCHEMA)


def _subtrees(
    fleet: Any, jobs: list[Any], per: dict[str, Any], nominal: dict[str, int], makespan: float
) -> dict[str, Any]:
    """Each parent's subtree figures, job by job (the reference of twin/subtrees.py)."""
    out: dict[str, Any] = {}

    def below(t: Any) -> list[str]:
        return [n for c in t.children for n in (c.name, *below(c))]

    for t, _, _ in fleet.iter_tenants():
        if not t.children:
            continue
        leaves = [n for n in below(t) if n in per]
        mine = [j for j in jobs if j.tenant in leaves]
        jct = [
            j.end_s - j.submit_s
            for j in mine
            if j.state == JobState.COMPLETED and j.end_s is not None
        ]
        queue = [j.first_start_s - j.submit_s for j in mine if j.first_start_s is not None]
        hours = sum(per[n]["gpu_hours"] for n in leaves)
        quota = nominal.get(t.name, 0)
        out[t.name] = {
            "children": [c.name for c in t.children],
            "tenants": leaves,
            "jobs": len(mine),
            "avg_jct_s": _mean(np.array(jct)),
            "avg_queue_s": _mean(np.array(queue)),
            "gpu_hours": hours,
            "quota_gpus": quota,
            "utilization_of_quota": (
                hours * 3600.0 / (quota * makespan) if quota and makespan > 0 else None
            ),
            "gpu_hours_lost_failure": sum(per[n]["gpu_hours_lost_failure"] for n in leaves),
            "gpu_hours_lost_preemption": sum(per[n]["gpu_hours_lost_preemption"] for n in leaves),
        }
    return out


# ------------------------------------------------------------------ comparing


def same(a: Any, b: Any, where: str = "summary") -> None:
    """Equal, floats to 1e-12 relative (or both None/NaN); dicts key by key."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None, f"{where}: {a} != {b}"
        assert b is not None, f"{where}: {a} != {b}"
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a), where
            assert math.isnan(b), where
        else:
            assert a == pytest.approx(b, rel=1e-12, abs=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check(run: TwinRun) -> None:
    result = run.result
    names = {"fleet": "f", "trace": "t", "policy": "p", "backfill": "b", "seed": 1}
    same(summarize(result, **names), ref_summarize(result, **names))  # type: ignore[arg-type]
    new, ref = run.jobs_table(), ref_jobs_table(result)
    assert new.schema == JOBS_SCHEMA
    for name in JOBS_SCHEMA.names:
        assert new.column(name).equals(ref.column(name)), name
    assert jobs_table(result).equals(new)  # with and without the columns read for the summary


@pytest.fixture(scope="module")
def philly_slice(shared_dir: Path) -> pa.Table:
    """Philly days 20-32: long jobs pile up at 4x load (preemptions by quota reclaim)."""
    from aifactory.workload.traces import read_trace  # noqa: PLC0415

    table = read_trace(shared_dir / "traces" / "philly" / "philly.csv").table
    submit = table.column("submit_s")
    return table.filter(pc.and_(pc.greater_equal(submit, 20 * DAY), pc.less(submit, 32 * DAY)))


@pytest.mark.parametrize("policy", ["fifo", "las"])
def test_philly_cut_at_a_horizon_with_failures(policy: str, philly_slice: pa.Table) -> None:
    spec = TwinSpec(
        fleet="philly-2017",
        trace="philly.csv",
        policy=policy,
        time_scale=0.25,
        seed=5,
        failures="llama3",
        until_s=2.5 * DAY,  # submits are rebased to 0 and compressed to 3 days
    )
    run = run_twin(spec, table=philly_slice, fleet=load_fleet("philly-2017"), keep_jobs=True)
    states = set(run.jobs_table().column("state").to_pylist())
    assert {"completed", "running", "pending"} <= states, states
    assert run.summary["preemptions"] > 0
    assert run.summary["failures"] > 0  # restarts after a failure: GPU-hours lost to it
    check(run)


def test_national_hour_with_rejections_and_failures() -> None:
    from aifactory.workload.synth import synthesize  # noqa: PLC0415

    fleet = load_fleet("korea-2025")
    table = synthesize(fleet, 1.0 / 24.0, 0.9, seed=11)
    # Two jobs bigger than the whole fleet: rejected, never started.
    big = table.slice(0, 2).to_pylist()
    for i, row in enumerate(big):
        row["job_id"], row["gpus"] = f"huge-{i}", 10_000_000
    table = pa.concat_tables([table, pa.Table.from_pylist(big, schema=table.schema)])
    spec = TwinSpec(
        fleet="korea-2025",
        trace="synth",
        seed=11,
        failures="llama3",
        until_s=DAY / 24.0,
        backfill_interval_s=30.0,
    )
    gc.collect()
    assert gc.isenabled()
    run = run_twin(spec, table=table, fleet=fleet, keep_jobs=True)
    assert gc.isenabled()  # run_twin pauses the collector only while it runs
    assert gc.collect() == 0  # and the run made no reference cycles for it to find
    assert run.summary["rejected"] >= 2
    check(run)
