"""One call from "fleet + trace + policy" to results: what the CLI, compare and tests use."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aifactory.fleet import Fleet, compile_topology, load_fleet
from aifactory.scheduler.config import BackfillMode, SchedulerConfig
from aifactory.twin.allocgate import TwinAllocations
from aifactory.twin.failures import FailureInjector
from aifactory.twin.inputs import (
    CheckpointPolicy,
    InputOptions,
    InputReport,
    JobSource,
    jobs_from_table,
)
from aifactory.twin.results import (
    JobColumns,
    job_columns,
    jobs_table,
    summarize,
    timeseries_table,
    waits_by_reason,
    write_jobs_parquet,
)
from aifactory.twin.simulator import SimResult, Simulation, TwinConfig, no_gc
from aifactory.workload.job import Job


@dataclass(frozen=True, slots=True)
class TwinSpec:
    """Everything that defines a twin run."""

    fleet: str
    trace: str
    fmt: str | None = None
    policy: str = "fifo"
    backfill: BackfillMode = BackfillMode.EASY
    time_scale: float = 1.0
    seed: int = 0
    estimate_error: float = 0.0
    failures: str = "off"
    checkpoint: CheckpointPolicy = CheckpointPolicy.TRACE
    checkpoint_write_s: float = 0.0
    restart_overhead_s: float = 60.0
    until_s: float | None = None
    preemption: bool = True
    backfill_interval_s: float = 0.0
    preempt_grace_s: float = 0.0  # for jobs whose trace row says nothing
    power_cap: bool = True  # sites under their power caps (scheduler/power.py)
    allocations: str | None = None  # an allocations file (path or bundled name): issue #19
    # Scan limits (SchedulerConfig.queue_depth, max_job_test); 0: none, as a trace replay
    # has always run.
    queue_depth: int = 0
    max_job_test: int = 0
    preempt_candidates: int = 0  # (SchedulerConfig.preempt_candidates)


@dataclass(slots=True)
class TwinRun:
    """A finished run with its outputs."""

    spec: TwinSpec
    result: SimResult
    summary: dict[str, Any]
    inputs: InputReport
    columns: JobColumns | None = None
    """The jobs' fields as read for the summary, reused by :meth:`jobs_table`."""
    waits: dict[str, np.ndarray] | None = None
    """Seconds each job waited per reason, as read for the summary (same reuse)."""

    def jobs_table(self) -> pa.Table:
        """Per-job results (jobs.parquet)."""
        return jobs_table(self.result, self.columns, self.waits)

    def write_jobs(self, path: Path, **options: Any) -> Path:
        """Write jobs.parquet a part at a time (the same file as :meth:`jobs_table` written
        whole, in less memory; ``options``: pyarrow's Parquet writer's)."""
        return write_jobs_parquet(self.result, path, self.columns, self.waits, **options)

    def timeseries_table(self) -> pa.Table:
        """Time series (timeseries.parquet)."""
        return timeseries_table(self.result)

    def projects_table(self) -> pa.Table | None:
        """Per-project allocation results (projects.parquet); None without allocations."""
        gate = self.result.allocations
        if gate is None:
            return None
        from aifactory.twin.allocreport import projects_table  # noqa: PLC0415

        return projects_table(self.summary["projects"])


# The scan limits of the national run. Its backlog grows past tens of thousands of jobs at
# a load beyond capacity, and a deep scan tried ever more of them (about 120 jobs a scan at
# day 10, 350 at day 20 and on towards backfill_depth) so that the cost of an event grew
# with the horizon. 100 is Slurm's default_queue_depth; with the same bound on a deep scan
# (tighter than Slurm's bf_max_job_test of 500) a scan costs about what it did at day 10.
NATIONAL_QUEUE_DEPTH = 100
NATIONAL_MAX_JOB_TEST = 100


# A trace of at most this many rows is made into jobs up front and kept: streaming saves
# memory only a run of millions of jobs needs (2.4 KB a job kept), and costs a little time
# per job (about 0.1 s of the full Philly trace's 82,247 jobs, 6% of its run).
STREAM_ABOVE_ROWS = 500_000


def national_spec(
    fleet: str,
    days: float,
    load: float,
    seed: int,
    *,
    policy: str = "fifo",
    failures: str = "llama3",
    preempt_grace_s: float = 0.0,
    power_cap: bool = True,
    allocations: str | None = None,
    queue_depth: int = NATIONAL_QUEUE_DEPTH,
    max_job_test: int = NATIONAL_MAX_JOB_TEST,
    preempt_candidates: int = 0,
) -> TwinSpec:
    """The run of ``aifactory run`` (and of the long benchmark): a synthesised national
    workload of ``days`` at ``load``, EASY backfill with Slurm's 30 s deep scans and the
    national scan limits, trace checkpoints written in 60 s, until the workload's
    horizon."""
    return TwinSpec(
        fleet=fleet,
        trace=f"synth-{fleet}-{days:g}d-load{load:g}",
        policy=policy,
        backfill=BackfillMode.EASY,
        seed=seed,
        failures=failures,
        checkpoint=CheckpointPolicy.TRACE,
        checkpoint_write_s=60.0,
        until_s=days * 86400.0,
        backfill_interval_s=30.0,  # Slurm's bf_interval default: deep backfill scans every 30 s
        preempt_grace_s=preempt_grace_s,
        power_cap=power_cap,
        allocations=allocations,
        queue_depth=queue_depth,
        max_job_test=max_job_test,
        preempt_candidates=preempt_candidates,
    )


