"""EASY backfill: reservations for blocked jobs, and whether a later job may start
around them.

Decides when a blocked job could start at the earliest (its reservation's shadow time,
from running jobs' estimated ends) and whether starting another job now would delay it.
Reads the running jobs' index by end (:class:`~aifactory.scheduler.running.Running`) and
the cluster's free GPUs; changes only that index's lazy deletions and the reservation it
is asked to commit a start against. Which reservations exist in a pass is the cycle's
business.
"""

from __future__ import annotations

from typing import Final

from librt.vecs import append as vec_append
from librt.vecs import vec
from mypy_extensions import i64

from aifactory.scheduler.records import Reservation
from aifactory.scheduler.running import Running
from aifactory.scheduler.seat import Seat
from aifactory.workload.job import Job

INF: Final = float("inf")


def expected_run(job: Job, checkpoint_write_s: float, slowdown: float = 1.0) -> float:
    """Seconds a run of ``job`` started now is expected to take: the restart overhead,
    the estimated work left (``slowdown`` times longer on a gang that spans sites, as the
    twin runs it: :mod:`aifactory.scheduler.spanning`) and the checkpoint writes on the
    way (as many as the twin writes over the stretched work)."""
    remaining = max(job.estimate_s - job.progress_s, 0.0)
    if slowdown != 1.0 and remaining > 0.0:
        remaining *= slowdown
    writes = 0.0
    if job.checkpoint_s and checkpoint_write_s:
        writes = (remaining // job.checkpoint_s) * checkpoint_write_s
    return job.overhead_s + remaining + writes


class Backfill:
    """Reservations from the running jobs' estimated ends."""

    def __init__(self, running: Running, checkpoint_write_s: float) -> None:
        self.running = running
        self.checkpoint_write_s = checkpoint_write_s

    def expected_run(self, job: Job, slowdown: float = 1.0) -> float:
        """:func:`expected_run` with this scheduler's checkpoint write time."""
        return expected_run(job, self.checkpoint_write_s, slowdown)

    def reserve(self, seat: Seat, gpu_class: int, seats: list[Seat], now: float) -> Reservation:
        """The reservation for the blocked head (``seat``) in the class (``seats``: the
        scheduler's seats by index): the earliest time enough GPUs are free if running
        jobs end at their estimates (infinite if they never are)."""
        running = self.running
        free = running.cs.class_free[gpu_class]
        need = seat.gpus
        shadow = now
        if free >= need:
            return Reservation(seat.index, shadow, free - need)
        # Walk the running jobs by estimated end: pop live rows (dropping stale ones for
        # good) until enough GPUs would be free, then put the live ones back.
        ends = running.ends_of(gpu_class)
        walked_end = vec[float]()
        walked_job = vec[i64]()
        walked_epoch = vec[i64]()
        while len(ends):
            end = ends.k0[0]
            index = ends.ref[0]
            epoch = ends.seq[0]
            ends.pop()
            other = seats[index]
            if other.run_epoch != epoch or other.rpos < 0:  # (rpos >= 0: running)
                running.ends_stale[gpu_class] = max(0, running.ends_stale[gpu_class] - 1)
                continue
            walked_end = vec_append(walked_end, end)
            walked_job = vec_append(walked_job, index)
            walked_epoch = vec_append(walked_epoch, epoch)
            free += other.gpus
            shadow = max(end, now)
            if free >= need:
                break
        for i in range(len(walked_end)):
            index = walked_job[i]
            ends.push(walked_end[i], float(index), walked_epoch[i], index)
        if free < need:
            return Reservation(seat.index, INF, 0)
        return Reservation(seat.index, shadow, free - need)

    def fits(self, seat: Seat, resv: Reservation, now: float, *, commit: bool) -> bool:
        """Whether starting the seat's job now leaves the reservation intact (EASY's test: it ends
        before the shadow time, or uses only GPUs spare then; with ``commit`` those spare
        GPUs are taken); the job it is held for always may (between deep scans it keeps
        its reservation, and must not wait for the next scan once its GPUs are free).
        The run is priced unslowed: its placement, and so whether it spans sites, is not
        known yet (a spanning run ends later than tested here)."""
        if seat.index == resv.holder or now + self.expected_run(seat.job) <= resv.shadow:
            return True
        if seat.gpus <= resv.spare:
            if commit:
                resv.spare -= seat.gpus
            return True
        return False
