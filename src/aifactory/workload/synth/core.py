"""Synthesis: plan per-(tenant, class) GPU-hour budgets, fill them with drawn jobs, assemble.

Work is drawn for the leaves of the tenant tree (jobs run in leaves), each on its own
nominal quota. Offered load is measured *within the horizon*: a job submitted at ``s`` offers
``gpus x min(duration, horizon - s)`` GPU-seconds, so a four-week campaign submitted on
the last day counts for one day. Each (tenant, class) gets the budget
``share x load x nominal GPUs x horizon``; jobs are drawn i.i.d. (in vectorised batches)
until their cumulative offered work reaches it, and the job that crosses the budget is
cut to land on it exactly: shortened, or, where that would make it shorter than its
class allows, given fewer GPUs (dropped if not even one GPU fits). So the offered load
of every tenant equals ``load`` up to float rounding, or, when a cut job runs past the
horizon, to within one GPU over the horizon per class.
Because submit times are i.i.d. uniform, the jobs kept are a Poisson process conditioned
on its count: the arrival rate is the one that makes the offered load ``load``.

Every (tenant, class) draws from its own generator, seeded from ``(seed, crc32(tenant),
crc32(class))``: same seed, same bytes; and adding a tenant does not reshuffle the jobs of
the others.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from aifactory.fleet.errors import SpecError
from aifactory.fleet.spec import Fleet
from aifactory.workload.schema import OPTIONAL_COLUMNS, TRACE_SCHEMA
from aifactory.workload.synth import exact
from aifactory.workload.synth.catalogue import DAY_S, Catalogue, JobClass, load_catalogue
from aifactory.workload.synth.sampling import (
    ARRIVAL_SAMPLERS,
    DURATION_SAMPLERS,
    SIZE_SAMPLERS,
    FloatArray,
    IntArray,
    estimates,
)

MIN_TRIM_S = 60.0
MAX_JOBS = 20_000_000
_FIRST_BATCH = 256
_MAX_BATCH = 2_000_000  # bounds the memory of one draw

SYNTH_SCHEMA = pa.schema(
    [*TRACE_SCHEMA, *(pa.field(k, t, nullable=True) for k, t in OPTIONAL_COLUMNS.items())]
)


@dataclass(frozen=True, slots=True)
class ClassPlan:
    """What one (tenant, class) must offer: its budget and the limits of its gangs."""

    tenant: str
    kind: str
    job_class: JobClass
    gpu_class: str | None
    max_gpus: int
    budget_gpu_s: float
    hbm_cap_gb: float = math.inf  # the most memory any GPU the job may run on has


@dataclass(frozen=True, slots=True)
class ReportRow:
    """Jobs and offered GPU-hours of one (tenant, class)."""

    tenant: str
    kind: str
    jobs: int
    gpu_hours: float


@dataclass(frozen=True, slots=True)
class TenantLoad:
    """A tenant's offered GPU-hours against its quota over the horizon."""

    tenant: str
    nominal_gpus: int
    quota_gpu_hours: float
    offered_gpu_hours: float

    @property
    def load(self) -> float:
        """Offered GPU-hours / quota GPU-hours."""
        return self.offered_gpu_hours / self.quota_gpu_hours if self.quota_gpu_hours else 0.0


