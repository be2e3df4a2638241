"""Turn a finished simulation into the stable outputs: summary dict, jobs and time series.

``summary`` follows the documented contract of ``summary.json`` (keys listed in the
README), with extra keys for quota, energy, ETTR and failures. JCT = end - submit;
queue = first start - submit; utilisation = busy GPU-seconds / (fleet GPUs x makespan).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aifactory.arrowkit import cast
from aifactory.reports.results import (
    JOBS_SCHEMA,
    WAIT_REASONS,
    busy_column,
    site_power_column,
)
from aifactory.twin.allocgate import REASON as ALLOCATION
from aifactory.twin.fields import STATES
from aifactory.twin.finished import Coded, FinishedJobs
from aifactory.twin.netreport import link_columns, network_summary
from aifactory.twin.simulator import SimResult
from aifactory.twin.stability import stability
from aifactory.twin.subtrees import subtree_figures, tenant_parents
from aifactory.workload.job import Job, JobState
from aifactory.workload.progress import run_progress

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


SUM_PART = 1 << 16  # rows made into Python floats at a time by py_sum


def py_sum(values: FloatArray) -> float:
    """``sum(values.tolist())``: Python's sum in row order (the figure a sum over the jobs
    gives; numpy's pairwise sum rounds differently), a part at a time, so that a national
    run's millions of rows never stand as Python floats at once. The same additions in
    the same order: Python's sum of floats adds each to one running double, which the
    next part starts from."""
    total: float = 0  # (sum's own start: an empty column sums to 0, as sum([]) does)
    for lo in range(0, len(values), SUM_PART):
        total = sum(values[lo : lo + SUM_PART].tolist(), total)
    return total


@dataclass(frozen=True, slots=True, eq=False)
class JobColumns:
    """Every job's fields as columns, read once per run: the summary and the jobs table
    are computed from these arrays rather than by walking the jobs once per figure.

    Reading the fields is the cost, so it is done once, in compiled code
    (:mod:`aifactory.twin.fields`); ``start``/``end`` are NaN where None.
    """

    ids: np.ndarray[Any, np.dtype[np.object_]]
    """Each job's id (a string)."""
    tenant: Coded
    kind: Coded
    state: np.ndarray[Any, np.dtype[np.int8]]
    """Codes: the index of each job's state in :data:`~aifactory.twin.fields.STATES`."""
    tenant_names: list[str]
    """The tenants in sorted order; ``tenant_code`` indexes it."""
    tenant_code: np.ndarray[Any, np.dtype[np.intp]]
    submit: FloatArray
    start: FloatArray
    end: FloatArray
    duration: FloatArray
    gpus: np.ndarray[Any, np.dtype[np.int64]]
    gpu_class: Coded
    placed_class: Coded
    level: Coded
    hardware_owner: Coded
    preemptions: np.ndarray[Any, np.dtype[np.int64]]
    failures: np.ndarray[Any, np.dtype[np.int64]]
    used: FloatArray
    """GPU-seconds each job held GPUs (runs cut short and a run still going included)."""
    progress: FloatArray
    run_start: FloatArray
    lost_preempt: FloatArray
    lost_failure: FloatArray
    service: np.ndarray[Any, np.dtype[np.bool_]]
    """Which jobs are services (a lifetime, not work: ``Job.service``)."""
    codes: dict[JobState, np.ndarray[Any, np.dtype[np.bool_]]]
    """Per state, which jobs are in it."""
    site: Coded
    """The site each job is pinned to (None: any)."""
    staging_s: FloatArray
    slowdown: FloatArray
    project: np.ndarray[Any, np.dtype[np.int16]] | None = None
    """With allocations: each job's project, its place in the allocations file (-1: none)."""
    held_s: FloatArray | None = None
    """With allocations: seconds each job was held on its project's allocation."""
    charged: FloatArray | None = None
    """With allocations: GPU-seconds charged to each job's project for its runs."""


def jobs_by_row(result: SimResult) -> list[Job] | dict[int, Job]:
    """The run's job objects by row (place in submit order): every job of a run over a
    list; the jobs still in flight at the end of a streamed run (the only rows that read a
    job's live state: the scheduler's reason, a running job's progress)."""
    if result.finished is None:
        return result.jobs
    return dict(zip(result.rows, result.jobs, strict=True))


