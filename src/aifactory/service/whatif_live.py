"""A what-if from the live state (issue #21 §1, the dashboard's Twin page): fork the database's
state now, forecast it as the service is configured and with scenario knobs changed, and
tell per tenant and per job how the expected starts and ends move.

Both forecasts are made on forks of one database snapshot at one instant, so the difference
is the knobs' alone (rows the core refuses are left out of both, as
:func:`aifactory.service.forks.fork_state` does). The knobs:

- scheduler settings: ordering policy, backfill, and the sites' power caps on or off
  (``SchedulerConfig.power_cap``); :func:`aifactory.service.forks.new_scheduler` builds both
  schedulers, so the base is exactly the service's own;
- fleet edits, the scenario files' own validated types (:data:`LiveEdit`, applied by
  :func:`aifactory.whatif.apply.edit_fleet`): a tenant's quota (nominal, borrowing and
  lending limits), a tenant's cohort (lending and borrowing on or off), more GPUs of a model
  at a site, fewer GPUs at a site (whole NVLink domains), a site's power capacity. The
  variant's scheduler reads them all: GPUs added to a site also draw power under its cap.

Running jobs are restored on the nodes they hold, and a node's index is in its name: an
edit that adds or removes GPUs renumbers the nodes after it, so each running job's nodes
are mapped onto the edited fleet by the group and domain they belong to (a kept group keeps
its first domains, see ``edit_fleet``). A running job on a node the variant removes is
requeued there: pending again at its submit time, its whole time limit ahead of it, as the
service's own requeue does (:func:`aifactory.service.jobrows.requeue_row`). The run knobs
of a scenario (failure rate, workload growth) have nothing to act on here: a forecast
neither fails jobs nor draws new arrivals.

A what-if costs two twin runs over the whole queue: the API allows one at a time per
replica (:data:`BUSY`), to admins only, and bounds what a fleet edit may add
(``routers/twin.py``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from sqlalchemy import RowMapping

from aifactory.fleet.spec import Fleet
from aifactory.fleet.topology import Topology, compile_topology
from aifactory.service.db import Database
from aifactory.service.forks import new_scheduler
from aifactory.service.jobrows import live_jobs, scheduler_from_rows
from aifactory.service.settings import ServiceSettings
from aifactory.whatif.apply import edit_fleet
from aifactory.whatif.model import AddGpus, PowerCap, RemoveGpus, SetCohort, SetQuota
from aifactory.workload.job import Job, JobState

#: The fleet edits a live what-if accepts: the scenario files' own types, so bounds and
#: errors are theirs (the run edits have nothing to act on in a forecast, see above).
LiveEdit = Annotated[
    AddGpus | RemoveGpus | SetQuota | SetCohort | PowerCap, Field(discriminator="edit")
]

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


@dataclass(frozen=True, slots=True)
class Variant:
    """What the variant ran with: its settings, the fleet's GPUs per class, and the running
    jobs it requeued (their nodes removed)."""

    settings: ServiceSettings
    power_cap: bool
    capacity: dict[str, int]
    requeued: tuple[str, ...]


def node_map(old: Topology, new: Topology, kept: Sequence[int | None]) -> np.ndarray[Any, Any]:
    """For every node of ``old``, its index in ``new`` (-1: removed), given where each old
    group went (:func:`aifactory.whatif.apply.edit_fleet`): domain k of a kept group is
    domain k of the group it became, while that group has k domains or more."""
    old_sizes = _group_domains(old.fleet)
    new_sizes = _group_domains(new.fleet)
    old_first = np.concatenate(([0], np.cumsum(old_sizes)[:-1])).astype(np.int64)
    new_first = np.concatenate(([0], np.cumsum(new_sizes)[:-1])).astype(np.int64)
    domain_to = np.full(old.n_domains, -1, dtype=np.int64)
    for g, to in enumerate(kept):
        if to is None:
            continue
        n = min(int(old_sizes[g]), int(new_sizes[to]))
        domain_to[old_first[g] : old_first[g] + n] = np.arange(n) + new_first[to]
    dom = old.node_domain
    offset = np.arange(old.n_nodes, dtype=np.int64) - old.domain_first_node[dom]
    target = domain_to[dom]
    safe = np.maximum(target, 0)
    return np.where(target >= 0, new.domain_first_node[safe] + offset, -1)


def _group_domains(fleet: Fleet) -> np.ndarray[Any, Any]:
    return np.asarray(
        [g.domains for s in fleet.sites for p in s.pods for g in p.groups], dtype=np.int64
    )


def _node_name(topo: Topology, node: int) -> str:
    """The scheduler's name of a node (``site/pod/d<domain>/n<node>``, its ``node_name``)."""
    d = int(topo.node_domain[node])
    return f"{topo.pods[int(topo.domain_pod[d])]}/d{d}/n{node}"


