"""Failures as events: interruptions arrive as a Poisson process over the fleet's GPUs.

The rate is per GPU-hour (default from Llama 3: about 2e-5 unexpected interruptions per
GPU-hour, facts.md §3), so a fleet of G GPUs sees ``rate * G`` failures per hour, each
on a GPU drawn uniformly, i.e. on a node in proportion to its GPUs. The failure model
says the cause, whether the node leaves service (hardware) or only the job restarts
(software), and how long a repair takes. Jobs on the node restart from their last
checkpoint, losing the work since and paying the restart cost; a gang whose node is
gone waits for replacement capacity like any pending job.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import numpy as np

from aifactory.scheduler.records import Interruption
from aifactory.scheduler.scheduler import Scheduler
from aifactory.twin.kernel import EventClass, Kernel
from aifactory.workload.job import Job, JobState

FAIL: Final = 1  # event kinds shared with the simulator
REPAIR: Final = 2


class Cause(Protocol):
    """One failure cause of a failure model."""

    name: str
    scope: str  # "node": out of service until repaired; "job": only the job restarts

    def sample_repair_s(self, rng: np.random.Generator) -> float:
        """Seconds until the node is back."""
        ...


class FailureModel(Protocol):
    """A rate and a cause mix."""

    @property
    def rate_per_gpu_hour(self) -> float:
        """Unexpected interruptions per GPU-hour."""
        ...

    def sample_cause(self, rng: np.random.Generator) -> Any:
        """Draw a cause (a :class:`Cause`)."""
        ...


# States of a job that holds GPUs: running, or preempted and saving in its grace.
_HOLDS = frozenset({JobState.RUNNING, JobState.PREEMPTED})
_ENDED = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_PRUNE_MIN = 64  # a node's job list is first pruned at this length


class FailureInjector:
    """Schedules failures and repairs, and applies them to the scheduler's state."""

    def __init__(self, model: FailureModel) -> None:
        self.model = model
        self.count = 0
        self.by_cause: dict[str, int] = {}
        self.down: dict[int, int] = {}  # node -> mask of GPUs taken out of service
        self._node_jobs: dict[int, list[Job]] = {}
        self._prune_at: dict[int, int] = {}  # node -> length at which its list is pruned
        self._cum: np.ndarray | None = None
        self._rate_per_s = 0.0
        self.interrupted: list[Job] = []  # the jobs the last failure stopped (their runs end)

    def start(self, kernel: Kernel, rng: np.random.Generator) -> None:
        """Schedule the first failure."""
        self._rng = rng
        self._kernel = kernel
        self._cum = None
        self._rate_per_s = 0.0

    def bind(self, sched: Scheduler) -> None:
        """Learn the fleet (called once before the run)."""
        gpus = np.asarray(sched.node_gpus(), dtype=np.int64)
        self._cum = np.cumsum(gpus)
        self._rate_per_s = self.model.rate_per_gpu_hour * float(gpus.sum()) / 3600.0

    def schedule_next(self, now: float) -> None:
        """Draw the time of the next failure anywhere in the fleet."""
        if self._rate_per_s <= 0:
            return
        gap = float(self._rng.exponential(1.0 / self._rate_per_s))
        self._kernel.at(now + gap, EventClass.END, FAIL)

    def started(self, job: Job) -> None:
        """Index a started job by its nodes, so a node failure finds its jobs. A node's
        list is kept until the node fails; jobs that ended for good (which a failure skips)
        are dropped from it whenever it has doubled since it was last pruned, so that a
        long run does not keep every job that ever ran on a node that has not failed."""
        lists = self._node_jobs
        for node, _ in job.placement:
            jobs = lists.get(node)
            if jobs is None:
                lists[node] = [job]
                continue
            jobs.append(job)
            if len(jobs) >= self._prune_at.get(node, _PRUNE_MIN):
                jobs[:] = [j for j in jobs if j.state not in _ENDED]
                self._prune_at[node] = max(_PRUNE_MIN, 2 * len(jobs))

    def handle(
        self,
        kind: int,
        payload: Any,
        now: float,
        sched: Scheduler,
        kernel: Kernel,
        *,
        keep_going: bool = True,
    ) -> None:
        """Apply a FAIL or REPAIR event."""
        self.interrupted = []
        if kind == REPAIR:
            node = int(payload)
            sched.return_to_service(node, self.down.pop(node))
            return
        assert self._cum is not None
        gpu = int(self._rng.integers(int(self._cum[-1])))
        node = int(np.searchsorted(self._cum, gpu, side="right"))
        cause = self.model.sample_cause(self._rng)
        self.count += 1
        self.by_cause[cause.name] = self.by_cause.get(cause.name, 0) + 1
        jobs = self._node_jobs.pop(node, [])
        self._prune_at.pop(node, None)
        hit: list[Job] = []
        for job in jobs:
            # (PREEMPTED: a victim still saving on its GPUs, scheduler.grace)
            if job.state in _HOLDS and any(n == node for n, _ in job.placement):
                sched.interrupt(job, now, Interruption.FAILED)
                hit.append(job)
        self.interrupted = hit
        if cause.scope == "node" and node not in self.down:
            self.down[node] = sched.take_out_of_service(node)
            kernel.at(now + cause.sample_repair_s(self._rng), EventClass.END, REPAIR, node)
        if keep_going:
            self.schedule_next(now)
