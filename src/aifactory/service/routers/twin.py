"""``/v1/twin``: the dashboard's Twin page (issue #21 §1). Stored reports are listed and opened
through short-lived tickets (:mod:`aifactory.service.twin_reports`); a what-if forecasts the
live state with scheduler settings or the fleet changed (:mod:`aifactory.service.whatif_live`).

Admins only: a report shows every tenant of its run, and a what-if costs two twin runs over
the whole queue (one at a time per replica, a second while one runs gets 429; past
``ServiceSettings.whatif_max_jobs`` live jobs, 409). Its fleet edits are the scenario
files' types with their bounds, and two of the API's own: at most :data:`MAX_EDITS` edits
and :data:`MAX_ADDED_GPUS` GPUs added in all (the variant's topology and its scheduler
grow with the nodes); an edit that does not apply to the fleet (an unknown site, tenant,
class or model, a quota above the capacity left) is a 422 naming ``edits[j].field``. A
sampled what-if (a failure rate or workload growth edit) runs both forecasts once per seed,
at most ``whatif_live.MAX_SAMPLES``, and its drawn arrivals count toward the job limit.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from aifactory.fleet import SpecError
from aifactory.scheduler.config import BackfillMode
from aifactory.scheduler.policies.base import PolicyName
from aifactory.service import twin_reports, whatif_live
from aifactory.service.api import Caller
from aifactory.service.auth import Principal, Role
from aifactory.service.errors import AUTHENTICATED, FieldError, responses
from aifactory.service.routers import ServiceDep
from aifactory.whatif.model import AddGpus

router = APIRouter(tags=["twin"])

# Visible ASCII at the edge, as every name of the API; which names and files may be served
# is twin_reports.report_file's decision (anything else: 404).
ReportName = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
ReportFile = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[!-~]+$")]
WHATIF_RETRY_S = 5.0
MAX_HORIZON_DAYS = 365.0
MAX_EDITS = 32
MAX_ADDED_GPUS = 100_000
MAX_HISTORY_DAYS = 30.0


def _admin(who: Principal, what: str) -> None:
    if who.role is not Role.ADMIN:
        raise HTTPException(403, f"{what}: admin only")


class ReportView(BaseModel):
    """One stored report folder."""

    name: str
    kind: str = Field(description="'run' (report.html) or 'sweep' (sweep.html).")
    files: list[str]
    modified_at: float
    bytes: int


class Reports(BaseModel):
    """The stored reports, newest first, and where they are looked for."""

    folder: str
    items: list[ReportView]


class Ticket(BaseModel):
    """Where to open one report file without a bearer token, until ``expires_at``."""

    url: str
    expires_at: float


@router.get(
    "/v1/twin/reports", response_model=Reports, responses=responses(*AUTHENTICATED, 403, 422)
)
def list_reports(who: Caller, service: ServiceDep) -> Reports:
    """The twin reports stored in the service's reports folder (admins)."""
    _admin(who, "twin reports")
    root = service.settings.reports_path()
    return Reports(
        folder=str(root),
        items=[
            ReportView(
                name=r.name,
                kind=r.kind,
                files=list(r.files),
                modified_at=r.modified_at,
                bytes=r.bytes,
            )
            for r in twin_reports.list_reports(root)
        ],
    )


@router.post(
    "/v1/twin/reports/{name}/{file}/ticket",
    response_model=Ticket,
    responses=responses(*AUTHENTICATED, 403, 404, 422),
)
def report_ticket(name: ReportName, file: ReportFile, who: Caller, service: ServiceDep) -> Ticket:
    """A ticket to open one file of a stored report in a browser frame (admins)."""
    _admin(who, "twin reports")
    if twin_reports.report_file(service.settings.reports_path(), name, file) is None:
        raise HTTPException(404, f"report {name}/{file}: not found")
    try:
        ticket, expires = twin_reports.issue_ticket(
            service.db, who.token_id, name, file, service.clock()
        )
    except PermissionError:
        raise HTTPException(401, "token no longer valid") from None
    return Ticket(url=f"/twin/reports/{name}/{file}?ticket={ticket}", expires_at=expires)


