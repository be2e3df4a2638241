"""Shortest job first, by the runtime *estimate* (the scheduler never sees true run time)."""

from __future__ import annotations

from aifactory.scheduler.policies.base import Policy, PolicyName
from aifactory.workload.job import Job


class SjfPolicy(Policy):
    """Shorter estimated remaining work first; submit time breaks ties."""

    name = PolicyName.SJF

    def job_key(self, job: Job) -> tuple[float, ...]:
        """Estimated remaining run time, then submit time."""
        return (max(job.estimate_s - job.progress_s, 0.0), job.submit_s)
