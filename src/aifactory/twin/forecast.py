"""When will my job start? Fork the live scheduler into the twin and run it forward.

This is Slurm's ``squeue --start`` (and what Kueue users ask for in kueue#1657), done
with the real scheduler code and the twin's own simulator: the live state (running jobs
on their GPUs, pending jobs in their queues, quota usage) is copied into a
:class:`~aifactory.twin.simulator.Simulation` with the same configuration, and simulated
forward on the jobs' *estimates* (the only durations the control plane knows). Running
jobs end at their estimated end (or now, if overdue).

:func:`forecast_run` is the same run with what a what-if may add (the service's live
what-if, :mod:`aifactory.service.whatif_live`): the jobs' data staged over the links as
the twin stages it (the service itself moves no data, so the queue page's forecast
leaves it out), failures from a failure model, seeded, and future arrivals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.failures import FailureInjector
from aifactory.twin.simulator import Resume, Simulation, TwinConfig
from aifactory.workload.job import Job, JobState
from aifactory.workload.progress import wall_for

Forecast = dict[str, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class ForecastRun:
    """A forecast and what happened in it: failures drawn, and the jobs they interrupted."""

    starts: Forecast
    failures: int = 0
    interrupted: tuple[str, ...] = ()  # ids of the jobs a failure stopped at least once
    by_cause: dict[str, int] = field(default_factory=dict)
    #: Until when the run had work: its last job's end, or the horizon's end while a job
    #: waits or runs then (the injector draws failures only while there is work).
    busy_until: float = 0.0


def _clone(job: Job, now: float, *, data: bool = False) -> Job:
    remaining = max(job.estimate_s - job.progress_s, 1.0)
    twin = Job(
        job.id,
        job.tenant,
        job.submit_s,
        job.gpus,
        job.progress_s + remaining,
        estimate_s=job.estimate_s,
        gpu_class=job.gpu_class,
        priority=job.priority,
        preemptible=job.preemptible,
        checkpoint_s=job.checkpoint_s,
        allow_cross_site=job.allow_cross_site,
        site=job.site,
        grad_bytes=job.grad_bytes,
        step_s=job.step_s,
        kind=job.kind,
        gpu_classes=job.gpu_classes,
        hbm_gb_per_gpu=job.hbm_gb_per_gpu,
        preempt_grace_s=job.preempt_grace_s,
        service=job.service,
    )
    if data:
        twin.dataset = job.dataset
        twin.dataset_bytes = job.dataset_bytes
        twin.data_site = job.data_site
        twin.stage_hold = job.stage_hold
    twin.progress_s = job.progress_s
    # Where it runs and how fast: a pinned job stays pinned (and spans from its data's
    # site if it was to), a running gang's run keeps its slowdown.
    twin.span_from_site = job.span_from_site
    twin.level = job.level
    twin.slowdown = job.slowdown
    twin.overhead_s = job.overhead_s
    twin.attained = job.attained
    twin.preempted_for = job.preempted_for
    twin.history = [(now, JobState.PENDING)]
    return twin


def forecast(
    sched: Scheduler,
    now: float,
    *,
    horizon_s: float = 365 * 86400.0,
    max_jobs: int | None = None,
) -> Forecast:
    """Estimated (start, end) of every pending and running job of ``sched``.

    The twin's own simulator runs on a snapshot of ``sched`` (clones of its jobs, so the
    live scheduler is never touched): running jobs restored on their GPUs and ending at
    their estimated end (now, if overdue), pending jobs queued in their queue order.
    Jobs that would not start within ``horizon_s`` are left out (and so is one the run
    stops, preempted or failed, that does not start again within it: its old start and a
    planned end would be neither what happened nor what will), and so are the pending
    jobs after the first ``max_jobs`` in queue order (None: none): each start in the run
    is a pass over the queue, so its cost grows with the queue's length times the jobs
    simulated, and the jobs far down a queue are the least certain anyway.
    """
    return forecast_run(sched, now, horizon_s=horizon_s, max_jobs=max_jobs).starts


def forecast_run(
    sched: Scheduler,
    now: float,
    *,
    horizon_s: float = 365 * 86400.0,
    max_jobs: int | None = None,
    stage_data: bool = False,
    failures: Any = None,
    seed: int = 0,
    arrivals: Sequence[Job] = (),
) -> ForecastRun:
    """:func:`forecast`, and optionally: ``stage_data``, pending jobs that read a dataset
    are staged (:mod:`aifactory.twin.staging`: pinned by earliest expected finish, their
    data copied over the links first); ``failures``, a failure model
    (:class:`aifactory.physics.failures.FailureModel`) whose interruptions are drawn
    from ``seed`` over the horizon, on the restored running jobs too; ``arrivals``, jobs
    submitted after ``now`` (sorted by ``submit_s``, made for this run: the run changes
    them), forecast like the queue's. Without them it is exactly :func:`forecast`."""
    if not (math.isfinite(horizon_s) and horizon_s > 0):
        msg = f"horizon_s: must be a positive number of seconds, got {horizon_s!r}"
        raise ValueError(msg)
    out: Forecast = {}
    running = []
    for job in sched.running_jobs():
        copy = _clone(job, now)
        end = max(sched.expected_end(job), now)
        running.append((copy, list(job.placement), job.run_start_s, end))
        out[job.id] = (job.run_start_s, end)
    waiting = sched.waiting()  # (in queue order)
    if max_jobs is not None:
        waiting = waiting[:max_jobs]
    queue = [_clone(job, now, data=stage_data) for job in waiting]
    limit = now + horizon_s
    injector = FailureInjector(failures) if failures is not None else None
    run = Simulation(
        sched.topo,
        queue,
        sched.cfg,
        TwinConfig(until_s=limit, sample_interval_s=max(horizon_s, 3600.0), seed=seed),
        injector,
        ids_checked=True,
        resume=Resume(now, running, tuple(arrivals)),
    ).run()
    write_s = sched.cfg.checkpoint_write_s
    restored = [r[0] for r in running]
    was_running = {id(job) for job in restored}
    for job in [*run.jobs, *restored]:
        if job.first_start_s is None and id(job) not in was_running:
            continue  # never started within the horizon
        start = job.run_start_s  # its last start, if the forecast preempted it
        if job.state is not JobState.RUNNING and job.end_s is not None:
            out[job.id] = (start, job.end_s)
        elif job.state is JobState.RUNNING:  # at the horizon: its end as planned at its start
            left = job.duration_s - job.progress_s
            out[job.id] = (start, start + wall_for(left, job.overhead_s, job.checkpoint_s, write_s))
        else:  # stopped (preempted, failed) and not started again within the horizon
            out.pop(job.id, None)
    every = [*restored, *run.jobs]
    ends = [job.end_s for job in every]
    busy = now
    if any(e is None or e > limit for e in ends):
        busy = limit
    elif ends:
        busy = max(e for e in ends if e is not None)
    if injector is None:
        return ForecastRun(out, busy_until=busy)
    hit = tuple(job.id for job in every if job.failures > 0)
    return ForecastRun(out, injector.count, hit, dict(injector.by_cause), busy)