def job_columns(result: SimResult) -> JobColumns:
    """The run's jobs as :class:`JobColumns`: one pass over the jobs (compiled), or, for a
    streamed run, its finished rows with the jobs still in flight read into theirs (the
    same reader either way: :class:`~aifactory.twin.finished.FinishedJobs`)."""
    rows = result.finished
    if rows is None:
        rows = FinishedJobs(len(result.jobs), result.allocations)
        rows.put(result.jobs, list(range(len(result.jobs))), retire=False)
    elif result.jobs:
        rows.put(result.jobs, result.rows, retire=False)
    state = rows.state
    codes = {s: state == k for k, s in enumerate(STATES)}
    # Tenants renumbered in sorted order (a dict of the few names, not a sort of every row).
    seen = rows.values["tenant"]
    names = sorted(t for t in seen if t is not None)
    rank = np.empty(max(len(seen), 1), dtype=np.intp)
    rank[[seen[t] for t in names]] = np.arange(len(names))
    fl = rows.floats
    gpus = rows.ints["gpus"]
    run_start = fl["run_start"]
    used = fl["attained"].copy()
    running = codes[JobState.RUNNING]
    if running.any():
        used[running] += gpus[running] * np.maximum(0.0, result.end_s - run_start[running])
    return JobColumns(
        ids=rows.ids,
        tenant=rows.strings("tenant"),
        kind=rows.strings("kind"),
        state=state,
        tenant_names=names,
        tenant_code=rank[rows.codes["tenant"]],
        submit=fl["submit"],
        start=fl["start"],
        end=fl["end"],
        duration=fl["duration"],
        gpus=gpus,
        gpu_class=rows.strings("gpu_class"),
        placed_class=rows.strings("placed_class"),
        level=rows.strings("level"),
        hardware_owner=rows.strings("hardware_owner"),
        preemptions=rows.ints["preemptions"],
        failures=rows.ints["failures"],
        used=used,
        progress=fl["progress"],
        run_start=run_start,
        lost_preempt=fl["lost_preempt"],
        lost_failure=fl["lost_failure"],
        service=rows.service,
        codes=codes,
        site=rows.strings("site"),
        staging_s=fl["staging_s"],
        slowdown=fl["slowdown"],
        project=rows.project if rows.gate is not None else None,
        held_s=rows.held_s if rows.gate is not None else None,
        charged=rows.charged if rows.gate is not None else None,
    )


def used_gpu_s(result: SimResult) -> FloatArray:
    """GPU-seconds each job held GPUs (including runs cut short and a run at the end)."""
    return job_columns(result).used


def waits_by_reason(result: SimResult, cols: JobColumns) -> dict[str, FloatArray]:
    """Seconds each job waited for each reason (Slurm's REASON), one array per reason (a
    streamed run's: its finished rows' arrays, with the jobs in flight written in),
    computed once per run and handed to :func:`summarize` and :func:`jobs_table`: the
    scheduler's query walks every seat."""
    finished = result.finished
    if finished is None:
        out = {r: np.zeros(len(cols.ids)) for r in WAIT_REASONS}
    else:
        finished.close_waits(result.end_s)
        out = finished.waits
    waits = result.scheduler.wait_times(result.end_s)
    if waits:
        row = (
            {jid: i for i, jid in enumerate(cols.ids)}
            if finished is None
            else {j.id: i for j, i in zip(result.jobs, result.rows, strict=True)}
        )
        for jid, waited in waits.items():
            i = row.get(jid)
            if i is None:
                continue
            for reason, seconds in waited.items():
                if reason in out:
                    out[reason][i] = seconds
    return out


@dataclass(frozen=True, slots=True, eq=False)
class ServiceTimes:
    """What each service (``Job.service``) was asked and given, in seconds per job: a
    service is wanted from its submit until it ends (or the run's end); it is up while it
    runs past its restart time, down otherwise (waiting to be placed, first or again, and
    restarting). Zero for batch jobs and for a service refused or cancelled unstarted."""

    counted: np.ndarray[Any, np.dtype[np.bool_]]
    """The services counted: started, or still waiting at the end."""
    wanted: FloatArray
    up: FloatArray
    down: FloatArray


