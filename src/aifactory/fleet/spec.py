"""The fleet specification: what exists, typed and validated, frozen after load.

A fleet is described by *uniform groups* (so many NVLink domains of so many nodes of
so many GPUs of one model) rather than one object per GPU, so a 325,000-GPU national
fleet is a few dozen records. The compiled, array-backed view used by the scheduler
lives in :mod:`aifactory.fleet.topology`.

Quota semantics follow Kueue's ClusterQueue and Cohort: a tenant has, per GPU class,
a *nominal* (guaranteed) quota, may borrow idle capacity from its cohort up to a
*borrowing limit*, and lends at most a *lending limit* of its nominal quota.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="Lower-case identifier: letters, digits, '.', '_' and '-'.",
    ),
]

ASSUMPTION = "assumption"


class Frozen(BaseModel):
    """Base for every spec record: immutable, and unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class GpuModel(Frozen):
    """One GPU model of the catalogue; every figure carries its source in ``sources``."""

    id: Name = Field(description="Catalogue id, e.g. 'gb200'.")
    name: str = Field(description="Human-readable name.")
    hbm_gb: float = Field(gt=0, description="HBM per GPU, GB.")
    bf16_tflops: float = Field(gt=0, description="Dense BF16 TFLOP/s per GPU (no sparsity).")
    busy_watts: float = Field(gt=0, description="Power per GPU when busy, W.")
    idle_watts: float = Field(ge=0, description="Power per GPU when idle, W.")
    nvlink_domain_gpus: int = Field(gt=0, description="GPUs in one NVLink domain.")
    gpus_per_node: int = Field(gt=0, description="GPUs in one node (server or tray).")
    sources: dict[str, str] = Field(description="Source of each figure, keyed by field name.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        missing = [f for f in _GPU_FIGURES if f not in self.sources]
        if missing:
            msg = f"sources: no source for {', '.join(missing)}"
            raise ValueError(msg)
        if self.idle_watts > self.busy_watts:
            msg = "idle_watts: must not exceed busy_watts"
            raise ValueError(msg)
        if self.nvlink_domain_gpus % self.gpus_per_node:
            msg = "nvlink_domain_gpus: must be a multiple of gpus_per_node"
            raise ValueError(msg)
        return self


_GPU_FIGURES = (
    "hbm_gb",
    "bf16_tflops",
    "busy_watts",
    "idle_watts",
    "nvlink_domain_gpus",
    "gpus_per_node",
)


class DomainGroup(Frozen):
    """A uniform group of NVLink domains in one pod, all of one GPU model and one owner."""

    model: Name = Field(description="GPU model id from the catalogue.")
    domains: int = Field(gt=0, description="Number of NVLink domains in this group.")
    nodes_per_domain: int | None = Field(
        default=None,
        gt=0,
        description="Nodes per NVLink domain; default: the model's domain size / node size.",
    )
    gpus_per_node: int | None = Field(
        default=None, gt=0, description="GPUs per node; default: the model's node size."
    )
    owner: Name = Field(description="Tenant that owns (paid for) this hardware.")
    gpu_class: Name | None = Field(
        default=None,
        description="Resource flavor quotas are counted in; default: the model id.",
    )
    source: str = Field(default=ASSUMPTION, description="Where these counts come from.")
    slurm_nodes: list[Name] | None = Field(
        default=None,
        description=(
            "The Slurm node names of this group's nodes, in node order (domain by domain), "
            "one per node; the Slurm executor submits a job to the nodes the scheduler chose "
            "under these names (`--nodelist`). Absent: Slurm picks the nodes."
        ),
    )

    @property
    def flavor(self) -> str:
        """The GPU class (Kueue ResourceFlavor) this group's GPUs count against."""
        return self.gpu_class or self.model


class Pod(Frozen):
    """Racks on one network fabric: the unit a multi-domain job should stay inside."""

    name: Name
    groups: list[DomainGroup] = Field(min_length=1, description="Uniform domain groups.")


class Site(Frozen):
    """A data centre: region, power envelope and PUE."""

    name: Name
    region: str = Field(min_length=1, description="Where the site is.")
    power_mw: float = Field(gt=0, description="Facility power capacity, MW.")
    pue: float = Field(ge=1.0, le=3.0, description="Power usage effectiveness.")
    pods: list[Pod] = Field(min_length=1)
    source: str = Field(default=ASSUMPTION, description="Where the site figures come from.")

    @field_validator("pods")
    @classmethod
    def _unique_pods(cls, pods: list[Pod]) -> list[Pod]:
        _require_unique([p.name for p in pods], "name")
        return pods


class Link(Frozen):
    """A link of the inter-site network (the national 'AI highway')."""

    a: Name = Field(description="One end (site name).")
    b: Name = Field(description="Other end (site name).")
    gbps: float = Field(gt=0, description="Bandwidth, Gbit/s.")
    latency_ms: float = Field(ge=0, description="One-way latency, ms.")
    source: str = Field(default=ASSUMPTION)


class Quota(Frozen):
    """A tenant's quota for one GPU class (Kueue: a flavor's resource quota)."""

    gpu_class: Name
    nominal: int = Field(ge=0, description="Guaranteed GPUs.")
    borrowing_limit: int | None = Field(
        default=None,
        ge=0,
        description="Most GPUs borrowed from the cohort above nominal; null: no limit.",
    )
    lending_limit: int | None = Field(
        default=None,
        ge=0,
        description="Most of the nominal quota lent to the cohort; null: all of it.",
    )
    reclaim_lent: bool = Field(
        default=True,
        description="Whether this tenant evicts borrowers (preempts their jobs) to take back "
        "its lent nominal quota when it needs it; false: it waits for their jobs to end.",
    )
    source: str = Field(default=ASSUMPTION)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.lending_limit is not None and self.lending_limit > self.nominal:
            msg = "lending_limit: must not exceed nominal"
            raise ValueError(msg)
        return self

    @property
    def lendable(self) -> int:
        """GPUs of the nominal quota that others in the cohort may use."""
        return self.nominal if self.lending_limit is None else self.lending_limit


class TenantLimits(Frozen):
    """Limits on what one tenant may ask of the control plane's API; a null field keeps the
    service's default (``aifactory serve --max-pending-per-tenant`` etc.); 0: no limit."""

    max_pending_jobs: int | None = Field(
        default=None, ge=0, description="Pending jobs at once; more submits are refused (429)."
    )
    submit_rate_per_s: float | None = Field(
        default=None, ge=0, description="Sustained submits per second, per service replica."
    )
    submit_burst: int | None = Field(
        default=None, ge=0, description="Submits at once before the rate applies."
    )


class Tenant(Frozen):
    """A node of the tenant tree (organisation -> consortium -> project, any depth).

    Jobs run in leaves. A parent's nominal quota of a class caps its subtree's use (its
    children's nominal quotas may not add up to more); one that declares none of a class
    has its children's sums. Children borrow from their siblings first, then through
    their parent from its cohort (see aifactory/scheduler/quota.py)."""

    name: Name
    display_name: str | None = None
    cohort: Name | None = Field(
        default=None,
        description="Cohort of tenant trees that lend to each other; set on a tree's top "
        "only (its children share their parent's capacity).",
    )
    quotas: list[Quota] = Field(default_factory=list)
    children: list[Tenant] = Field(default_factory=list)
    note: str | None = None
    limits: TenantLimits | None = Field(
        default=None, description="API limits of this tenant (not inherited by children)."
    )

    @field_validator("quotas")
    @classmethod
    def _unique_classes(cls, quotas: list[Quota]) -> list[Quota]:
        _require_unique([q.gpu_class for q in quotas], "gpu_class")
        return quotas


class Fleet(Frozen):
    """A whole fleet: sites, the links between them, and the tenants that use it."""

    name: Name
    description: str = ""
    gpu_models: list[GpuModel] = Field(
        default_factory=list, description="Models added to (or overriding) the catalogue."
    )
    sites: list[Site] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    tenants: list[Tenant] = Field(min_length=1)
    default_tenant: Name | None = Field(
        default=None,
        description="Tenant that receives jobs of unknown tenants when a trace is replayed.",
    )
    notes: list[str] = Field(default_factory=list, description="Assumptions and their reasons.")

    @field_validator("sites")
    @classmethod
    def _unique_sites(cls, sites: list[Site]) -> list[Site]:
        _require_unique([s.name for s in sites], "name")
        return sites

    def iter_tenants(self) -> Iterator[tuple[Tenant, Tenant | None, str | None]]:
        """Yield every tenant with its parent and effective (inherited) cohort, depth first."""
        stack: list[tuple[Tenant, Tenant | None, str | None]] = [
            (t, None, t.cohort) for t in reversed(self.tenants)
        ]
        while stack:
            tenant, parent, cohort = stack.pop()
            yield tenant, parent, cohort
            stack.extend((c, tenant, c.cohort or cohort) for c in reversed(tenant.children))

    def iter_groups(self) -> Iterator[tuple[Site, Pod, DomainGroup]]:
        """Yield every domain group with its site and pod, in declaration order."""
        for site in self.sites:
            for pod in site.pods:
                for group in pod.groups:
                    yield site, pod, group


def _require_unique(names: list[str], field: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            msg = f"[{i}].{field}: duplicate '{name}'"
            raise ValueError(msg)
        seen.add(name)
