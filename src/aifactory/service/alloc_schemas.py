"""Request and response bodies of ``/v1/projects`` and ``/v1/allocations`` (issue #19).

Bounded at the edge like every body of the API (see :mod:`.schemas`): times are epoch
seconds within 0..1e11, GPU-hours within 0..1e10, names are short visible ASCII.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from aifactory.allocations.model import MAX_GPU_HOURS
from aifactory.service.schemas import KEY_PATTERN, JsonId, ShortName, bounded_text

MAX_EPOCH_S = 1e11  # year 5138: any real date, and no float the database cannot hold
MAX_MEMBERS = 1000
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        msg = "letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise ValueError(msg)
    return value


Slug = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=KEY_PATTERN),
    AfterValidator(_slug),
]
Epoch = Annotated[float, Field(strict=True, ge=0, le=MAX_EPOCH_S)]
Id = JsonId
Note = Annotated[str, bounded_text(500)]


class ProjectCreate(BaseModel):
    """A new project (tenant-admins: of their tenant; admins: of any, naming it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Slug = Field(description="Unique short name.")
    tenant: ShortName | None = Field(default=None, description="Default: the token's tenant.")
    title: Annotated[str, bounded_text(200)] = ""
    pi: Annotated[str, bounded_text(128)] = Field(default="", description="Principal investigator.")
    start_s: Epoch = Field(description="Start of the project's period (epoch s).")
    end_s: Epoch = Field(description="End of the project's period (epoch s).")
    members: list[Id] = Field(
        default_factory=list, max_length=MAX_MEMBERS, description="Member token ids."
    )


class MembersChange(BaseModel):
    """Tokens to add to and remove from a project's members."""

    model_config = ConfigDict(extra="forbid")

    add: list[Id] = Field(default_factory=list, max_length=MAX_MEMBERS)
    remove: list[Id] = Field(default_factory=list, max_length=MAX_MEMBERS)


class ProjectView(BaseModel):
    """A project."""

    id: int
    name: str
    tenant: str
    title: str
    pi: str
    start_s: float
    end_s: float
    created_at: float
    members: list[int]


class AllocationRequest(BaseModel):
    """A request for GPU-hours (members of the project; tenant-admins; admins)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    project: Id = Field(description="Project id.")
    gpu_class: ShortName | None = Field(
        default=None, description="GPU class; null: B200-equivalent hours, for any class."
    )
    gpu_hours: float = Field(strict=True, gt=0, le=MAX_GPU_HOURS, description="GPU-hours asked.")
    start_s: Epoch | None = Field(default=None, description="Default: the project's start.")
    end_s: Epoch | None = Field(default=None, description="Default: the project's end.")
    justification: Annotated[str, bounded_text(2000)] = ""
    estimate_gpu_hours: float | None = Field(
        default=None, strict=True, ge=0, le=MAX_GPU_HOURS, description="The planner's estimate."
    )
    overdraft: bool = Field(
        default=False,
        strict=True,
        description="Asked: jobs may start past the balance, at low preemptible priority.",
    )


class Decision(BaseModel):
    """An endorsement, approval or rejection, with an optional note."""

    model_config = ConfigDict(extra="forbid")

    note: Note = ""


class TopUp(BaseModel):
    """More GPU-hours on a granted allocation (admins)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gpu_hours: float = Field(strict=True, gt=0, le=MAX_GPU_HOURS)
    note: Note = ""


class Extension(BaseModel):
    """A later end for a granted allocation (admins)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    end_s: Epoch
    note: Note = ""


class ChangeView(BaseModel):
    """One entry of an allocation's history."""

    at: float
    who: str
    kind: str
    from_state: str
    to_state: str
    detail: str
    delta_gpu_hours: float
    end_s: float | None


class AllocationView(BaseModel):
    """An allocation with its balance now (units: GPU-hours of its class, or B200-eq.)."""

    id: int
    project: int
    tenant: str
    gpu_class: str | None
    unit: str
    state: str
    requested_gpu_hours: float
    gpu_hours: float
    used_gpu_hours: float
    overrun_gpu_hours: float
    balance_gpu_hours: float
    overdraft: bool
    start_s: float
    end_s: float
    justification: str
    estimate_gpu_hours: float | None
    history: list[ChangeView]


class ProjectDetail(ProjectView):
    """A project with its allocations, burn rate and forecast of exhaustion."""

    allocations: list[AllocationView]
    burn_gpu_hours_per_day: float = Field(description="Mean over the last 7 days.")
    exhausted_at: float | None = Field(
        description="When the active balance runs out at that rate (epoch s); null: never."
    )
    balance_gpu_hours: float = Field(description="What is left of the active allocations.")
    period_end_s: float | None = Field(
        description="Latest end of the active allocations (epoch s); null: none is active."
    )
    outlook: Literal["runs out", "not before period end", "no usage", "no active balance"] = Field(
        description="'runs out': exhausted_at falls before period_end_s."
    )


class ChargeView(BaseModel):
    """One run interval charged to a project (GPUs times its recorded length)."""

    job_id: int
    name: str
    attempt: int
    gpu_class: str
    gpus: int
    start_s: float
    end_s: float
    gpu_hours: float


class JobUse(BaseModel):
    """GPU-hours of one job in a statement's month."""

    job_id: int
    name: str
    gpu_class: str
    intervals: int
    gpu_hours: float


class DayUse(BaseModel):
    """GPU-hours of one class on one UTC day."""

    day: str
    gpu_class: str
    gpu_hours: float


class Waited(BaseModel):
    """A job that waited on its project's allocation."""

    job_id: int
    name: str
    since: float
    reason: str


class Statement(BaseModel):
    """A project's usage statement for one month (UTC)."""

    project: int
    name: str
    tenant: str
    month: str
    from_s: float
    to_s: float
    gpu_hours: float
    by_job: list[JobUse]
    by_class: dict[str, float]
    by_day: list[DayUse]
    allocations: list[AllocationView]
    waited: list[Waited]


class ReportRow(BaseModel):
    """One allocation in the platform report."""

    tenant: str
    project: str
    allocation: int
    gpu_class: str | None
    state: str
    granted_gpu_hours: float
    used_gpu_hours: float
    used_fraction: float
    idle: bool = Field(description="Granted and started, and nothing drawn on it yet.")