@dataclass(frozen=True, slots=True)
class SynthReport:
    """What was synthesised: jobs per tenant and class, offered load per tenant."""

    fleet: str
    days: float
    load: float
    seed: int
    jobs: int
    rows: list[ReportRow] = field(default_factory=list)
    tenants: list[TenantLoad] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Stable JSON form (for ``--json``)."""
        return {
            "fleet": self.fleet,
            "days": self.days,
            "load": self.load,
            "seed": self.seed,
            "jobs": self.jobs,
            "classes": [
                {"tenant": r.tenant, "kind": r.kind, "jobs": r.jobs, "gpu_hours": r.gpu_hours}
                for r in self.rows
            ],
            "tenants": [
                {
                    "tenant": t.tenant,
                    "nominal_gpus": t.nominal_gpus,
                    "quota_gpu_hours": t.quota_gpu_hours,
                    "offered_gpu_hours": t.offered_gpu_hours,
                    "load": t.load,
                }
                for t in self.tenants
            ],
        }


def tenant_nominals(fleet: Fleet) -> dict[str, int]:
    """Nominal GPUs (all classes) of every leaf tenant holding quota, in tree order: jobs
    are submitted to leaves (a parent's quota caps its subtree, where they run)."""
    out: dict[str, int] = {}
    for tenant, _parent, _cohort in fleet.iter_tenants():
        if tenant.children:
            continue
        total = sum(q.nominal for q in tenant.quotas)
        if total > 0:
            out[tenant.name] = total
    return out


def gang_limits(fleet: Fleet) -> dict[str, dict[str, int]]:
    """Largest gang per tenant and GPU class: the most the scheduler could ever give it.

    That is the quota book's ceiling (nominal plus what the tenant may borrow, by Kueue's
    rules at every level of the tenant tree, see aifactory/scheduler/quota.py), on the one
    owner's hardware where it is largest (a gang runs in one scheduling class: one owner's
    GPUs of the class, see aifactory/scheduler/owners.py), and never more than that
    hardware holds.
    """
    # (imported here: the scheduler is not needed to read a catalogue or a trace)
    from aifactory.fleet.topology import compile_topology  # noqa: PLC0415
    from aifactory.scheduler.owners import sched_classes  # noqa: PLC0415
    from aifactory.scheduler.quota import QuotaBook  # noqa: PLC0415

    topo = compile_topology(fleet)
    sc = sched_classes(topo)
    book = QuotaBook(fleet, sc.topo.classes, sc)
    capacity = sc.topo.class_capacity()
    flavor_of = {name: f for f, name in enumerate(topo.classes)}
    out: dict[str, dict[str, int]] = {}
    for tenant, _parent, _cohort in fleet.iter_tenants():
        t = book.index[tenant.name]
        limits: dict[str, int] = {}
        for q in tenant.quotas:
            f = flavor_of.get(q.gpu_class)
            if f is None:  # a quota of a class no hardware has: nothing can run
                limits[q.gpu_class] = 0
                continue
            limits[q.gpu_class] = max(
                min(book.ceiling(t, c), capacity[sc.topo.classes[c]]) for c in sc.of_flavor[f]
            )
        out[tenant.name] = limits
    return out


def home_sites(fleet: Fleet) -> dict[str, str]:
    """The site where each tenant's own hardware is largest: its own GPUs, else its
    nearest ancestor's that owns GPUs (a consortium's are its platform's); ties go to the
    first site in the file. Where a tenant's corpus is kept (assumption: an organisation
    keeps its data where most of its GPUs are). Tenants with no owner above them: none."""
    from aifactory.fleet.topology import compile_topology  # noqa: PLC0415

    topo = compile_topology(fleet)
    gpus: dict[str, dict[str, int]] = {}
    dom_site = topo.pod_site[topo.domain_pod]
    for owner, site, n in zip(
        topo.domain_owner.tolist(), dom_site.tolist(), topo.domain_gpus.tolist(), strict=True
    ):
        per = gpus.setdefault(topo.owners[owner], {})
        name = topo.sites[site]
        per[name] = per.get(name, 0) + n
    order = [s.name for s in fleet.sites]
    out: dict[str, str] = {}
    for tenant, parent, _cohort in fleet.iter_tenants():
        owner = tenant.name if tenant.name in gpus else None
        if owner is None and parent is not None and parent.name in out:
            out[tenant.name] = out[parent.name]
            continue
        if owner is not None:
            per = gpus[owner]
            out[tenant.name] = max(order, key=lambda s: (per.get(s, 0), -order.index(s)))
    return out


def class_memory(fleet: Fleet) -> dict[str, float]:
    """HBM per GPU, GB, of each GPU class of the fleet (its GPU model's)."""
    from aifactory.fleet.topology import compile_topology  # noqa: PLC0415

    topo = compile_topology(fleet)
    return {name: m.hbm_gb for name, m in zip(topo.classes, topo.class_model, strict=True)}


def plan(fleet: Fleet, days: float, load: float, catalogue: Catalogue) -> list[ClassPlan]:
    """The budget of every (tenant, class) for this fleet, horizon and load."""
    horizon = days * DAY_S
    limits = gang_limits(fleet)
    memory = class_memory(fleet)
    plans: list[ClassPlan] = []
    for tenant, nominal in tenant_nominals(fleet).items():
        held = {c: g for c, g in limits[tenant].items() if g > 0}
        for entry in catalogue.mix_for(tenant).mix:
            cls = catalogue.classes[entry.job_class]
            gpu_class = next((c for c in cls.gpu_class if c in held), None)
            max_gpus = held[gpu_class] if gpu_class is not None else max(held.values())
            may_run = [gpu_class] if gpu_class is not None else list(held)
            plans.append(
                ClassPlan(
                    tenant=tenant,
                    kind=entry.job_class,
                    job_class=cls,
                    gpu_class=gpu_class,
                    max_gpus=max_gpus,
                    budget_gpu_s=entry.share * load * nominal * horizon,
                    hbm_cap_gb=max(memory.get(c, math.inf) for c in may_run),
                )
            )
    return plans


@dataclass(frozen=True, slots=True)
class _Block:
    gpus: IntArray
    duration: FloatArray
    submit: FloatArray
    estimate: FloatArray


def _draw(p: ClassPlan, n: int, rng: np.random.Generator, horizon: float) -> _Block:
    cls = p.job_class
    gpus, base = SIZE_SAMPLERS[cls.size.kind](cls.size, n, rng, p.max_gpus)
    duration = DURATION_SAMPLERS[cls.duration.kind](cls.duration, base, rng)
    submit = ARRIVAL_SAMPLERS[cls.arrival.kind](cls.arrival, n, rng, horizon)
    return _Block(gpus, duration, submit, np.empty(0))


def fill(p: ClassPlan, horizon: float, rng: np.random.Generator, drawn_so_far: int = 0) -> _Block:
    """Draw jobs of one (tenant, class) until their offered work reaches its budget."""
    empty = _Block(np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))
    if p.budget_gpu_s <= 0:
        return empty
    k = p.job_class.arrival.burst_jobs
    parts: list[_Block] = []
    total = 0.0
    count = 0
    batch = _FIRST_BATCH
    while True:
        batch = -(-batch // k) * k  # whole bursts only
        b = _draw(p, batch, rng, horizon)
        work = b.gpus * np.minimum(b.duration, horizon - b.submit)
        cum = total + np.cumsum(work)
        cross = int(np.searchsorted(cum, p.budget_gpu_s, side="left"))
        if cross < batch:
            before = float(cum[cross - 1]) if cross > 0 else total
            gpus, duration = b.gpus[: cross + 1].copy(), b.duration[: cross + 1].copy()
            window = horizon - float(b.submit[cross])
            last = _cut(int(gpus[cross]), p.budget_gpu_s - before, window, _min_duration(p))
            keep = cross if last is None else cross + 1
            if last is not None:
                gpus[cross], duration[cross] = last
            parts.append(_Block(gpus[:keep], duration[:keep], b.submit[:keep], np.empty(0)))
            break
        parts.append(b)
        total = float(cum[-1])
        count += batch
        expected = (p.budget_gpu_s - total) / (total / count)  # jobs still to come
        if drawn_so_far + count + expected > MAX_JOBS:
            msg = f"days: the workload would exceed {MAX_JOBS:,} jobs; lower --days or --load"
            raise SpecError([msg])
        batch = min(math.ceil(expected * 1.1) + 16, _MAX_BATCH)
    gpus = np.concatenate([x.gpus for x in parts])
    duration = np.concatenate([x.duration for x in parts])
    submit = np.concatenate([x.submit for x in parts])
    return _Block(gpus, duration, submit, estimates(p.job_class.estimate, duration, rng))


def _min_duration(p: ClassPlan) -> float:
    """The shortest run time the class allows (a minute at least)."""
    spec = p.job_class.duration
    return max(MIN_TRIM_S, getattr(spec, "min_s", 0.0))


def _cut(gpus: int, remaining: float, window: float, min_s: float) -> tuple[int, float] | None:
    """Resize the job that crosses the budget so its offered work is ``remaining``.

    Shorten it if it stays at least ``min_s`` long; otherwise give it ``min_s`` and fewer
    GPUs (a pre-training campaign does not become a two-day run; it becomes a smaller
    one). None: not even one GPU for ``min_s`` fits, so the job is dropped.
    """
    if remaining / gpus >= min_s:
        return gpus, remaining / gpus  # <= window: remaining <= gpus x min(d, window)
    narrow = int(remaining // min(min_s, window))
    if narrow < 1:
        return None
    if window <= min_s:  # runs past the horizon: offers narrow x window, short by < window
        return narrow, min_s
    return narrow, remaining / narrow


def _rng(seed: int, tenant: str, kind: str) -> np.random.Generator:
    keys = (zlib.crc32(tenant.encode()), zlib.crc32(kind.encode()))
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=keys))