def service_times(cols: JobColumns, end_s: float, useful_gpu_s: FloatArray) -> ServiceTimes:
    """Each service's wanted, up and down seconds (``useful_gpu_s``: the GPU-seconds each
    job did useful work, which for a service is the GPU-seconds it served)."""
    started = ~np.isnan(cols.start)
    held = cols.codes[JobState.PENDING] | cols.codes[JobState.RUNNING]
    counted = cols.service & (started | held)
    end = np.where(np.isnan(cols.end), end_s, cols.end)
    wanted = np.where(counted, np.maximum(0.0, end - cols.submit), 0.0)
    up = np.where(counted, useful_gpu_s / np.maximum(cols.gpus, 1), 0.0)
    return ServiceTimes(counted, wanted, up, np.maximum(0.0, wanted - up))


def _service_figures(
    times: ServiceTimes, cols: JobColumns, sel: np.ndarray[Any, np.dtype[np.bool_]]
) -> dict[str, Any]:
    """Availability (served over wanted service-GPU-seconds), downtime minutes (summed
    over services) and restarts (failures and preemptions) of the services in ``sel``."""
    mine = sel & times.counted
    wanted = float((times.wanted * cols.gpus)[mine].sum())
    return {
        "services": int(np.count_nonzero(mine)),
        "service_availability": (
            float((times.up * cols.gpus)[mine].sum()) / wanted if wanted > 0 else None
        ),
        "service_downtime_min": float(times.down[mine].sum()) / 60.0,
        "service_restarts": int((cols.failures + cols.preemptions)[mine].sum()),
    }


def useful_gpu_s(result: SimResult, cols: JobColumns) -> FloatArray:
    """GPU-seconds of useful work each job did by its end or the run's (a service's: the
    GPU-seconds it served)."""
    started = ~np.isnan(cols.start)
    done = cols.codes[JobState.COMPLETED]
    useful = np.where(started, cols.progress * cols.gpus, 0.0)
    useful[done] = (cols.duration * cols.gpus)[done]
    write_s = result.scheduler.cfg.checkpoint_write_s
    jobs = jobs_by_row(result)
    for i in np.flatnonzero(cols.codes[JobState.RUNNING] & started).tolist():
        j = jobs[i]
        gained, _ = run_progress(
            result.end_s - j.run_start_s, j.overhead_s, j.checkpoint_s, write_s
        )
        useful[i] = (j.progress_s + gained) * j.gpus
    return useful


def _hours_at_cap(t: list[float], site_mw: list[list[float]], topo: Any) -> dict[str, float]:
    """Per site, the sampled hours its facility power was within 2% of its capacity."""
    caps = np.array([s.power_mw for s in topo.fleet.sites])
    if len(t) < 2 or not site_mw:
        return dict.fromkeys(topo.sites, 0.0)
    dt_h = np.diff(np.asarray(t)) / 3600.0
    at = np.asarray(site_mw)[:-1] >= 0.98 * caps
    hours = (at * dt_h[:, None]).sum(axis=0)
    return {s: float(hours[i]) for i, s in enumerate(topo.sites)}


