"""The twin's allocations file: projects, their grants of GPU-hours, and top-ups (issue #19 §4).

``simulate --allocations FILE`` and ``run`` read one YAML document::

    name: korea-2025-consortia
    notes: ["where each figure comes from"]
    projects:
      - {name: lg-exaone, tenant: sovereign-lg, title: "...", share: 1.0,
         start_h: 0, end_h: 336}
    grants:
      - {id: lg-exaone-1, project: lg-exaone, gpu_hours: 2.0e6,      # gpu_class absent:
         start_h: 0, end_h: 336, overdraft: false}                    # B200-equivalent hours
    topups:
      - {grant: lg-exaone-1, at_h: 168, gpu_hours: 5.0e5}

Times are simulated hours from the start of the trace. Twin jobs carry no project, so each
job of a tenant is given to one of the tenant's projects by the projects' ``share`` (see
:func:`project_of`); a tenant whose shares add up to less than one keeps the rest of its
jobs outside every project (never held, never charged). A grant of zero GPU-hours is a
rejected request (a funding round's refusals): it never covers a job.

The file is tenant input like any other: every field is bounded, unknown fields are
refused, and an error names the field (``grants[2].end_h: must be after start_h``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from aifactory.allocations import Allocation, AllocState, Project
from aifactory.allocations.model import MAX_GPU_HOURS, NO_NUL, SECONDS_PER_HOUR
from aifactory.fleet.errors import SpecError, problems_from

MAX_HOURS = 10.0 * 8760.0  # ten years of simulated time: beyond any twin run
MAX_ITEMS = 100_000  # projects, grants or top-ups in one file
MAX_FILE_BYTES = 64 << 20  # a file of MAX_ITEMS of each kind is well under this
SHARE_SLACK = 1e-9  # shares of a tenant may add up to 1 within rounding

Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Line = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Hours = Annotated[float, Field(ge=0, le=MAX_HOURS, allow_inf_nan=False)]
GpuHours = Annotated[float, Field(ge=0, le=MAX_GPU_HOURS, allow_inf_nan=False)]


class ProjectSpec(BaseModel):
    """A project of a tenant, and the share of the tenant's twin jobs charged to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: Slug = Field(description="Unique project name (letters, digits, . _ -).")
    tenant: Slug = Field(description="The fleet tenant whose jobs this project runs.")
    title: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    pi: Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL)] = Field(
        default="", description="Principal investigator."
    )
    share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Fraction of the tenant's jobs given to this project (by a seeded hash).",
    )
    start_h: Hours = Field(default=0.0, description="Start of the project's period (hours).")
    end_h: Hours = Field(default=MAX_HOURS, description="End of the project's period (hours).")

    @model_validator(mode="after")
    def _period(self) -> Self:
        if not self.end_h > self.start_h:
            msg = "end_h: must be after start_h"
            raise ValueError(msg)
        return self


class GrantSpec(BaseModel):
    """One allocation of a project: GPU-hours of one class, or B200-equivalent hours."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: Slug = Field(description="Unique grant id.")
    project: Slug = Field(description="The project it belongs to.")
    gpu_class: Slug | None = Field(
        default=None, description="GPU class it is granted in; absent: B200-equivalent hours."
    )
    gpu_hours: GpuHours = Field(description="Granted GPU-hours (0: the request was rejected).")
    requested_gpu_hours: GpuHours | None = Field(
        default=None, description="What the applicant asked for (a funding round's request)."
    )
    start_h: Hours = Field(default=0.0, description="Start of its period (hours).")
    end_h: Hours = Field(description="End of its period (hours); nothing draws on it after.")
    overdraft: bool = Field(
        default=False,
        description="Jobs past the balance may still start, at low, preemptible priority.",
    )

    @model_validator(mode="after")
    def _period(self) -> Self:
        if not self.end_h > self.start_h:
            msg = "end_h: must be after start_h"
            raise ValueError(msg)
        return self


class TopupSpec(BaseModel):
    """More GPU-hours on a grant at a simulated time."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    grant: Slug = Field(description="The grant topped up.")
    at_h: Hours = Field(description="When (hours).")
    gpu_hours: float = Field(
        gt=0, le=MAX_GPU_HOURS, allow_inf_nan=False, description="GPU-hours added."
    )