def synthesize(
    fleet: Fleet, days: float, load: float, seed: int, catalogue: Catalogue | None = None
) -> pa.Table:
    """A synthetic workload for ``fleet``: ``days`` long, offered load ``load`` on every
    tenant's nominal quota, reproducible from ``seed``. Columns: TRACE_SCHEMA then
    ``preemptible``, ``checkpoint_s``, ``kind``; rows sorted by submit time."""
    problems = []
    if not (math.isfinite(days) and days > 0):
        problems.append(f"days: must be a finite number > 0 (got {days})")
    if not (math.isfinite(load) and load > 0):
        problems.append(f"load: must be a finite number > 0 (got {load})")
    if seed < 0:
        problems.append(f"seed: must be >= 0 (got {seed})")
    if problems:
        raise SpecError(problems)
    cat = catalogue if catalogue is not None else load_catalogue()
    horizon = days * DAY_S
    plans = plan(fleet, days, load, cat)
    blocks: list[_Block] = []
    memory: list[FloatArray] = []
    grads: list[FloatArray] = []
    drawn = 0
    for p in plans:
        block = fill(p, horizon, _rng(seed, p.tenant, p.kind), drawn)
        drawn += len(block.gpus)
        blocks.append(block)
        hbm, grad = job_model(p, block.gpus, seed)
        memory.append(hbm)
        grads.append(grad)
    return _assemble(plans, blocks, memory, grads, home_sites(fleet))