def load_table(trace: str, fmt: str | None) -> tuple[pa.Table, dict[str, int]]:
    """Read a trace (any supported format or Parquet) into the normalised table."""
    from aifactory.workload.traces import read_trace  # noqa: PLC0415 (import cost only when used)

    imported = read_trace(trace, fmt, require_jobs=True)  # no job: say why, do not simulate
    return imported.table, dict(imported.skipped)


def run_twin(
    spec: TwinSpec,
    *,
    table: pa.Table | None = None,
    fleet: Fleet | None = None,
    progress: Callable[[float], None] | None = None,
    watch: Callable[[Simulation], None] | None = None,
    keep_jobs: bool | None = None,
) -> TwinRun:
    """Load, adapt, simulate and summarise. ``table``/``fleet`` skip loading when given;
    ``watch`` is handed the simulation before it runs (to read its kernel as it goes).

    The jobs are streamed (:class:`~aifactory.twin.inputs.JobSource`): made as arrivals
    reach them and let go when they end, their results kept as columns, so that a run's
    memory follows its jobs in flight (a national run of months has millions of jobs).
    ``keep_jobs``: make every job up front and keep it, so that ``result.jobs`` lists
    them all in submit order (for a caller that reads jobs' objects, such as the golden
    tests' backfill count); the summary and tables are the same either way. None (the
    default): keep them for a trace of at most :data:`STREAM_ABOVE_ROWS` rows, stream
    a larger one.

    The cyclic collector is paused for the whole run, not only the simulation: making the
    jobs and reading them back allocates a few objects per job that all live on, and the
    collector walked them again and again (0.3 s of gen-2 passes on the full Philly
    trace while its 82,247 jobs were made). Nothing here makes reference cycles
    (:func:`~aifactory.twin.simulator.no_gc` says why that holds for the simulation).
    """
    with no_gc():
        return _run_twin(spec, table, fleet, progress, watch, keep_jobs=keep_jobs)


def _run_twin(
    spec: TwinSpec,
    table: pa.Table | None,
    fleet: Fleet | None,
    progress: Callable[[float], None] | None,
    watch: Callable[[Simulation], None] | None,
    *,
    keep_jobs: bool | None,
) -> TwinRun:
    fleet = fleet or load_fleet(spec.fleet)
    skipped: dict[str, int] = {}
    if table is None:
        table, skipped = load_table(spec.trace, spec.fmt)
    if keep_jobs is None:
        keep_jobs = table.num_rows <= STREAM_ABOVE_ROWS
    failure_model = None
    rate = 2e-5
    if spec.failures != "off":
        from aifactory.physics.failures import load_failure_model  # noqa: PLC0415

        failure_model = load_failure_model(spec.failures)
        rate = failure_model.rate_per_gpu_hour
    opts = InputOptions(
        time_scale=spec.time_scale,
        estimate_error=spec.estimate_error,
        checkpoint=spec.checkpoint,
        checkpoint_write_s=spec.checkpoint_write_s or 60.0,
        failure_rate=rate,
        seed=spec.seed,
    )
    gate = allocation_gate(spec, fleet)
    if keep_jobs:
        jobs, report = jobs_from_table(table, fleet, opts)
        sim = simulation(spec, fleet, jobs, failure_model, ids_checked=True, allocations=gate)
    else:
        source = JobSource(table, fleet, opts)
        report = source.report
        sim = simulation(spec, fleet, [], failure_model, allocations=gate, source=source)
        del source  # (the simulation lets it go at its end, before the summary is made)
    if watch is not None:
        watch(sim)
    result = sim.run(progress)
    extra: dict[str, Any] = {
        "time_scale": spec.time_scale,
        "estimate_error": spec.estimate_error,
        "failures_model": spec.failures,
        "checkpoint": spec.checkpoint.value,
        "backfill_interval_s": spec.backfill_interval_s,
        "scan_limits": {
            "queue_depth": spec.queue_depth,
            "max_job_test": spec.max_job_test,
            "preempt_candidates": spec.preempt_candidates,
        },
        "preempt_grace_s": spec.preempt_grace_s,
        "inputs": {
            "remapped_tenants": report.remapped,
            "remapped_jobs": sum(report.remapped.values()),
            "jobs_without_tenant": report.no_tenant,
            "default_tenant": report.default_tenant,
            "estimates_from_runtime": report.estimates_from_runtime,
            "skipped_rows": skipped,
        },
    }
    columns = job_columns(result)
    observed = observed_error(table, columns, spec.time_scale)
    if observed is not None:
        extra["observed"] = observed
    waits = waits_by_reason(result, columns)
    if gate is not None:
        from aifactory.twin.allocreport import summarize_allocations  # noqa: PLC0415

        extra.update(summarize_allocations(gate, columns, result.end_s, spec.allocations))
    summary = summarize(
        result,
        columns=columns,
        fleet=fleet.name,
        trace=Path(spec.trace).name if spec.trace else "",
        policy=spec.policy,
        backfill=spec.backfill.value,
        seed=spec.seed,
        extra=extra,
        waits=waits,
    )
    return TwinRun(
        spec=spec, result=result, summary=summary, inputs=report, columns=columns, waits=waits
    )


