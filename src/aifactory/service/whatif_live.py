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
  at a site, fewer GPUs at a site (whole NVLink domains), a site's power capacity, the
  links' bandwidths. The variant's scheduler reads them all: GPUs added to a site also draw
  power under its cap; both forecasts stage pending jobs' data over their fleet's links as
  the twin does (:mod:`aifactory.twin.staging`: a copy takes size / the bandwidth share it
  gets), and a pending gang that spans sites is slowed by its fleet's links
  (:mod:`aifactory.physics.comm`); a running gang keeps the slowdown it started with;
- run edits: ``failure_rate`` and ``workload_growth`` make the what-if *sampled*. Failures
  are drawn by the twin's injector (:mod:`aifactory.twin.failures`, the model of
  ``simulate --failures llama3``) over the horizon, on running jobs too: the base at the
  model's rate, the variant at the rate times the multipliers. Arrivals are drawn from each
  tenant's submissions of the last ``history_days`` (:mod:`aifactory.service.whatif_arrivals`
  states the model): the base at their recent rates, the variant with the growth. Sample
  ``k`` of both forecasts uses seed ``seed + k`` and draws the base's arrivals in both,
  so with the knobs at x1 the two forecasts are the same and a difference is the knobs';
  a job's forecast is its mean over the samples in which it starts within the horizon,
  with the number of those, its start's spread and how often a failure interrupted it.

Running jobs are restored on the nodes they hold, and a node's index is in its name: an
edit that adds or removes GPUs renumbers the nodes after it, so each running job's nodes
are mapped onto the edited fleet by the group and domain they belong to (a kept group keeps
its first domains, see ``edit_fleet``). A running job on a node the variant removes is
requeued there: pending again at its submit time, its whole time limit ahead of it, as the
service's own requeue does (:func:`aifactory.service.jobrows.requeue_row`).

A what-if costs two twin runs over the whole queue, a sampled one two per sample (at most
:data:`MAX_SAMPLES`): the API allows one at a time per replica (:data:`BUSY`), to admins
only, bounds what a fleet edit may add (``routers/twin.py``), and counts toward
``whatif_max_jobs`` the jobs of every sample, the arrivals a forecast draws included (and
at most :data:`~aifactory.service.whatif_arrivals.MAX_ARRIVALS` of those).
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

from aifactory.fleet import SpecError
from aifactory.fleet.spec import Fleet
from aifactory.fleet.topology import Topology, compile_topology
from aifactory.service.db import Database
from aifactory.service.forks import new_scheduler
from aifactory.service.jobrows import live_jobs, scheduler_from_rows
from aifactory.service.settings import ServiceSettings
from aifactory.service.whatif_arrivals import (
    ARRIVAL_PREFIX,
    MAX_ARRIVALS,
    Draw,
    History,
    TooManyArrivalsError,
    draw,
    read_history,
)
from aifactory.whatif.apply import edit_fleet, growth_of
from aifactory.whatif.model import (
    MAX_FAILURE_MULTIPLIER,
    MAX_GROWTH,
    AddGpus,
    FailureRate,
    LinkBandwidth,
    PowerCap,
    RemoveGpus,
    SetCohort,
    SetQuota,
    WorkloadGrowth,
)
from aifactory.workload.job import Job, JobState

#: The edits a live what-if accepts: the scenario files' own types, so bounds and errors
#: are theirs (a scenario's policy edit is the request's own ``policy`` and ``backfill``).
LiveEdit = Annotated[
    AddGpus
    | RemoveGpus
    | SetQuota
    | SetCohort
    | PowerCap
    | LinkBandwidth
    | FailureRate
    | WorkloadGrowth,
    Field(discriminator="edit"),
]
AnyLiveEdit = (
    AddGpus | RemoveGpus | SetQuota | SetCohort | PowerCap | LinkBandwidth | FailureRate
) | WorkloadGrowth

# One what-if at a time on this replica; a second is refused (429), not queued.
BUSY = threading.Lock()
MAX_JOBS_SHOWN = 200  # the jobs whose forecast moved most
DEFAULT_SEED = 2030  # a sampled what-if's seed when the request gives none
MAX_SAMPLES = 8  # seeds a sampled what-if runs at most (each costs two forecasts)
FAILURE_MODEL = "llama3"  # the failure model scaled by failure_rate (`simulate --failures`)
MAX_FAILURES = 100_000  # failures one forecast may be expected to draw (rate x GPUs x horizon)


@dataclass(frozen=True, slots=True)
class Sampling:
    """How a sampled what-if draws: sample ``k`` of both forecasts uses seed ``seed + k``;
    arrivals resample the submissions of the last ``history_days``."""

    seed: int = DEFAULT_SEED
    samples: int = 1
    history_days: float = 7.0