def job_model(p: ClassPlan, gpus: IntArray, seed: int) -> tuple[FloatArray, FloatArray]:
    """What each job of one (tenant, class) asks of memory and sends per step, from the
    model it trains: GB per GPU (NaN: any GPU) and gradient bytes all-reduced per step
    (NaN: none).

    Memory is the class's ``hbm_gb_per_gpu``, or comes from a model size drawn log-uniform
    in the class's range (:class:`~aifactory.workload.synth.catalogue.ModelMemory`), at
    most what the GPUs it may run on have (:attr:`ClassPlan.hbm_cap_gb`: like the class's
    own cap, the layout is chosen to fit the hardware the tenant holds). Gradients are the
    model's parameters times its ``grad_bytes_per_param`` where it gives one, else the
    class's fixed ``grad_gb``. Model sizes come from a generator of their own, so giving
    a class a model leaves its jobs' other draws as they were."""
    cls = p.job_class
    fixed_grad = math.nan if cls.grad_gb is None else cls.grad_gb * 1e9
    if cls.model is None:
        return np.full(len(gpus), cls.hbm_gb_per_gpu or math.nan), np.full(len(gpus), fixed_grad)
    m = cls.model
    rng = _rng(seed, p.tenant, f"{p.kind}/model")
    lo, hi = math.log(m.params_min), math.log(m.params_max)
    params = (
        exact.exp(rng.uniform(lo, hi, len(gpus))) if hi > lo else np.full(len(gpus), m.params_min)
    )
    hbm = np.minimum(m.per_gpu_gb(params, gpus), p.hbm_cap_gb)
    if m.grad_bytes_per_param is None:
        return hbm, np.full(len(gpus), fixed_grad)
    return hbm, params * m.grad_bytes_per_param