class AllocationsFile(BaseModel):
    """Every project, grant and top-up of one twin run (validated, then frozen)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: Slug = Field(default="allocations", description="Name of this set of grants.")
    notes: tuple[Line, ...] = Field(default=(), max_length=1000, description="Provenance.")
    projects: tuple[ProjectSpec, ...] = Field(max_length=MAX_ITEMS)
    grants: tuple[GrantSpec, ...] = Field(default=(), max_length=MAX_ITEMS)
    topups: tuple[TopupSpec, ...] = Field(default=(), max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems: list[str] = []
        names: set[str] = set()
        shares: dict[str, float] = {}
        for i, p in enumerate(self.projects):
            if p.name in names:
                problems.append(f"projects[{i}].name: '{p.name}' given twice")
            names.add(p.name)
            shares[p.tenant] = shares.get(p.tenant, 0.0) + p.share
        for tenant, total in sorted(shares.items()):
            if total > 1.0 + SHARE_SLACK:
                problems.append(f"projects.share: shares of tenant '{tenant}' add up to {total:g}")
        ids: set[str] = set()
        for i, g in enumerate(self.grants):
            if g.id in ids:
                problems.append(f"grants[{i}].id: '{g.id}' given twice")
            ids.add(g.id)
            if g.project not in names:
                problems.append(f"grants[{i}].project: no project '{g.project}'")
        granted = {g.id: g for g in self.grants}
        for i, t in enumerate(self.topups):
            grant = granted.get(t.grant)
            if grant is None:
                problems.append(f"topups[{i}].grant: no grant '{t.grant}'")
            elif grant.gpu_hours == 0:
                problems.append(f"topups[{i}].grant: '{t.grant}' was rejected (0 GPU-hours)")
            elif not grant.start_h <= t.at_h < grant.end_h:
                problems.append(f"topups[{i}].at_h: outside the period of grant '{t.grant}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def allocations(self) -> list[Allocation]:
        """The grants as :class:`~aifactory.allocations.Allocation` records in the state the
        platform left them (approved; rejected for a zero grant), times in seconds."""
        return [
            Allocation(
                id=g.id,
                project=g.project,
                gpu_class=g.gpu_class,
                gpu_hours=g.gpu_hours,
                start_s=g.start_h * SECONDS_PER_HOUR,
                end_s=g.end_h * SECONDS_PER_HOUR,
                state=AllocState.APPROVED if g.gpu_hours > 0 else AllocState.REJECTED,
                overdraft=g.overdraft,
                estimate_gpu_hours=g.requested_gpu_hours,
            )
            for g in self.grants
        ]

    def project_records(self) -> list[Project]:
        """The projects as :class:`~aifactory.allocations.Project` records (seconds)."""
        return [
            Project(
                name=p.name,
                tenant=p.tenant,
                title=p.title,
                pi=p.pi,
                start_s=p.start_h * SECONDS_PER_HOUR,
                end_s=p.end_h * SECONDS_PER_HOUR,
            )
            for p in self.projects
        ]

    def check_tenants(
        self, tenants: Iterable[str], source: str | None = None, parents: Iterable[str] = ()
    ) -> None:
        """Refuse projects of tenants the fleet does not have, or of tenants with children
        (``parents``): jobs run in leaves, so their jobs would never come."""
        known = set(tenants)
        inner = set(parents)
        problems: list[str] = []
        for i, p in enumerate(self.projects):
            if p.tenant not in known:
                problems.append(f"projects[{i}].tenant: no tenant '{p.tenant}' in the fleet")
            elif p.tenant in inner:
                problems.append(
                    f"projects[{i}].tenant: '{p.tenant}' has children and jobs run in leaves; "
                    "give the project to one of them"
                )
        if problems:
            raise SpecError(problems, source)

    def to_yaml(self) -> str:
        """The file as YAML (what :func:`load_allocations` reads back to an equal value)."""
        data = self.model_dump(mode="json", exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def bundled_allocations() -> dict[str, Path]:
    """Allocations files shipped with the package, by name."""
    folder = Path(__file__).resolve().parent.parent / "fleet" / "data" / "allocations"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_allocations(name_or_path: str | Path) -> AllocationsFile:
    """Read and validate an allocations file (a path, or a bundled name). Raises
    :class:`~aifactory.fleet.errors.SpecError` naming each bad field."""
    path = Path(name_or_path)
    if not path.exists():
        bundled = bundled_allocations().get(str(name_or_path))
        if bundled is None:
            known = ", ".join(bundled_allocations()) or "none"
            raise SpecError(
                [f"no file or bundled allocations of that name (bundled: {known})"],
                str(name_or_path),
            )
        path = bundled
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError([f"file: larger than {MAX_FILE_BYTES >> 20} MiB"], str(path))
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read ({exc})"], str(path)) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML ({exc})"], str(path)) from None
    return parse_allocations(raw, str(path))


def parse_allocations(raw: Any, source: str | None = None) -> AllocationsFile:
    """Validate an already-parsed document (see :func:`load_allocations`)."""
    if not isinstance(raw, Mapping):
        raise SpecError(["document: must be a mapping with 'projects' and 'grants'"], source)
    try:
        return AllocationsFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None


def _unit(seed: int, job_id: str) -> float:
    """A uniform number in [0, 1) from the run's seed and the job's id alone."""
    digest = hashlib.sha256(f"{seed}\x00{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def project_of(
    projects_by_tenant: Mapping[str, Sequence[tuple[str, float]]],
    seed: int,
    tenant: str,
    job_id: str,
) -> str | None:
    """The project a twin job is charged to: the tenant's projects (in file order) split
    [0, 1) by their shares, and the job falls where SHA-256 of ``seed`` and its id puts it
    (:func:`_unit`). Deterministic, independent of the job's place in the trace, and each
    project gets its share of the jobs in expectation; past the last share: no project."""
    projects = projects_by_tenant.get(tenant)
    if not projects:
        return None
    u = _unit(seed, job_id)
    edge = 0.0
    for name, share in projects:
        edge += share
        if u < edge:
            return name
    return None


def shares_by_tenant(spec: AllocationsFile) -> dict[str, list[tuple[str, float]]]:
    """Each tenant's projects with their shares, in file order."""
    out: dict[str, list[tuple[str, float]]] = {}
    for p in spec.projects:
        out.setdefault(p.tenant, []).append((p.name, p.share))
    return out