def simulate_jobs(
    spec: TwinSpec,
    fleet: Fleet,
    jobs: list[Job],
    failure_model: Any = None,
    progress: Callable[[float], None] | None = None,
    *,
    ids_checked: bool = False,
    allocations: TwinAllocations | None = None,
) -> SimResult:
    """Run the simulator on ready-made jobs (``ids_checked``, ``allocations``: see
    :class:`Simulation`)."""
    sim = simulation(
        spec, fleet, jobs, failure_model, ids_checked=ids_checked, allocations=allocations
    )
    return sim.run(progress)


def simulation(
    spec: TwinSpec,
    fleet: Fleet,
    jobs: list[Job],
    failure_model: Any = None,
    *,
    ids_checked: bool = False,
    allocations: TwinAllocations | None = None,
    source: JobSource | None = None,
) -> Simulation:
    """The simulator of ``spec`` on ready-made jobs, not yet run (a caller that watches
    the run, as the long benchmark does, reads its kernel while it goes)."""
    topo = compile_topology(fleet)
    sched_cfg = SchedulerConfig(
        policy=spec.policy,
        backfill=spec.backfill,
        preemption=spec.preemption,
        restart_overhead_s=spec.restart_overhead_s,
        checkpoint_write_s=spec.checkpoint_write_s,
        backfill_interval_s=spec.backfill_interval_s,
        preempt_grace_s=spec.preempt_grace_s,
        power_cap=spec.power_cap,
        queue_depth=spec.queue_depth,
        max_job_test=spec.max_job_test,
        preempt_candidates=spec.preempt_candidates,
    )
    injector = FailureInjector(failure_model) if failure_model is not None else None
    return Simulation(
        topo,
        jobs,
        sched_cfg,
        TwinConfig(seed=spec.seed, until_s=spec.until_s),
        failures=injector,
        ids_checked=ids_checked,
        allocations=allocations,
        source=source,
    )


def allocation_gate(spec: TwinSpec, fleet: Fleet) -> TwinAllocations | None:
    """The allocation gate of a run with an allocations file (None without one): the
    file validated against the fleet's tenants, rates from the GPU catalogue."""
    if spec.allocations is None:
        return None
    from aifactory.allocations import b200_rates  # noqa: PLC0415
    from aifactory.twin.allocfile import load_allocations  # noqa: PLC0415

    allocs = load_allocations(spec.allocations)
    classes: dict[str, list[str]] = {}
    parents: list[str] = []
    for tenant, _parent, _cohort in fleet.iter_tenants():
        classes[tenant.name] = [q.gpu_class for q in tenant.quotas]
        if tenant.children:
            parents.append(tenant.name)
    allocs.check_tenants(classes, spec.allocations, parents)
    topo = compile_topology(fleet)
    rates = b200_rates(
        {c: m.bf16_tflops for c, m in zip(topo.classes, topo.class_model, strict=True)}
    )
    return TwinAllocations(allocs, rates, classes, seed=spec.seed)


def observed_error(table: pa.Table, cols: JobColumns, time_scale: float) -> dict[str, Any] | None:
    """Twin vs reality: queue delays against the observed ones (when the trace has them;
    ``cols``: the run's results, results.JobColumns)."""
    if "observed_start_s" not in table.column_names or time_scale != 1.0:
        return None
    observed = table.column("observed_start_s").to_numpy(zero_copy_only=False).astype(np.float64)
    if np.all(np.isnan(observed)):
        return None
    submit_raw = table.column("submit_s").to_numpy(zero_copy_only=False).astype(np.float64)
    by_id = {jid: i for i, jid in enumerate(cols.ids)}
    ids = table.column("job_id").to_pylist()
    start = cols.start.tolist()
    submit = cols.submit.tolist()
    real: list[float] = []
    twin: list[float] = []
    for i, jid in enumerate(ids):
        row = by_id.get(jid)
        if row is None or math.isnan(start[row]) or np.isnan(observed[i]):
            continue
        real.append(observed[i] - submit_raw[i])
        twin.append(start[row] - submit[row])
    if len(real) < 2:
        return None
    r = np.array(real)
    t = np.array(twin)
    return {
        "jobs": len(real),
        "median_abs_error_s": float(np.median(np.abs(r - t))),
        "max_abs_error_s": float(np.max(np.abs(r - t))),
        "rank_correlation": _spearman(r, t),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    ra = _ranks(a)
    rb = _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums / counts)[inverse]


def with_policy(spec: TwinSpec, policy: str) -> TwinSpec:
    """The same run under another policy."""
    return replace(spec, policy=policy)
