"""The REST API's request and response bodies (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_TIME_LIMIT_S = 30 * 86_400.0


class PriorityClass(StrEnum):
    """Named priorities, as in Kubernetes PriorityClass; the scheduler sees the integers."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


PRIORITY_VALUE: dict[PriorityClass, int] = {
    PriorityClass.LOW: -100,
    PriorityClass.NORMAL: 0,
    PriorityClass.HIGH: 100,
}


class JobSubmit(BaseModel):
    """A job as a tenant asks for it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="job", min_length=1, max_length=128, description="Display name.")
    gpus: int = Field(gt=0, le=1_000_000, description="GPUs, all granted at once (a gang).")
    gpu_class: str | None = Field(
        default=None, max_length=64, description="GPU class (flavor); null: any class."
    )
    command: str = Field(
        min_length=1, max_length=16_384, description="Shell command the executor runs."
    )
    time_limit_s: float = Field(
        default=3600.0,
        gt=0,
        le=MAX_TIME_LIMIT_S,
        description="Wall-clock limit, s; also the scheduler's runtime estimate.",
    )
    priority_class: PriorityClass = Field(default=PriorityClass.NORMAL)
    preemptible: bool = Field(default=True, description="May be evicted for higher priority.")
    checkpoint_interval_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIME_LIMIT_S,
        description="Seconds between checkpoints (work lost on preemption is at most this).",
    )
    tenant: str | None = Field(
        default=None, max_length=64, description="Tenant to submit as; default the token's."
    )


class PlacementPart(BaseModel):
    """GPUs of one node given to a job."""

    node: str
    gpus: list[int]


class JobEvent(BaseModel):
    """One state change of a job."""

    at: float
    state: str
    detail: str


class JobView(BaseModel):
    """A job as the API shows it."""

    id: int
    tenant: str
    name: str
    gpus: int
    gpu_class: str | None
    command: str
    time_limit_s: float
    priority_class: str
    preemptible: bool
    checkpoint_interval_s: float | None
    state: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str | None
    placement: list[PlacementPart]
    attempts: int
    cancel_requested: bool = False


class JobDetail(JobView):
    """A job with its history and the tail of its log."""

    history: list[JobEvent]
    log_tail: str | None


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[JobView]
    next_cursor: int | None


class Forecast(BaseModel):
    """Estimated start and end of a job, from a twin forked off the live state."""

    job_id: int
    state: str
    now: float
    estimated_start: float | None
    estimated_end: float | None
    note: str = ""


class QuotaRow(BaseModel):
    """A tenant's quota and use for one GPU class, in GPUs."""

    tenant: str
    gpu_class: str
    cohort: str | None = None
    nominal: int
    borrowing_limit: int | None
    lending_limit: int | None
    used: int
    borrowed: int
    lent: int


class TokenCreate(BaseModel):
    """A token asked for through the API (tenant-admins: their own tenant only)."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(default="member", description="member, tenant-admin or admin.")
    tenant: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=200)


class TokenCreated(BaseModel):
    """A new token: the secret is shown here once and never again."""

    id: int
    tenant: str | None
    role: str
    token: str