@dataclass(frozen=True, slots=True)
class JobSamples:
    """A job over a sampled what-if's samples: in how many it starts within the horizon
    (its forecast is the mean over those), its start's standard deviation over them (None
    under two), and in how many a failure interrupted it."""

    base_n: int
    variant_n: int
    base_start_sd_s: float | None
    variant_start_sd_s: float | None
    base_interrupted: int
    variant_interrupted: int


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
    samples: JobSamples | None = None  # a sampled what-if's spread (None: not sampled)

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
    samples: Mapping[str, JobSamples] | None = None,
) -> tuple[list[TenantDelta], list[JobDelta]]:
    """Per tenant summary of the pending jobs, and every job's delta (largest moves first,
    then by id), with its spread over the samples of a sampled what-if."""
    spread = samples or {}
    deltas = [JobDelta(r, base.get(r.id), variant.get(r.id), spread.get(r.id)) for r in refs]
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
    """More live jobs than ``ServiceSettings.whatif_max_jobs`` (times the samples of a
    sampled what-if: each sample forecasts them again), or, with the arrivals a forecast
    drew, more than it or :data:`MAX_ARRIVALS` arrivals."""

    def __init__(self, jobs: int, limit: int, arrivals: int = 0, samples: int = 1) -> None:
        if not arrivals:
            times = f" x {samples} samples" if samples > 1 else ""
            super().__init__(
                f"what-if: {jobs:,} live jobs{times}, more than the {limit:,} a what-if "
                "forecasts (serve --whatif-max-jobs)" + ("; fewer samples" if times else "")
            )
            return
        bound = f"{limit:,} jobs (serve --whatif-max-jobs) and " if limit else ""
        super().__init__(
            f"what-if: {jobs:,} live jobs and {arrivals:,} or more drawn arrivals, more "
            f"than the {bound}{MAX_ARRIVALS:,} arrivals a what-if forecasts: lower the "
            "growth, the horizon or history_days"
        )


class TooManyFailuresError(TooManyJobsError):
    """More failures expected over the horizon than :data:`MAX_FAILURES` (each is an
    event of the forecast, and the requeues it makes are passes over the queue)."""

    def __init__(self, expected: float) -> None:
        Exception.__init__(
            self,
            f"what-if: {expected:,.0f} failures expected over the horizon at the rate asked, "
            f"more than the {MAX_FAILURES:,} a forecast draws: lower the failure rate or "
            "the horizon",
        )


@dataclass(frozen=True, slots=True)
class Side:
    """One forecast (base or variant) over a sampled what-if's samples: the failures
    expected at its rate (None: no failures drawn) while the forecast has work, i.e.
    rate x GPUs x the hours until its last job ends or the horizon, as the injector draws
    them only then (the mean over the samples), and per sample the failures drawn, the
    live jobs interrupted and the arrivals drawn."""

    rate_per_gpu_hour: float | None
    expected_failures: float | None
    failures: tuple[int, ...]
    interrupted: tuple[int, ...]
    arrivals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TenantArrivals:
    """A tenant's drawn arrivals: its recent rate, its growth, and per forecast the mean
    arrivals and the mean of those started within the horizon."""

    tenant: str
    rate_per_day: float
    growth: float
    base: float
    variant: float
    started_base: float
    started_variant: float


@dataclass(frozen=True, slots=True)
class Sampled:
    """What a sampled what-if (failures or arrivals drawn) drew, and from what."""

    seed: int
    samples: int
    failure_model: str | None
    history_days: float | None
    base: Side
    variant: Side
    arrivals: tuple[TenantArrivals, ...]
    interrupted: tuple[str, ...]  # live jobs a failure interrupted in some variant sample