def _moved(
    rows: Sequence[RowMapping], nodes: np.ndarray[Any, Any], new: Topology
) -> tuple[list[Mapping[Any, Any]], list[str]]:
    """The live rows on the variant's fleet: running jobs' nodes renamed by ``nodes``, and
    those on a removed node pending again; the ids requeued."""
    out: list[Mapping[Any, Any]] = []
    requeued: list[str] = []
    for row in rows:
        if row["state"] != JobState.RUNNING.value or not row["placement"]:
            out.append(row)
            continue
        try:
            held = [(int(str(name).rsplit("/n", 1)[1]), gpus) for name, gpus in row["placement"]]
        except (ValueError, IndexError, TypeError):
            held = []
        if not held or not all(0 <= n < len(nodes) for n, _ in held):
            out.append(row)  # a placement the core refuses: left out of both forks alike
            continue
        to = [int(nodes[n]) for n, _ in held]
        if min(to) < 0:
            requeued.append(str(row["id"]))
            out.append({**row, "state": JobState.PENDING.value, "placement": None})
        else:
            placement = [[_node_name(new, t), gpus] for t, (_, gpus) in zip(to, held, strict=True)]
            out.append({**row, "placement": placement})
    return out, requeued


def run_whatif(
    db: Database,
    topo: Topology,
    settings: ServiceSettings,
    now: float,
    *,
    policy: str | None,
    backfill: str | None,
    horizon_s: float,
    power_cap: bool | None = None,
    edits: Sequence[AddGpus | RemoveGpus | SetQuota | SetCohort | PowerCap] = (),
) -> tuple[Variant, list[TenantDelta], list[JobDelta]]:
    """What the variant ran with, and the per tenant and per job differences of its
    forecast from the service's own, both from forks taken at ``now``.
    :class:`TooManyJobsError` past the settings' limit; SpecError naming ``edits[j].field``
    where the fleet edits do not apply."""
    # The twin is imported on the first what-if, not when the API starts.
    from aifactory.twin.forecast import forecast  # noqa: PLC0415

    changes: dict[str, str] = {}
    if policy is not None:
        changes["policy"] = policy
    if backfill is not None:
        changes["backfill"] = backfill
    varied = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    capped = True if power_cap is None else power_cap  # the service's scheduler caps
    variant_topo, nodes = topo, None
    if edits:
        fleet, kept = edit_fleet(topo.fleet, list(edits))
        variant_topo = compile_topology(fleet)
        nodes = node_map(topo, variant_topo, kept)
    with db.read() as conn:  # one snapshot for both forks
        rows = live_jobs(conn)
    limit = settings.whatif_max_jobs
    if limit and len(rows) > limit:
        raise TooManyJobsError(len(rows), limit)
    variant_rows: Sequence[Mapping[Any, Any]] = rows
    requeued: list[str] = []
    if nodes is not None:
        variant_rows, requeued = _moved(rows, nodes, variant_topo)
    base_sched, _ = scheduler_from_rows(new_scheduler(topo, settings), rows, now, strict=False)
    variant_sched, _ = scheduler_from_rows(
        new_scheduler(variant_topo, varied, power_cap=capped), variant_rows, now, strict=False
    )
    refs = _refs(base_sched.waiting(), base_sched.running_jobs())
    base = forecast(base_sched, now, horizon_s=horizon_s)
    variant = forecast(variant_sched, now, horizon_s=horizon_s)
    tenants, jobs = compare(refs, base, variant, now)
    out = Variant(varied, capped, variant_topo.class_capacity(), tuple(requeued))
    return out, tenants, jobs
