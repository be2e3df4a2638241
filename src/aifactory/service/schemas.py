"""The REST API's request and response bodies (the OpenAPI schema is generated from these).

Tenant input is hostile (issue #14): every field a caller sends is bounded here, at the
edge, so that nothing the database or the scheduler cannot hold ever reaches them. The
rules, one per kind of value, each a named type below that every model uses:

- integers are JSON integers (``8`` or ``8.0``, never ``true`` or ``"8"``) and ids lie in
  1..2^63-1, the
  range of the ``BIGINT`` they are compared with (past it SQLite raised OverflowError and
  PostgreSQL an error that read as an outage);
- floats are strict (a number, not a string or a bool), finite and within a stated range;
- strings are strict, bounded in length and never hold NUL (PostgreSQL's text cannot, and
  an executor's ``exec`` would fail on it).

``tests/test_api_bounds.py`` walks the generated OpenAPI schema and fails on any input
without such bounds, so a new field cannot forget them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from aifactory.scheduler.config import MAX_CLASSES, MAX_DATA_BYTES, MAX_HBM_GB, MAX_STEP_S
from aifactory.service.auth import Role

INT64_MAX = 2**63 - 1  # the largest id or cursor: the ids are BIGINT (int64) columns
MIN_TIME_LIMIT_S = 1.0
MAX_TIME_LIMIT_S = 30 * 86_400.0  # the ceiling; ServiceSettings.max_time_limit_s may lower it
MIN_CHECKPOINT_INTERVAL_S = 60.0  # more often is no checkpoint plan, only a load on storage
# A tenant's own preempt grace holds GPUs others wait for: an hour at most at the edge
# (Slurm's GraceTime and Kubernetes' grace periods are seconds to minutes in practice).
MAX_JOB_GRACE_S = 3600.0
MAX_TOKEN_LIFETIME_S = 10 * 365 * 86_400.0
NO_NUL = r"^[^\x00]*$"  # the pattern of every free-text string; schemathesis reads it too
# Idempotency keys are visible ASCII (a UUID, a hash, a client's own id): no spaces, no
# control characters, nothing a proxy could rewrite.
KEY_PATTERN = r"^[!-~]+$"


def bounded_text(max_length: int, *, min_length: int = 0) -> object:
    """A strict, length-bounded string without NUL (for ``Annotated[str, bounded_text(n)]``)."""
    return StringConstraints(
        strict=True, min_length=min_length, max_length=max_length, pattern=NO_NUL
    )


def _json_number(value: object) -> object:
    """Refuse what JSON does not call a number (a bool, a string) before pydantic's own
    integer check, which then takes an integral float (JSON Schema's integers include
    ``8.0``) and refuses ``8.5``."""
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a JSON integer")
    return value


# An integer as JSON Schema has it: a number with no fraction (8 or 8.0), never "8" or true.
JsonInt = Annotated[int, BeforeValidator(_json_number)]
# An id as a JSON integer where it is nested (a list item, an optional field): there the
# OpenAPI model holds bounds as floats, and float(2^63 - 1) is 2^63, past int64; so the
# bound is 2^53 - 1 (the largest integer a float, and the dashboard's JavaScript, holds
# exactly). The bounds come before the validator so the JSON schema shows them.
MAX_NESTED_ID = 2**53 - 1
JsonId = Annotated[int, Ge(1), Le(MAX_NESTED_ID), BeforeValidator(_json_number)]
Name = Annotated[str, bounded_text(128, min_length=1)]
ShortName = Annotated[str, bounded_text(64, min_length=1)]


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

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Name = Field(default="job", description="Display name.")
    gpus: JsonInt = Field(ge=1, le=1_000_000, description="GPUs, all granted at once (a gang).")
    gpu_class: ShortName | None = Field(
        default=None, description="GPU class (flavor); null: any class (or those of gpu_classes)."
    )
    gpu_classes: Annotated[list[ShortName], Field(min_length=2, max_length=MAX_CLASSES)] | None = (
        Field(
            default=None,
            description=f"Acceptable GPU classes, 2 to {MAX_CLASSES} different ones, instead of "
            "one gpu_class: the job runs in one of them, chosen by the scheduler's class order. "
            "null: gpu_class decides.",
        )
    )
    hbm_gb_per_gpu: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=MAX_HBM_GB,
        description="GPU memory (GB) each of the job's GPUs must have: it runs only on classes "
        "whose GPUs have at least this much. null: any.",
    )
    command: Annotated[str, bounded_text(16_384, min_length=1)] = Field(
        description="Shell command the executor runs."
    )
    time_limit_s: float = Field(
        default=3600.0,
        strict=True,
        ge=MIN_TIME_LIMIT_S,
        le=MAX_TIME_LIMIT_S,
        description="Wall-clock limit, s (at most the service's maximum, 30 d by default); "
        "also the scheduler's runtime estimate.",
    )
    priority_class: PriorityClass = Field(default=PriorityClass.NORMAL)
    preemptible: bool = Field(
        default=True, strict=True, description="May be evicted for higher priority."
    )
    checkpoint_interval_s: float | None = Field(
        default=None,
        strict=True,
        ge=MIN_CHECKPOINT_INTERVAL_S,
        le=MAX_TIME_LIMIT_S,
        description="Seconds between checkpoints, at least 60 (work lost on preemption is at "
        "most this); null: the job does not checkpoint.",
    )
    tenant: ShortName | None = Field(
        default=None, description="Tenant to submit as; default the token's."
    )
    project: JsonId | None = Field(
        default=None,
        description="Project (id) whose GPU-hour allocation the job is charged to; needs a "
        "gpu_class, and the token must be a member of the project. null: no project.",
    )
    service: bool = Field(
        default=False,
        strict=True,
        description="A long-running service (inference, AI-RAN): time_limit_s is its "
        "lifetime, it has no checkpoint to save and stops at once when preempted.",
    )
    preempt_grace_s: float | None = Field(
        default=None,
        strict=True,
        ge=0.0,
        le=MAX_JOB_GRACE_S,
        description=f"Seconds the job keeps its GPUs to save when preempted, SIGTERM to "
        f"SIGKILL (0 to {MAX_JOB_GRACE_S:g}; 0: none). null: the service's default.",
    )
    # Data and sites (issue #20 §1; stored together as the row's data_ask, revision 0007).
    site: ShortName | None = Field(
        default=None, description="Run only at this site (null: any site the scheduler picks)."
    )
    allow_cross_site: bool = Field(
        default=False,
        strict=True,
        description="The gang may span sites when that finishes it sooner than waiting for "
        "one (priced by grad_bytes and step_s: scheduler/spanning.py).",
    )
    dataset: Name | None = Field(default=None, description="Name of the data the job reads.")
    dataset_bytes: float | None = Field(
        default=None, strict=True, gt=0.0, le=MAX_DATA_BYTES, description="Its size, bytes."
    )
    data_site: ShortName | None = Field(
        default=None,
        validate_default=True,
        description="The site that holds the data (needed with dataset_bytes).",
    )
    stage_hold: bool = Field(
        default=False,
        strict=True,
        description="Hold the GPUs from placement while the data is copied (the twin models "
        "copies; the service records the ask).",
    )
    grad_bytes: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=MAX_DATA_BYTES,
        description="Gradient bytes all-reduced per training step (what spanning sites costs).",
    )
    step_s: float | None = Field(
        default=None, strict=True, gt=0.0, le=MAX_STEP_S, description="Compute seconds a step."
    )

    @field_validator("data_site")
    @classmethod
    def _data_has_a_site(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A dataset's size without its site cannot be staged: the scheduler refuses it
        (``job_problem``), so the edge says so here."""
        if value is None and info.data.get("dataset_bytes") is not None:
            raise PydanticCustomError("data_site", "a job with dataset_bytes names its data_site")
        return value

    @field_validator("preempt_grace_s")
    @classmethod
    def _no_grace_for_a_service(cls, value: float | None, info: ValidationInfo) -> float | None:
        """A service stops at once when preempted (``scheduler.grace``): a grace asked for
        one would be dropped without a word, so the edge refuses it, naming this field."""
        if value and info.data.get("service") is True:
            raise PydanticCustomError(
                "preempt_grace_s",
                "a service stops at once when preempted: leave preempt_grace_s out (or 0)",
            )
        return value

    @field_validator("gpu_classes")
    @classmethod
    def _one_way_to_name_classes(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        """Different classes, and not with ``gpu_class`` too: the scheduler refuses both
        (see ``scheduler.config.job_problem``), so the edge says so, naming this field."""
        if value is None:
            return None
        if len(set(value)) != len(value):
            raise PydanticCustomError("gpu_classes", "the classes must all be different")
        if info.data.get("gpu_class") is not None:
            raise PydanticCustomError(
                "gpu_classes", "give either one gpu_class or several gpu_classes, not both"
            )
        return value


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
    project: int | None = None
    cancel_requested: bool = False
    gpu_classes: list[str] | None = Field(
        default=None, description="The acceptable classes it listed (null: gpu_class decides)."
    )
    hbm_gb_per_gpu: float | None = Field(
        default=None, description="GPU memory per GPU it asked for, GB (null: any)."
    )
    data_ask: dict[str, object] | None = Field(
        default=None,
        description="Its data and site fields as submitted (site, allow_cross_site, dataset, "
        "dataset_bytes, data_site, stage_hold, grad_bytes, step_s), those given; null: none.",
    )
    nodelist: str = Field(
        default="", description="The placement's nodes, compressed: seoul/hgx/n[108-143]."
    )
    service: bool = Field(default=False, description="A long-running service, not work.")
    preempt_grace_s: float | None = Field(
        default=None, description="Its own preempt grace, s (null: the service's default)."
    )


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
    """A tenant's quota and use for one GPU class on one owner's hardware, in GPUs.

    A class that several owners own is scheduled per owner (``scheduler/owners.py``), so a
    tenant has a row per owner's hardware of it: ``borrowed`` is what it borrows on this
    row's hardware, ``borrowed_total`` what it borrows of the class on every lender's,
    which is what ``borrowing_limit`` caps."""

    tenant: str
    gpu_class: str
    hardware_owner: str | None = Field(
        default=None, description="Whose hardware of the class this row is (None: several's)."
    )
    cohort: str | None = None
    nominal: int
    borrowing_limit: int | None
    lending_limit: int | None
    used: int
    borrowed: int
    borrowed_total: int = Field(
        default=0, description="Borrowed of this class over every lender's hardware."
    )
    lent: int


class TokenCreate(BaseModel):
    """A token asked for through the API (tenant-admins: their own tenant only)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    role: Role = Field(default=Role.MEMBER, description="member, tenant-admin or admin.")
    tenant: ShortName | None = None
    note: Annotated[str, bounded_text(200)] = ""
    expires_in_s: float | None = Field(
        default=None,
        strict=True,
        ge=60.0,
        le=MAX_TOKEN_LIFETIME_S,
        description="Seconds until the token expires (then it is refused); null: never.",
    )


class TokenCreated(BaseModel):
    """A new token: the secret is shown here once and never again."""

    id: int
    tenant: str | None
    role: str
    token: str
    expires_at: float | None = Field(description="When it stops working (epoch s); null: never.")


class TokenInfo(BaseModel):
    """A token's metadata, never its secret."""

    id: int
    tenant: str | None
    role: str
    note: str
    created_at: float
    revoked_at: float | None
    expires_at: float | None


class FleetClass(BaseModel):
    """One GPU class of the fleet: capacity and GPUs given to running jobs."""

    gpu_class: str
    model: str
    gpus: int
    busy: int


class FleetView(BaseModel):
    """The fleet as the API shows it."""

    name: str
    gpus: int
    nodes: int
    classes: list[FleetClass]
    sites: list[str]
    tenants: list[str]


class Health(BaseModel):
    """Liveness and readiness of one replica."""

    status: str
    scheduler: str = Field(description="leader, follower or off.")
    fleet: str


class ErrorBody(BaseModel):
    """Every refusal but a validation error: what went wrong, in words."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid input: where (a body field by its name, e.g. ``gpus``; a parameter as
    ``query.cursor``, ``path.job_id``, ``header.Idempotency-Key``) and why."""

    field: str
    reason: str


class ValidationErrorBody(BaseModel):
    """A 422: every invalid input of the request."""

    detail: list[FieldProblem]
