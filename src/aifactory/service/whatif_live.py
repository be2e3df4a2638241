"""A what-if from the live state (issue #21 §1, the dashboard's Twin page): fork the database's
state now, forecast it as the service is configured and with one scenario knob changed
(ordering policy, backfill), and tell per tenant and per job how the expected starts and
ends move.

Both forecasts are made on forks of one database snapshot at one instant, so the difference
is the knob's alone (rows the core refuses are left out of both, as
:func:`aifactory.service.forks.fork_state` does). What a fork supports decides the knobs:
:func:`aifactory.service.forks.new_scheduler` builds the scheduler from the service's
settings, so any setting it reads can be varied;
the fleet (extra GPUs) cannot, because running jobs are restored on the live fleet's nodes.

A what-if costs two twin runs over the whole queue: the API allows one at a time per
replica (:data:`BUSY`) and to admins only.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aifactory.fleet.topology import Topology
from aifactory.service.db import Database
from aifactory.service.forks import new_scheduler
from aifactory.service.jobrows import live_jobs, scheduler_from_rows
from aifactory.service.settings import ServiceSettings
from aifactory.workload.job import Job

# One what-if at a time on this replica; a second is refused (429), not queued.
BUSY = threading.Lock()
MAX_JOBS_SHOWN = 200  # the jobs whose forecast moved most


@dataclass(frozen=True, slots=True)
class JobRef:
    """What a delta row says of a job besides its forecasts."""

    id: str
    tenant: str
    gpus: int
    pending: bool


@dataclass(frozen=True, slots=True)
class JobDelta:
    """One job's expected (start, end) in the base and the variant; None: not within the
    horizon."""

    job: JobRef
    base: tuple[float, float] | None
    variant: tuple[float, float] | None

    @property
    def start_delta_s(self) -> float | None:
        """Variant start minus base start (negative: sooner)."""
        if self.base is None or self.variant is None:
            return None
        return self.variant[0] - self.base[0]

    @property
    def end_delta_s(self) -> float | None:
        """Variant end minus base end (negative: sooner)."""
        if self.base is None or self.variant is None:
            return None
        return self.variant[1] - self.base[1]


@dataclass(frozen=True, slots=True)
class TenantDelta:
    """A tenant's pending jobs under both forecasts. Means are over the pending jobs that
    start within the horizon in both (the only ones a delta exists for); waits are from
    ``now``."""

    tenant: str
    pending: int
    started_base: int
    started_variant: int
    compared: int
    mean_wait_base_s: float | None
    mean_wait_variant_s: float | None
    mean_start_delta_s: float | None
    mean_end_delta_s: float | None


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def compare(
    refs: Sequence[JobRef],
    base: Mapping[str, tuple[float, float]],
    variant: Mapping[str, tuple[float, float]],
    now: float,
) -> tuple[list[TenantDelta], list[JobDelta]]:
    """Per tenant summary of the pending jobs, and every job's delta (largest moves first,
    then by id)."""
    deltas = [JobDelta(r, base.get(r.id), variant.get(r.id)) for r in refs]
    by_tenant: dict[str, list[JobDelta]] = {}
    for d in deltas:
        if d.job.pending:
            by_tenant.setdefault(d.job.tenant, []).append(d)
    tenants = []
    for tenant in sorted(by_tenant):
        rows = by_tenant[tenant]
        both = [d for d in rows if d.base is not None and d.variant is not None]
        tenants.append(
            TenantDelta(
                tenant=tenant,
                pending=len(rows),
                started_base=sum(1 for d in rows if d.base is not None),
                started_variant=sum(1 for d in rows if d.variant is not None),
                compared=len(both),
                mean_wait_base_s=_mean([d.base[0] - now for d in both if d.base is not None]),
                mean_wait_variant_s=_mean(
                    [d.variant[0] - now for d in both if d.variant is not None]
                ),
                mean_start_delta_s=_mean([d.start_delta_s or 0.0 for d in both]),
                mean_end_delta_s=_mean([d.end_delta_s or 0.0 for d in both]),
            )
        )

    def moved(d: JobDelta) -> tuple[float, int, str]:
        delta = d.start_delta_s
        # a job that starts in one forecast only moved more than any measured delta
        size = math.inf if (d.base is None) != (d.variant is None) else abs(delta or 0.0)
        return (-size, len(d.job.id), d.job.id)

    return tenants, sorted(deltas, key=moved)


def _refs(pending: Sequence[Job], running: Sequence[Job]) -> list[JobRef]:
    return [JobRef(j.id, j.tenant, j.gpus, pending=True) for j in pending] + [
        JobRef(j.id, j.tenant, j.gpus, pending=False) for j in running
    ]


class TooManyJobsError(Exception):
    """More live jobs than ``ServiceSettings.whatif_max_jobs``."""

    def __init__(self, jobs: int, limit: int) -> None:
        super().__init__(
            f"what-if: {jobs:,} live jobs, more than the {limit:,} a what-if forecasts "
            "(serve --whatif-max-jobs)"
        )


def run_whatif(
    db: Database,
    topo: Topology,
    settings: ServiceSettings,
    now: float,
    *,
    policy: str | None,
    backfill: str | None,
    horizon_s: float,
) -> tuple[ServiceSettings, list[TenantDelta], list[JobDelta]]:
    """The variant's settings, and the per tenant and per job differences of its forecast
    from the service's own, both from forks taken at ``now``. :class:`TooManyJobsError`
    past the settings' limit."""
    # The twin is imported on the first what-if, not when the API starts.
    from aifactory.twin.forecast import forecast  # noqa: PLC0415

    changes: dict[str, str] = {}
    if policy is not None:
        changes["policy"] = policy
    if backfill is not None:
        changes["backfill"] = backfill
    varied = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    with db.read() as conn:  # one snapshot for both forks
        rows = live_jobs(conn)
    limit = settings.whatif_max_jobs
    if limit and len(rows) > limit:
        raise TooManyJobsError(len(rows), limit)
    base_sched, _ = scheduler_from_rows(new_scheduler(topo, settings), rows, now, strict=False)
    variant_sched, _ = scheduler_from_rows(new_scheduler(topo, varied), rows, now, strict=False)
    refs = _refs(base_sched.waiting(), base_sched.running_jobs())
    base = forecast(base_sched, now, horizon_s=horizon_s)
    variant = forecast(variant_sched, now, horizon_s=horizon_s)
    tenants, jobs = compare(refs, base, variant, now)
    return varied, tenants, jobs