def summarize(
    result: SimResult,
    *,
    fleet: str,
    trace: str,
    policy: str,
    backfill: str,
    seed: int,
    extra: dict[str, Any] | None = None,
    columns: JobColumns | None = None,
    waits: dict[str, FloatArray] | None = None,
) -> dict[str, Any]:
    """The summary contract (plus extras) for one run (``columns``, ``waits``: already
    read, see :func:`waits_by_reason`)."""
    cols = columns if columns is not None else job_columns(result)
    sched = result.scheduler
    topo = sched.topo
    n = len(cols.ids)
    started = ~np.isnan(cols.start)
    done = cols.codes[JobState.COMPLETED]
    ended = ~np.isnan(cols.end)
    jct_all = cols.end - cols.submit
    queue_all = cols.start - cols.submit
    jct = jct_all[done & ended]
    queue = queue_all[started]
    used = cols.used
    first = float(cols.submit.min()) if n else 0.0
    last_end = float(cols.end[ended].max()) if ended.any() else first
    rejected = sum(result.rejected.values())
    running = cols.codes[JobState.RUNNING]
    unfinished = int(np.count_nonzero(cols.codes[JobState.PENDING] | running))
    # A run that drained ends with its last job; a trailing observer sample is not work.
    # A run cut at its horizon (jobs still waiting or running) ends at the horizon.
    makespan = (result.end_s if unfinished else last_end) - first
    fleet_gpus = topo.gpus_total
    utilization = float(used.sum()) / (fleet_gpus * makespan) if makespan > 0 else 0.0

    nominal: dict[str, int] = defaultdict(int, sched.nominal_by_tenant())
    # Energy per tenant: busy GPU-seconds x busy watts x PUE of the class (capacity-weighted).
    pue = np.array([s.pue for s in topo.fleet.sites])
    cap = np.zeros((len(topo.classes), len(topo.sites)))
    for d in range(topo.n_domains):
        cap[int(topo.domain_class[d]), int(topo.pod_site[topo.domain_pod[d]])] += topo.domain_gpus[
            d
        ]
    class_pue = (cap * pue).sum(axis=1) / np.maximum(cap.sum(axis=1), 1)
    busy_w = np.array([m.busy_watts for m in topo.class_model]) * class_pue
    class_index = {name: c for c, name in enumerate(topo.classes)}
    # Busy watts of the class each job was placed on (0 for a job never placed).
    lut = [class_index[c] if c else -1 for c in cols.placed_class.values]
    placed = np.array(lut, dtype=np.intp)[cols.placed_class.codes]
    job_w = np.where(placed >= 0, busy_w[np.maximum(placed, 0)], 0.0) if n else np.zeros(0)

    # Useful GPU-seconds (ETTR's numerator) and GPU-seconds between first start and end.
    end_or_now = np.where(ended, cols.end, result.end_s)
    wall_all = np.where(started, (end_or_now - cols.start) * cols.gpus, 0.0)
    useful_all = useful_gpu_s(result, cols)
    # ETTR is of training (batch) work only: a service's time is a lifetime, not work.
    training = ~cols.service
    svc = service_times(cols, result.end_s, useful_all)
    waits = waits if waits is not None else waits_by_reason(result, cols)
    # Whose hardware each tenant's GPU-hours ran on: its own (its own or its nearest
    # ancestor's: a consortium's platform), or borrowed from each lender by name.
    by_owner = sched.served_by_owner(result.end_s)
    lent: dict[str, float] = defaultdict(float)

    per: dict[str, dict[str, Any]] = {}
    for k, t in enumerate(cols.tenant_names):
        sel = cols.tenant_code == k
        t_jct = jct_all[sel & done & ended]
        t_q = queue_all[sel & started]
        gpu_hours = float(used[sel].sum()) / 3600.0
        wall = float(wall_all[sel & training].sum())
        useful = float(useful_all[sel & training].sum())
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
            "jobs": int(np.count_nonzero(sel)),
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
            "energy_mwh": float((used[sel] * job_w[sel]).sum()) / 3.6e9,
            "gpu_hours_lost_failure": float(cols.lost_failure[sel].sum()) / 3600.0,
            "gpu_hours_lost_preemption": float(cols.lost_preempt[sel].sum()) / 3600.0,
            **_service_figures(svc, cols, sel),
            # Job-hours spent waiting, by the scheduler's reason (Slurm's REASON column).
            "wait_hours_by_reason": {r: float(waits[r][sel].sum()) / 3600.0 for r in WAIT_REASONS},
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
        "jobs": n,
        "completed": int(np.count_nonzero(done)),
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
        # Preemptions whose victim saved all its work in its grace (scheduler.grace).
        "saved_preemptions": sched.saved_preemptions,
        # (Python's sum in job order, as over the jobs: numpy's sum would round otherwise)
        "gpu_hours_lost_preemption": py_sum(cols.lost_preempt) / 3600.0,
        "gpu_hours_lost_failure": py_sum(cols.lost_failure) / 3600.0,
        "events": result.events,
        "wall_s": result.wall_s,
        "per_tenant": per,
        # Each parent tenant's subtree (leaves hold the jobs; per_tenant is leaves only).
        "tenant_parents": tenant_parents(topo.fleet),
        "per_subtree": subtree_figures(
            topo.fleet,
            list(cols.tenant_names),
            cols.tenant_code,
            jct=np.where(done & ended, jct_all, np.nan),
            queue=queue_all,
            per_tenant=per,
            nominal=nominal,
            makespan_s=makespan,
        ),
        # Every tenant's services together (per tenant: per_tenant's service_* keys).
        "service": _service_figures(svc, cols, np.ones(n, dtype=np.bool_)),
        # Whether the backlog settled: pending GPU-hours' trend over the last third.
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
            # Hours (at the sample resolution) a site drew within 2% of its capacity.
            "hours_at_cap_by_site": _hours_at_cap(obs.t, obs.site_power_mw, topo),
        },
        # What the caps cost: GPU-hours of jobs held back while GPUs were free for them
        # but a site's power cap refused the start (reason power_cap), and such refusals.
        "power_cap": {
            "on": sched.cfg.power_cap,
            "capped_sites": [s for i, s in enumerate(site_names) if sched.power.capped[i]],
            "gpu_hours_held": float((waits["power_cap"] * cols.gpus).sum()) / 3600.0,
            "refused_starts": sched.power.refused,
        },
        # Links, data staging and cross-site gangs (twin/netreport.py; zeros without them).
        "network": network_summary(result, cols.tenant, cols.staging_s),
    }
    if extra:
        summary.update(extra)
    return summary


