"""Jobs made from trace columns, and a run's jobs read back as columns (compiled, mypyc).

A speed trick, kept to this module: from interpreted code, each field of a compiled
``Job`` is set or read through a descriptor that boxes it, and each ``Job(...)`` call
parses its keywords; compiled, the same loops write and read the object's struct fields
and call the constructor directly. On the full Philly trace (82,247 jobs) the two loops
took 1.2 s of a ``simulate`` from interpreted code (issue #21 §4).
:func:`aifactory.twin.inputs.jobs_from_table` prepares the columns as Python lists and
:func:`aifactory.twin.results.job_columns` makes arrays of what :func:`read_fields` reads.

As pure Python (``AIFACTORY_PURE_PYTHON=1``, or no compiler) these are the same loops with
the same results, so the builds cannot disagree; the golden per-job digests pin the jobs
made here, and tests/test_twin_columns.py the summary and jobs table made from the
fields read here (against the per-job loops they replaced).
"""

from __future__ import annotations

import math
from typing import Final

from aifactory.workload.job import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    PREEMPTED,
    RUNNING,
    Job,
    JobState,
)

STATES: Final[tuple[JobState, ...]] = (PENDING, RUNNING, PREEMPTED, COMPLETED, FAILED, CANCELLED)
"""The order of :attr:`JobFields.state` codes."""
NAN: Final = math.nan


def state_code(state: JobState) -> int:
    """The index of ``state`` in :data:`STATES` (``is`` tests: an enum's hash is Python code)."""
    if state is PENDING:
        return 0
    if state is RUNNING:
        return 1
    if state is PREEMPTED:
        return 2
    if state is COMPLETED:
        return 3
    if state is FAILED:
        return 4
    return 5


def make_jobs(
    ids: list[str],
    tenants: list[str | None],
    submit: list[float],
    gpus: list[int],
    duration: list[float],
    estimate: list[float],
    classes: list[str | None],
    hbm: list[float | None],
    priority: list[int],
    preemptible: list[bool | None],
    checkpoint: list[float | None],
    kinds: list[str | None],
    known: set[str],
    fallback: str,
    grace: list[float | None],
    service: list[bool],
) -> tuple[list[Job], int, dict[str, int]]:
    """One job per row; a row without a tenant, or with one the fleet does not know, goes
    to ``fallback``. Returns the jobs, the rows without a tenant and the remapped ones.
    ``grace``: each job's preempt grace (None: the scheduler's default); ``service``:
    whether it is a service."""
    jobs: list[Job] = []
    no_tenant = 0
    remapped: dict[str, int] = {}
    for i in range(len(ids)):
        tenant = tenants[i] or ""
        if not tenant:
            no_tenant += 1
            tenant = fallback
        elif tenant not in known:
            remapped[tenant] = remapped.get(tenant, 0) + 1
            tenant = fallback
        asked = classes[i]
        several: tuple[str, ...] = ()
        if asked is not None and "," in asked:  # acceptable classes, comma-separated
            several = tuple(name.strip() for name in asked.split(","))
            asked = None
        can_preempt = preemptible[i]
        jobs.append(
            Job(
                ids[i],
                tenant,
                submit[i],
                gpus[i],
                duration[i],
                estimate_s=estimate[i],
                gpu_class=asked,
                gpu_classes=several,
                hbm_gb_per_gpu=hbm[i],
                priority=priority[i],
                preemptible=can_preempt if can_preempt is not None else True,
                checkpoint_s=checkpoint[i],
                kind=kinds[i] or "",
                preempt_grace_s=grace[i],
                service=service[i],
            )
        )
    return jobs, no_tenant, remapped


class JobFields:
    """One list per field, in job order; NaN where a job has no start or end yet."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.tenant: list[str] = []
        self.kind: list[str] = []
        self.state: list[int] = []  # codes: the index in STATES
        self.submit: list[float] = []
        self.start: list[float] = []
        self.end: list[float] = []
        self.duration: list[float] = []
        self.gpus: list[int] = []
        self.gpu_class: list[str | None] = []
        self.placed_class: list[str] = []
        self.level: list[str] = []
        self.hardware_owner: list[str] = []
        self.preemptions: list[int] = []
        self.failures: list[int] = []
        self.attained: list[float] = []
        self.run_start: list[float] = []
        self.progress: list[float] = []
        self.lost_preempt: list[float] = []
        self.lost_failure: list[float] = []
        self.service: list[bool] = []
        self.site: list[str | None] = []
        self.staging_s: list[float] = []
        self.slowdown: list[float] = []


def read_fields(jobs: list[Job]) -> JobFields:
    """Every job's fields that the summary and ``jobs.parquet`` need."""
    f = JobFields()
    for j in jobs:
        f.ids.append(j.id)
        f.tenant.append(j.tenant)
        f.kind.append(j.kind)
        f.state.append(state_code(j.state))
        f.submit.append(j.submit_s)
        start, end = j.first_start_s, j.end_s
        f.start.append(start if start is not None else NAN)
        f.end.append(end if end is not None else NAN)
        f.duration.append(j.duration_s)
        f.gpus.append(j.gpus)
        f.gpu_class.append(j.gpu_class)
        f.placed_class.append(j.placed_class)
        f.level.append(j.level)
        f.hardware_owner.append(j.hardware_owner)
        f.preemptions.append(j.preemptions)
        f.failures.append(j.failures)
        f.attained.append(j.attained)
        f.run_start.append(j.run_start_s)
        f.progress.append(j.progress_s)
        f.lost_preempt.append(j.lost_preempt_gpu_s)
        f.lost_failure.append(j.lost_failure_gpu_s)
        f.service.append(j.service)
        f.site.append(j.site)
        f.staging_s.append(j.staging_s)
        f.slowdown.append(j.slowdown)
    return f


def encode(values: list[str | None], seen: dict[str | None, int]) -> list[int]:
    """Each value's code in ``seen``, a value not in it yet getting the next code (a
    string column has a few distinct values: the codes are what a run keeps per job)."""
    codes: list[int] = []
    for value in values:
        code = seen.get(value)
        if code is None:
            code = len(seen)
            seen[value] = code
        codes.append(code)
    return codes
