"""When will my job start? Fork the live scheduler into the twin and run it forward.

This is Slurm's ``squeue --start`` (and what Kueue users ask for in kueue#1657), done
with the real scheduler code: the live state (running jobs on their GPUs, pending jobs
in their queues, quota usage) is copied into a fresh :class:`Scheduler` with the same
configuration, and simulated forward on the jobs' *estimates* (the only durations the
control plane knows). Running jobs end at their estimated end (or now, if overdue).
"""

from __future__ import annotations

import heapq

from aifactory.scheduler.core import Scheduler
from aifactory.workload.job import Job, JobState
from aifactory.workload.progress import wall_for

Forecast = dict[str, tuple[float, float]]


def _clone(job: Job, now: float) -> Job:
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
        kind=job.kind,
    )
    twin.progress_s = job.progress_s
    twin.overhead_s = job.overhead_s
    twin.attained = job.attained
    twin.preempted_for = job.preempted_for
    twin.history = [(now, JobState.PENDING)]
    return twin


def forecast(sched: Scheduler, now: float, *, horizon_s: float = 365 * 86400.0) -> Forecast:
    """Estimated (start, end) of every pending and running job of ``sched``.

    Jobs that would not start within ``horizon_s`` are left out.
    """
    twin = Scheduler(sched.topo, sched.cfg)
    write_s = sched.cfg.checkpoint_write_s
    events: list[tuple[float, int, Job, int]] = []
    seq = 0
    out: Forecast = {}
    for job in sched.running_jobs():
        copy = _clone(job, now)
        twin.restore_running(copy, list(job.placement), job.run_start_s)
        end = max(job.est_end_s, now)
        copy.est_end_s = end
        out[job.id] = (job.run_start_s, end)
        seq += 1
        events.append((end, seq, copy, copy.run_epoch))
    for job in sorted(sched.waiting(), key=lambda j: j.qseq):
        twin.submit(_clone(job, now), now)
    heapq.heapify(events)
    t = now
    limit = now + horizon_s
    while True:
        res = twin.schedule(t)
        for job in res.started:
            run = wall_for(
                job.duration_s - job.progress_s, job.overhead_s, job.checkpoint_s, write_s
            )
            seq += 1
            heapq.heappush(events, (t + run, seq, job, job.run_epoch))
            out[job.id] = (t, t + run)
        if not events or twin.pending_count == 0:
            break
        t, _, job, epoch = heapq.heappop(events)
        if t > limit:
            break
        if job.run_epoch == epoch and job.state == JobState.RUNNING:
            twin.finish(job, t)
        while events and events[0][0] == t:
            _, _, other, other_epoch = heapq.heappop(events)
            if other.run_epoch == other_epoch and other.state == JobState.RUNNING:
                twin.finish(other, t)
    return out