def _decoded(codes: np.ndarray[Any, np.dtype[np.int32]], names: list[str]) -> pa.Array:
    """The strings ``names[codes]`` as a plain string array."""
    dictionary = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names, pa.string()))
    return cast(dictionary, pa.string())


def _nullable(values: FloatArray, missing: np.ndarray[Any, np.dtype[np.bool_]]) -> pa.Array:
    return pa.array(values, pa.float64(), mask=missing)


def jobs_table(
    result: SimResult,
    columns: JobColumns | None = None,
    waits: dict[str, FloatArray] | None = None,
    rows: slice | None = None,
) -> pa.Table:
    """Per-job results in the ``jobs.parquet`` schema (``columns``, ``waits``: already
    read; ``rows``: only these rows, a slice of the jobs in submit order, so that a caller
    writing a national run's millions of rows can make them a part at a time)."""
    cols = columns if columns is not None else job_columns(result)
    lo, hi, _ = (rows or slice(None)).indices(len(cols.ids))
    hi = max(lo, hi)
    part = slice(lo, hi)
    m = hi - lo
    sched = result.scheduler
    no_start = np.isnan(cols.start[part])
    no_end = np.isnan(cols.end[part])
    rejected = cols.codes[JobState.FAILED][part] & no_start
    # State and tenant from their codes through a dictionary array, cast to plain strings:
    # the same column as converting every row's Python string, without the per-row work.
    names = [str(s) for s in STATES]
    codes = cols.state[part].astype(np.int32)
    codes[rejected] = len(names)
    state = _decoded(codes, [*names, "rejected"])
    tenant = _decoded(cols.tenant_code[part].astype(np.int32), cols.tenant_names)
    waits = waits if waits is not None else waits_by_reason(result, cols)
    svc = service_times(cols, result.end_s, useful_gpu_s(result, cols))
    # Only a job the scheduler still holds (pending, or running) can have a reason.
    held = np.flatnonzero(cols.codes[JobState.PENDING][part] | cols.codes[JobState.RUNNING][part])
    reasons: list[str | None] = [None] * m
    jobs = jobs_by_row(result)
    gate = result.allocations
    staging = result.staging
    for i in held.tolist():
        job = jobs[lo + i]
        reasons[i] = (
            ALLOCATION if gate is not None and gate.is_held(job) else sched.pending_reason(job)
        )
        if staging is not None:  # (a job waiting for its data: twin.staging)
            reasons[i] = staging.reason(job) or reasons[i]
    ids = cols.ids[part]
    project: Any = pa.nulls(m, pa.string())
    waited_alloc: Any = pa.nulls(m, pa.float64())
    charged: Any = pa.nulls(m, pa.float64())
    if gate is not None and cols.project is not None:
        assert cols.held_s is not None
        assert cols.charged is not None
        code = cols.project[part].astype(np.int32)
        none = code < 0
        names = [p.name for p in gate.spec.projects]
        project = cast(
            pa.DictionaryArray.from_arrays(pa.array(code, mask=none), pa.array(names, pa.string())),
            pa.string(),
        )
        waited_alloc = _nullable(cols.held_s[part], none)
        charged = _nullable(cols.charged[part] / 3600.0, none)
    start, end, submit = cols.start[part], cols.end[part], cols.submit[part]
    data: dict[str, Any] = {
        "job_id": ids,
        "tenant": tenant,
        "kind": cols.kind[part],
        "state": state,
        "submit_s": submit,
        "start_s": _nullable(start, no_start),
        "end_s": _nullable(end, no_end),
        "queue_s": _nullable(start - submit, no_start),
        "jct_s": _nullable(end - submit, no_end | rejected),
        "run_s": cols.duration[part],
        "gpus": cols.gpus[part],
        "gpu_class": [
            g or p or None
            for g, p in zip(cols.gpu_class[part], cols.placed_class[part], strict=True)
        ],
        "placement": cols.level[part],
        "hardware_owner": [h or None for h in cols.hardware_owner[part]],
        "preemptions": cols.preemptions[part],
        "failures": cols.failures[part],
        "gpu_hours": cols.used[part] / 3600.0,
        "gpu_hours_lost_preemption": cols.lost_preempt[part] / 3600.0,
        "gpu_hours_lost_failure": cols.lost_failure[part] / 3600.0,
        **{f"wait_{r}_s": waits[r][part] for r in WAIT_REASONS},
        "pending_reason": reasons,
        "project": project,
        "wait_allocation_s": waited_alloc,
        "charged_gpu_hours": charged,
        "service": cols.service[part],
        "downtime_s": _nullable(svc.down[part], ~svc.counted[part]),
        "site": cols.site[part],
        "staging_s": cols.staging_s[part],
        "slowdown": cols.slowdown[part],
    }
    arrays = [
        v if isinstance(v, pa.Array) else pa.array(v, type=f.type)
        for f, v in ((JOBS_SCHEMA.field(name), data[name]) for name in JOBS_SCHEMA.names)
    ]
    return pa.Table.from_arrays(arrays, schema=JOBS_SCHEMA)