def _assemble(
    plans: list[ClassPlan],
    blocks: list[_Block],
    memory: list[FloatArray],
    grads: list[FloatArray],
    homes: dict[str, str] | None = None,
) -> pa.Table:
    """One table from the per-class blocks: sorted by submit time, ids numbered per tenant."""
    tenants = sorted({p.tenant for p in plans})
    kinds = sorted({p.kind for p in plans})
    classes = sorted({p.gpu_class for p in plans if p.gpu_class is not None})
    sizes = np.asarray([len(b.gpus) for b in blocks], dtype=np.int64)

    def per_job(values: list[int] | list[float] | list[bool], dtype: type) -> npt.NDArray[Any]:
        return np.repeat(np.asarray(values, dtype=dtype), sizes)

    tenant_code = per_job([tenants.index(p.tenant) for p in plans], np.int64)
    kind_code = per_job([kinds.index(p.kind) for p in plans], np.int64)
    class_code = per_job(
        [classes.index(p.gpu_class) if p.gpu_class is not None else -1 for p in plans], np.int64
    )
    priority = per_job([p.job_class.priority for p in plans], np.int32)
    preemptible = per_job([p.job_class.preemptible for p in plans], np.bool_)
    ckpt = per_job(
        [p.job_class.checkpoint_s if p.job_class.checkpoint_s else math.nan for p in plans],
        np.float64,
    )
    hbm = np.concatenate(memory) if memory else np.empty(0)
    service = per_job([p.job_class.service for p in plans], np.bool_)
    grace = per_job(
        [
            math.nan if p.job_class.preempt_grace_s is None else p.job_class.preempt_grace_s
            for p in plans
        ],
        np.float64,
    )

    # Data and spanning: a class with a corpus reads its tenant's one corpus, at its home.
    homes = homes or {}
    has_data = [p.job_class.dataset_tb is not None and p.tenant in homes for p in plans]
    data_names = [
        "",
        *sorted({f"{p.tenant}/{p.kind}" for p, d in zip(plans, has_data, strict=True) if d}),
    ]
    data_code = per_job(
        [
            data_names.index(f"{p.tenant}/{p.kind}") if d else 0
            for p, d in zip(plans, has_data, strict=True)
        ],
        np.int64,
    )
    data_bytes = per_job(
        [
            (p.job_class.dataset_tb or 0.0) * 1e12 if d else math.nan
            for p, d in zip(plans, has_data, strict=True)
        ],
        np.float64,
    )
    cross = per_job([p.job_class.allow_cross_site for p in plans], np.bool_)
    grad = np.concatenate(grads) if grads else np.empty(0)
    step = per_job(
        [math.nan if p.job_class.step_s is None else p.job_class.step_s for p in plans],
        np.float64,
    )
    site_names = ["", *sorted(set(homes.values()))]
    site_code = per_job(
        [
            site_names.index(homes[p.tenant]) if d else 0
            for p, d in zip(plans, has_data, strict=True)
        ],
        np.int64,
    )

    def cat_blocks(name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(b, name) for b in blocks]) if blocks else np.empty(0)

    gpus = cat_blocks("gpus").astype(np.int32)
    duration = cat_blocks("duration")
    submit = cat_blocks("submit")
    estimate = cat_blocks("estimate")
    n = len(gpus)
    order = np.lexsort((np.arange(n), tenant_code, submit))
    tenant_code = tenant_code[order]
    # '<tenant>-<n>': n counts each tenant's jobs in submit order, from 1.
    by_tenant = np.argsort(tenant_code, kind="stable")
    counts = np.bincount(tenant_code, minlength=len(tenants))
    starts = np.cumsum(counts) - counts
    number = np.empty(n, dtype=np.int64)
    number[by_tenant] = np.arange(n) - np.repeat(starts, counts) + 1
    tenant_col = pc.take(pa.array(tenants, pa.string()), pa.array(tenant_code))
    job_id = pc.binary_join_element_wise(
        tenant_col, pc.cast(pa.array(number), pa.string()), pa.scalar("-")
    )
    cc = class_code[order]
    ck = ckpt[order]
    mem = hbm[order]
    grace_s = grace[order]
    columns = {
        "job_id": job_id,
        "tenant": tenant_col,
        "submit_s": pa.array(submit[order], pa.float64()),
        "duration_s": pa.array(duration[order], pa.float64()),
        "gpus": pa.array(gpus[order], pa.int32()),
        "gpu_class": pc.take(pa.array(classes, pa.string()), pa.array(cc, mask=cc < 0)),
        "estimate_s": pa.array(estimate[order], pa.float64()),
        "priority": pa.array(priority[order], pa.int32()),
        "observed_start_s": pa.nulls(n, pa.float64()),
        "status": pa.nulls(n, pa.string()),
        "preemptible": pa.array(preemptible[order], pa.bool_()),
        "checkpoint_s": pa.array(ck, pa.float64(), mask=np.isnan(ck)),
        "kind": pc.take(pa.array(kinds, pa.string()), pa.array(kind_code[order])),
        "hbm_gb_per_gpu": pa.array(mem, pa.float64(), mask=np.isnan(mem)),
        "preempt_grace_s": pa.array(grace_s, pa.float64(), mask=np.isnan(grace_s)),
        "service": pa.array(service[order], pa.bool_()),
        "dataset": _coded(data_names, data_code[order]),
        "dataset_bytes": pa.array(
            data_bytes[order], pa.float64(), mask=np.isnan(data_bytes[order])
        ),
        "data_site": _coded(site_names, site_code[order]),
        "stage_hold": pa.nulls(n, pa.bool_()),
        "allow_cross_site": pa.array(cross[order], pa.bool_()),
        "grad_bytes": pa.array(grad[order], pa.float64(), mask=np.isnan(grad[order])),
        "step_s": pa.array(step[order], pa.float64(), mask=np.isnan(step[order])),
    }
    return pa.Table.from_arrays(list(columns.values()), schema=SYNTH_SCHEMA)