@router.get("/twin/reports/{name}/{file}", include_in_schema=False)
def report_page(
    name: ReportName,
    file: ReportFile,
    service: ServiceDep,
    ticket: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    """One report file, opened with a ticket; served sandboxed, framed only by this origin."""
    # The same 404 for a bad ticket and a missing file: neither tells what exists.
    missing = HTTPException(404, f"report {name}/{file}: not found")
    if not twin_reports.check_ticket(service.db, ticket, name, file, service.clock()):
        raise missing
    path = twin_reports.report_file(service.settings.reports_path(), name, file)
    if path is None:
        raise missing
    return HTMLResponse(
        path.read_text(encoding="utf-8", errors="replace"),
        headers=dict(twin_reports.REPORT_HEADERS),
    )


class WhatIf(BaseModel):
    """The knobs to change; a knob left out keeps the service's setting or fleet."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicyName | None = Field(default=None, description="Ordering policy.")
    backfill: BackfillMode | None = Field(default=None, description="Backfill mode.")
    power_cap: bool | None = Field(
        default=None,
        strict=True,
        description="Whether starts wait to keep each site under its power cap (the "
        "service's scheduler: true).",
    )
    edits: list[whatif_live.LiveEdit] = Field(
        default_factory=list,
        max_length=MAX_EDITS,
        description="Edits, in order, as in a scenario file's variation: add_gpus, "
        "remove_gpus (running jobs on removed nodes are requeued), set_quota (nominal, "
        "borrowing and lending limits), set_cohort, power_cap (a site's MW), "
        "link_bandwidth (data staging and cross-site gangs read the links); failure_rate "
        "and workload_growth make the what-if sampled (failures drawn, the failure model's "
        "rate times the multiplier; arrivals drawn from the tenants' recent submissions, "
        "grown), with the base drawn from the same seeds at x1. At most "
        f"{MAX_ADDED_GPUS:,} GPUs added in all.",
    )
    seed: int = Field(
        default=whatif_live.DEFAULT_SEED,
        strict=True,
        ge=0,
        le=2**31 - 1,
        description="A sampled what-if's seed: sample k of both forecasts uses seed + k.",
    )
    samples: int = Field(
        default=1,
        strict=True,
        ge=1,
        le=whatif_live.MAX_SAMPLES,
        description="Seeds a sampled what-if runs (each two forecasts); per job the mean and "
        "spread over them. Ignored when nothing is sampled.",
    )
    history_days: float = Field(
        default=7.0,
        strict=True,
        ge=1,
        le=MAX_HISTORY_DAYS,
        description="workload_growth: arrivals resample each tenant's submissions of this "
        "many days before now, at their rate.",
    )
    horizon_days: float = Field(
        default=30.0,
        strict=True,
        ge=1,
        le=MAX_HORIZON_DAYS,
        description="Forecast this far ahead (days); a job starting later counts as not started.",
    )


class Settings(BaseModel):
    """The scheduler settings and GPUs a forecast ran with."""

    policy: str
    backfill: str
    power_cap: bool
    gpus: dict[str, int] = Field(description="GPUs per class of the fleet it ran on.")


class TenantChange(BaseModel):
    """A tenant's pending jobs under both forecasts (means over jobs started in both)."""

    tenant: str
    pending: int
    started_base: int
    started_variant: int
    compared: int
    mean_wait_base_s: float | None
    mean_wait_variant_s: float | None
    mean_start_delta_s: float | None = Field(description="Negative: sooner in the variant.")
    mean_end_delta_s: float | None


class JobChange(BaseModel):
    """One job's expected start and end in both forecasts (null: not within the horizon)."""

    id: int
    tenant: str
    gpus: int
    state: str
    base_start: float | None
    base_end: float | None
    variant_start: float | None
    variant_end: float | None
    start_delta_s: float | None
    base_samples: int | None = Field(
        default=None,
        description="Sampled: samples in which it starts within the horizon in the base "
        "(its forecast is the mean over them); null: not sampled.",
    )
    variant_samples: int | None = None
    base_start_sd_s: float | None = Field(
        default=None, description="Sampled: its start's standard deviation over them."
    )
    variant_start_sd_s: float | None = None
    base_interrupted: int | None = Field(
        default=None, description="Sampled: samples in which a failure interrupted it."
    )
    variant_interrupted: int | None = None


class SideView(BaseModel):
    """What one forecast drew over the samples (per sample, in seed order)."""

    rate_per_gpu_hour: float | None = Field(description="Failure rate; null: no failures.")
    expected_failures: float | None = Field(
        description="rate x GPUs x hours the forecast has work (until its last job ends, "
        "or the horizon): the failures expected, the mean over the samples."
    )
    failures: list[int]
    interrupted: list[int] = Field(description="Live jobs a failure interrupted, per sample.")
    arrivals: list[int] = Field(description="Arrivals drawn, per sample.")


class TenantArrivalsView(BaseModel):
    """A tenant's drawn arrivals: recent rate, growth, means over the samples."""

    tenant: str
    rate_per_day: float
    growth: float
    base: float
    variant: float
    started_base: float
    started_variant: float


class SampledView(BaseModel):
    """A sampled forecast: what it drew, from which seed and model."""

    seed: int
    samples: int
    failure_model: str | None
    history_days: float | None
    base: SideView
    variant: SideView
    arrivals: list[TenantArrivalsView]
    interrupted: list[int] = Field(
        description="Live jobs a failure interrupted in some sample of the variant."
    )


class WhatIfResult(BaseModel):
    """The variant's forecast against the service's own, from the live state at ``now``."""

    now: float
    horizon_s: float
    base: Settings
    variant: Settings
    seconds: float = Field(description="Time this what-if took to compute.")
    tenants: list[TenantChange]
    jobs: list[JobChange] = Field(description="The jobs whose start moved most (at most 200).")
    jobs_total: int
    edits: int = Field(description="Fleet edits applied to the variant.")
    requeued: list[int] = Field(
        description="Running jobs the variant requeued: their nodes were removed."
    )
    sampled: SampledView | None = Field(
        default=None,
        description="A sampled forecast (failure_rate or workload_growth): its seed, "
        "expected and drawn failures, interrupted jobs and arrivals; null: not sampled.",
    )


def _check_edits(edits: list[whatif_live.LiveEdit]) -> None:
    added = 0
    for j, edit in enumerate(edits):
        if isinstance(edit, AddGpus):
            added += edit.gpus
            if added > MAX_ADDED_GPUS:
                raise FieldError(
                    f"edits[{j}].gpus",
                    f"a what-if adds at most {MAX_ADDED_GPUS:,} GPUs in all (got {added:,})",
                )


@router.post(
    "/v1/twin/whatif",
    response_model=WhatIfResult,
    responses=responses(*AUTHENTICATED, 403, 409, 413, 422),
)
def whatif(body: WhatIf, who: Caller, service: ServiceDep) -> WhatIfResult:
    """Fork the live state now and forecast it with knobs changed (admins; one at a time)."""
    _admin(who, "what-if")
    _check_edits(body.edits)
    if not whatif_live.BUSY.acquire(blocking=False):
        raise HTTPException(
            429,
            "what-if: one is running on this replica; retry later",
            headers={"Retry-After": str(int(WHATIF_RETRY_S))},
        )
    try:
        t0 = time.perf_counter()
        now = service.clock()
        horizon = body.horizon_days * 86_400.0
        variant, tenants, jobs = whatif_live.run_whatif(
            service.db,
            service.topo,
            service.settings,
            now,
            policy=None if body.policy is None else body.policy.value,
            backfill=None if body.backfill is None else body.backfill.value,
            horizon_s=horizon,
            power_cap=body.power_cap,
            edits=body.edits,
            sampling=whatif_live.Sampling(body.seed, body.samples, body.history_days),
        )
        seconds = time.perf_counter() - t0
    except whatif_live.TooManyJobsError as exc:
        raise HTTPException(409, str(exc)) from None
    except SpecError as exc:
        raise HTTPException(422, [_problem(p) for p in exc.problems]) from None
    finally:
        whatif_live.BUSY.release()
    base = service.settings
    varied = variant.settings
    return WhatIfResult(
        now=now,
        horizon_s=horizon,
        base=Settings(
            policy=base.policy,
            backfill=base.backfill,
            power_cap=True,
            gpus=service.topo.class_capacity(),
        ),
        variant=Settings(
            policy=varied.policy,
            backfill=varied.backfill,
            power_cap=variant.power_cap,
            gpus=variant.capacity,
        ),
        seconds=seconds,
        tenants=[TenantChange(**dataclasses.asdict(t)) for t in tenants],
        jobs=[
            JobChange(
                id=int(d.job.id),
                tenant=d.job.tenant,
                gpus=d.job.gpus,
                state="pending" if d.job.pending else "running",
                base_start=None if d.base is None else d.base[0],
                base_end=None if d.base is None else d.base[1],
                variant_start=None if d.variant is None else d.variant[0],
                variant_end=None if d.variant is None else d.variant[1],
                start_delta_s=d.start_delta_s,
                **_spread(d.samples),
            )
            for d in jobs[: whatif_live.MAX_JOBS_SHOWN]
        ],
        jobs_total=len(jobs),
        edits=len(body.edits),
        requeued=[int(i) for i in variant.requeued],
        sampled=None if variant.sampled is None else _sampled(variant.sampled),
    )


def _spread(s: whatif_live.JobSamples | None) -> dict[str, float | int | None]:
    if s is None:
        return {}
    return {
        "base_samples": s.base_n,
        "variant_samples": s.variant_n,
        "base_start_sd_s": s.base_start_sd_s,
        "variant_start_sd_s": s.variant_start_sd_s,
        "base_interrupted": s.base_interrupted,
        "variant_interrupted": s.variant_interrupted,
    }


def _side(s: whatif_live.Side) -> SideView:
    return SideView(
        rate_per_gpu_hour=s.rate_per_gpu_hour,
        expected_failures=s.expected_failures,
        failures=list(s.failures),
        interrupted=list(s.interrupted),
        arrivals=list(s.arrivals),
    )


def _sampled(s: whatif_live.Sampled) -> SampledView:
    return SampledView(
        seed=s.seed,
        samples=s.samples,
        failure_model=s.failure_model,
        history_days=s.history_days,
        base=_side(s.base),
        variant=_side(s.variant),
        arrivals=[TenantArrivalsView(**dataclasses.asdict(a)) for a in s.arrivals],
        interrupted=[int(i) for i in s.interrupted],
    )


def _problem(problem: str) -> dict[str, str]:
    """A fleet edit's problem (``edits[j].field: reason``) as a 422 item."""
    field, sep, reason = problem.partition(": ")
    return {"field": field, "reason": reason} if sep else {"field": "edits", "reason": problem}