PART_ROWS = 1 << 20
"""Rows of ``jobs.parquet`` made and written at a time by :func:`write_jobs_parquet`:
pyarrow's default row group, so the file is the one a whole table written at once makes."""


def write_jobs_parquet(
    result: SimResult,
    path: Path,
    columns: JobColumns | None = None,
    waits: dict[str, FloatArray] | None = None,
    **options: Any,
) -> Path:
    """Write the per-job results to ``path`` (``options``: pyarrow's writer's), a part of
    :data:`PART_ROWS` rows at a time: a national run's jobs table whole is gigabytes."""
    cols = columns if columns is not None else job_columns(result)
    waits = waits if waits is not None else waits_by_reason(result, cols)
    n = len(cols.ids)
    with pq.ParquetWriter(path, JOBS_SCHEMA, **options) as writer:
        for lo in range(0, max(n, 1), PART_ROWS):
            writer.write_table(jobs_table(result, cols, waits, slice(lo, lo + PART_ROWS)))
    return path


def timeseries_table(result: SimResult) -> pa.Table:
    """The 5-minute time series in the ``timeseries.parquet`` layout."""
    obs = result.observer
    data: dict[str, Any] = {
        "t_s": pa.array(obs.t, pa.float64()),
        "busy_gpus": pa.array(obs.busy, pa.int64()),
        "pending_jobs": pa.array(obs.pending_jobs, pa.int64()),
        "pending_gpus": pa.array(obs.pending_gpus, pa.int64()),
        "stranded_gpus": pa.array(obs.stranded, pa.int64()),
        "power_mw": pa.array(obs.power_mw, pa.float64()),
    }
    by_tenant = np.array(obs.busy_by_tenant, dtype=np.int64).reshape(len(obs.t), len(obs.tenants))
    for k, t in enumerate(obs.tenants):
        data[busy_column(t)] = pa.array(by_tenant[:, k], pa.int64())
    sites = result.scheduler.topo.sites
    per_site = np.asarray(obs.site_power_mw, dtype=np.float64).reshape(len(obs.t), len(sites))
    for k, site in enumerate(sites):
        data[site_power_column(site)] = pa.array(per_site[:, k], pa.float64())
    for name, values in link_columns(result, len(obs.t)).items():
        data[name] = pa.array(values, pa.float64())
    return pa.table(data)