@dataclass(frozen=True, slots=True)
class Variant:
    """What the variant ran with: its settings, the fleet's GPUs per class, the running
    jobs it requeued (their nodes removed), and what a sampled what-if drew."""

    settings: ServiceSettings
    power_cap: bool
    capacity: dict[str, int]
    requeued: tuple[str, ...]
    sampled: Sampled | None = None


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
    edits: Sequence[AnyLiveEdit] = (),
    sampling: Sampling = Sampling(),
) -> tuple[Variant, list[TenantDelta], list[JobDelta]]:
    """What the variant ran with, and the per tenant and per job differences of its
    forecast from the service's own, both from forks taken at ``now``.

    Both forecasts stage the jobs' data over the fleet's links (the variant's links, with
    its ``link_bandwidth`` edits). With a ``failure_rate`` or ``workload_growth`` edit the
    what-if is *sampled*: each of ``sampling.samples`` seeds runs both forecasts, failures
    drawn from the failure model (:data:`FAILURE_MODEL`) at its rate in the base and times
    the edits' multipliers in the variant, arrivals drawn
    (:mod:`aifactory.service.whatif_arrivals`) at the recent rates in the base and grown in
    the variant, with the same seed for both, so a difference is the knobs'; a job's
    forecast is then its mean over the samples it starts in within the horizon.
    :class:`TooManyJobsError` past the settings' limit (drawn arrivals count); SpecError
    naming ``edits[j].field`` where an edit does not apply."""
    # The twin is imported on the first what-if, not when the API starts.
    from aifactory.twin.forecast import forecast_run  # noqa: PLC0415

    changes: dict[str, str] = {}
    if policy is not None:
        changes["policy"] = policy
    if backfill is not None:
        changes["backfill"] = backfill
    varied = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    capped = True if power_cap is None else power_cap  # the service's scheduler caps
    variant_topo, nodes = topo, None
    if any(not isinstance(e, FailureRate | WorkloadGrowth) for e in edits):
        fleet, kept = edit_fleet(topo.fleet, list(edits), skip_run=True)
        variant_topo = compile_topology(fleet)
        nodes = node_map(topo, variant_topo, kept)
    growth = growth_of(topo.fleet, list(edits), limit=MAX_GROWTH)
    failing = [e.multiplier for e in edits if isinstance(e, FailureRate)]
    _check_rate(edits)
    growing = any(isinstance(e, WorkloadGrowth) for e in edits)
    sampled = bool(failing) or growing
    samples = sampling.samples if sampled else 1
    with db.read() as conn:  # one snapshot for both forks (and the arrivals' history)
        rows = live_jobs(conn)
        history = read_history(conn, now, sampling.history_days) if growing else None
    # The limit bounds the jobs forecast in all: each sample forecasts every job again.
    limit = settings.whatif_max_jobs
    if limit and len(rows) * samples > limit:
        raise TooManyJobsError(len(rows), limit, samples=samples)
    draws: list[tuple[Draw, Draw]] = []
    if history is not None:
        bound = min(MAX_ARRIVALS, limit // samples - len(rows)) if limit else MAX_ARRIVALS
        try:
            for k in range(samples):
                seed = sampling.seed + k
                draws.append(
                    (
                        draw(history, now, horizon_s, {}, seed, k, bound),
                        draw(history, now, horizon_s, growth, seed, k, bound),
                    )
                )
        except TooManyArrivalsError as exc:
            raise TooManyJobsError(len(rows), limit, exc.drawn) from None
    variant_rows: Sequence[Mapping[Any, Any]] = rows
    requeued: list[str] = []
    if nodes is not None:
        variant_rows, requeued = _moved(rows, nodes, variant_topo)
    base_sched, _ = scheduler_from_rows(new_scheduler(topo, settings), rows, now, strict=False)
    variant_sched, _ = scheduler_from_rows(
        new_scheduler(variant_topo, varied, power_cap=capped), variant_rows, now, strict=False
    )
    refs = _refs(base_sched.waiting(), base_sched.running_jobs())
    base_model = variant_model = None
    if failing:
        from aifactory.physics.failures import load_failure_model  # noqa: PLC0415

        base_model = load_failure_model(FAILURE_MODEL)
        variant_model = base_model.with_rate(base_model.rate_per_gpu_hour * math.prod(failing))
        gpus = sum(variant_topo.class_capacity().values())
        most = variant_model.rate_per_gpu_hour * gpus * horizon_s / 3600.0
        if most > MAX_FAILURES:
            raise TooManyFailuresError(most)
    runs: list[tuple[Any, Any]] = []
    for k in range(samples):
        seed = sampling.seed + k
        base_arrivals, variant_arrivals = draws[k] if draws else (None, None)
        runs.append(
            (
                forecast_run(
                    base_sched,
                    now,
                    horizon_s=horizon_s,
                    stage_data=True,
                    failures=base_model,
                    seed=seed,
                    arrivals=base_arrivals.jobs() if base_arrivals is not None else (),
                ),
                forecast_run(
                    variant_sched,
                    now,
                    horizon_s=horizon_s,
                    stage_data=True,
                    failures=variant_model,
                    seed=seed,
                    arrivals=variant_arrivals.jobs() if variant_arrivals is not None else (),
                ),
            )
        )
    ids = [r.id for r in refs]
    base, base_n, base_sd, base_hit = _combine([b for b, _ in runs], ids)
    variant, variant_n, variant_sd, variant_hit = _combine([v for _, v in runs], ids)
    spread: dict[str, JobSamples] | None = None
    info: Sampled | None = None
    if sampled:
        spread = {
            i: JobSamples(
                base_n.get(i, 0),
                variant_n.get(i, 0),
                base_sd.get(i),
                variant_sd.get(i),
                base_hit.get(i, 0),
                variant_hit.get(i, 0),
            )
            for i in ids
        }
        live = set(ids)

        def side(which: int, model: Any, gpus: int) -> Side:
            rate = None if model is None else float(model.rate_per_gpu_hour)
            hours = [(r[which].busy_until - now) / 3600.0 for r in runs]
            return Side(
                rate_per_gpu_hour=rate,
                expected_failures=None
                if rate is None
                else rate * gpus * math.fsum(hours) / len(hours),
                failures=tuple(r[which].failures for r in runs),
                interrupted=tuple(len(live.intersection(r[which].interrupted)) for r in runs),
                arrivals=tuple(len(d[which].times) for d in draws),
            )

        hit = sorted(
            {i for _, v in runs for i in v.interrupted if i in live}, key=lambda i: (len(i), i)
        )
        info = Sampled(
            seed=sampling.seed,
            samples=samples,
            failure_model=FAILURE_MODEL if failing else None,
            history_days=sampling.history_days if growing else None,
            base=side(0, base_model, sum(topo.class_capacity().values())),
            variant=side(1, variant_model, sum(variant_topo.class_capacity().values())),
            arrivals=_arrivals(draws, runs, history, growth),
            interrupted=tuple(hit),
        )
    tenants, jobs = compare(refs, base, variant, now, spread)
    out = Variant(varied, capped, variant_topo.class_capacity(), tuple(requeued), info)
    return out, tenants, jobs


def _check_rate(edits: Sequence[AnyLiveEdit]) -> None:
    """Refuse failure_rate edits whose product passes :data:`MAX_FAILURE_MULTIPLIER`: the
    forecast draws failures at that rate, so its cost grows with it."""
    product = 1.0
    for j, e in enumerate(edits):
        if isinstance(e, FailureRate):
            product *= e.multiplier
            if product > MAX_FAILURE_MULTIPLIER:
                problem = (
                    f"edits[{j}].multiplier: the failure rate multiplied {product:g}x in all, "
                    f"more than {MAX_FAILURE_MULTIPLIER:g}"
                )
                raise SpecError([problem])


def _combine(
    runs: Sequence[Any], ids: Sequence[str]
) -> tuple[dict[str, tuple[float, float]], dict[str, int], dict[str, float | None], dict[str, int]]:
    """Per live job over the forecasts of the samples: its mean (start, end) over those it
    starts in within the horizon, their number, its start's standard deviation over them
    (None under two), and in how many a failure interrupted it."""
    mean: dict[str, tuple[float, float]] = {}
    count: dict[str, int] = {}
    sd: dict[str, float | None] = {}
    hits: dict[str, int] = {}
    for r in runs:
        for i in r.interrupted:
            hits[i] = hits.get(i, 0) + 1
    for i in ids:
        got = [r.starts[i] for r in runs if i in r.starts]
        if not got:
            continue
        count[i] = len(got)
        starts = [g[0] for g in got]
        mean[i] = (math.fsum(starts) / len(got), math.fsum(g[1] for g in got) / len(got))
        sd[i] = float(np.std(starts, ddof=1)) if len(got) > 1 else None
    return mean, count, sd, hits


def _arrivals(
    draws: Sequence[tuple[Draw, Draw]],
    runs: Sequence[Any],
    history: History | None,
    growth: Mapping[str, float],
) -> tuple[TenantArrivals, ...]:
    """Per tenant that submitted in the history: its rate, growth, and mean arrivals
    drawn and started within the horizon in each forecast."""
    if not draws or history is None:
        return ()
    n = len(draws)
    drawn: dict[str, list[float]] = {t: [0.0, 0.0, 0.0, 0.0] for t in history.rows}
    for k, pair in enumerate(draws):
        for which in (0, 1):
            starts = runs[k][which].starts
            for a, row in enumerate(pair[which].rows):
                t = str(row["tenant"])
                acc = drawn.setdefault(t, [0.0, 0.0, 0.0, 0.0])
                acc[which] += 1.0
                if f"{ARRIVAL_PREFIX}{a}" in starts:
                    acc[2 + which] += 1.0
    return tuple(
        TenantArrivals(
            tenant=t,
            rate_per_day=history.rate_per_s(t) * 86_400.0,
            growth=growth.get(t, 1.0),
            base=acc[0] / n,
            variant=acc[1] / n,
            started_base=acc[2] / n,
            started_variant=acc[3] / n,
        )
        for t, acc in sorted(drawn.items())
    )