def _coded(names: list[str], codes: npt.NDArray[Any]) -> pa.Array:
    """Strings from ``names`` by code, code 0 (the name "") null."""
    return pc.take(pa.array(names, pa.string()), pa.array(codes, mask=codes == 0))


def synth_report(table: pa.Table, fleet: Fleet, days: float, load: float, seed: int) -> SynthReport:
    """Measure a synthesised table: jobs and offered GPU-hours per tenant and class, and the
    offered load on each tenant's nominal quota (work clipped to the horizon)."""
    horizon = days * DAY_S
    submit = table["submit_s"].to_numpy()
    work = table["gpus"].to_numpy().astype(np.float64) * np.minimum(
        table["duration_s"].to_numpy(), horizon - submit
    )
    t = pa.table({"tenant": table["tenant"], "kind": table["kind"], "work": work})
    agg = t.group_by(["tenant", "kind"]).aggregate([("work", "sum"), ("work", "count")])
    rows = sorted(
        (
            ReportRow(tenant, kind, int(cnt), float(w) / 3600.0)
            for tenant, kind, w, cnt in zip(
                agg["tenant"].to_pylist(),
                agg["kind"].to_pylist(),
                agg["work_sum"].to_pylist(),
                agg["work_count"].to_pylist(),
                strict=True,
            )
        ),
        key=lambda r: (r.tenant, r.kind),
    )
    offered: dict[str, float] = defaultdict(float)
    for r in rows:
        offered[r.tenant] += r.gpu_hours
    tenants = [
        TenantLoad(name, nominal, nominal * horizon / 3600.0, offered.get(name, 0.0))
        for name, nominal in tenant_nominals(fleet).items()
    ]
    return SynthReport(fleet.name, days, load, seed, table.num_rows, rows, tenants)
