"""The scenario file: a base run and named variations of it, typed and validated like a fleet.

A scenario answers "what if" questions by naming a base (fleet, workload, policy, horizon,
load, failures, seed) and variations, each an ordered list of typed *edits*. An edit changes
the fleet spec (GPUs, quotas, cohorts, links, site power) or the run (failure rate, workload
growth per tenant, policy and backfill). Edits are applied to a copy of the base fleet, in
order, and the result is validated again as a fleet (:mod:`aifactory.whatif.apply`), so a
variation that makes an invalid fleet is refused naming the variation and the field.

A knob applied to the spec but read by nothing in the twin would say so in its edit class's
``MODELLED``, and every output that shows it would say it plainly. Every knob is read
today: site power caps by the scheduler's power rule (``scheduler/power.py``, on in every
scenario run), link bandwidths by data staging and cross-site gangs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from aifactory.fleet.spec import Frozen, Name
from aifactory.scheduler.config import MAX_SCAN, BackfillMode
from aifactory.scheduler.policies import PolicyName

#: The synthetic national workload (``aifactory workload synth``) rather than a trace file.
NATIONAL = "national"

#: Name of the base in outputs: the runs with no edit.
BASE = "base"

Path_ = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]


class Base(Frozen):
    """The run every variation starts from."""

    fleet: Path_ = Field(
        description="Bundled fleet name (`aifactory fleet list`) or a fleet YAML path, "
        "relative to the scenario file."
    )
    workload: Path_ = Field(
        default=NATIONAL,
        description="'national': the synthetic national workload of the fleet "
        "(`aifactory workload synth`); otherwise a trace file, relative to the scenario file.",
    )
    days: float = Field(
        gt=0, le=366, description="Horizon, simulated days: workload length and where runs stop."
    )
    workload_from: Literal["base", "variation"] = Field(
        default="base",
        description="Fleet the national workload is drawn for: 'base' keeps demand fixed "
        "while a variation changes capacity or quotas (growth edits change it explicitly); "
        "'variation' draws it for the edited fleet, so demand follows the new quotas.",
    )
    load: float = Field(
        default=0.85,
        gt=0,
        le=10,
        description="Offered load on every tenant's nominal quota (national workload only).",
    )
    policy: PolicyName = Field(default=PolicyName.FIFO, description="Ordering policy.")
    backfill: BackfillMode = Field(default=BackfillMode.EASY, description="Backfill mode.")
    backfill_interval_s: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description="Seconds between deep backfill scans (0: every cycle); 30 is Slurm's "
        "bf_interval default.",
    )
    preemption: bool = Field(default=True, description="Whether higher priority may preempt.")
    queue_depth: int = Field(
        default=0,
        ge=0,
        le=MAX_SCAN,
        description="Jobs tried in a pass between deep scans and after arrivals (0: no "
        "limit, as a trace replay); Slurm's default_queue_depth is 100, which `aifactory run` "
        "uses. Bounds the cost of a pass when the backlog grows over a long horizon.",
    )
    max_job_test: int = Field(
        default=0,
        ge=0,
        le=MAX_SCAN,
        description="Jobs tried in a deep backfill scan (0: no limit); Slurm's "
        "bf_max_job_test is 500, `aifactory run` uses 100.",
    )
    failures: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        default="llama3",
        description="'off', 'llama3' (Llama 3's rate and causes) or a failure-model YAML path.",
    )
    checkpoint_write_s: float = Field(
        default=60.0, ge=0, le=86400, description="Seconds to write one checkpoint."
    )
    seed: int = Field(
        default=2030, ge=0, le=2**31 - 1, description="Scenario seed; each run's is derived."
    )


class EditKind(StrEnum):
    """The kinds of edit a variation may make (the ``edit`` key of each)."""

    ADD_SITE = "add_site"
    ADD_GPUS = "add_gpus"
    REMOVE_GPUS = "remove_gpus"
    SET_QUOTA = "set_quota"
    SET_COHORT = "set_cohort"
    LINK_BANDWIDTH = "link_bandwidth"
    FAILURE_RATE = "failure_rate"
    POWER_CAP = "power_cap"
    WORKLOAD_GROWTH = "workload_growth"
    POLICY = "policy"


class Edit(Frozen):
    """Base of every edit: whether the twin reads what it changes."""

    #: False where the twin does not model the knob yet: applied to the spec, shown as such.
    MODELLED: ClassVar[bool] = True
    #: Why not, for outputs (empty when modelled).
    NOT_MODELLED_WHY: ClassVar[str] = ""


class NewLink(Frozen):
    """A link from a new site to an existing one."""

    to: Name = Field(description="Existing site at the other end.")
    gbps: float = Field(gt=0, le=1e6, description="Bandwidth, Gbit/s.")
    latency_ms: float = Field(ge=0, le=1000, description="One-way latency, ms.")


class AddSite(Edit):
    """A new data centre, empty until ``add_gpus`` puts GPUs in it."""

    edit: Literal[EditKind.ADD_SITE]
    site: Name = Field(description="Name of the new site.")
    region: str = Field(min_length=1, max_length=200, description="Where the site is.")
    power_mw: float = Field(gt=0, le=1e5, description="Facility power capacity, MW.")
    pue: float = Field(ge=1.0, le=3.0, description="Power usage effectiveness.")
    links: list[NewLink] = Field(
        default_factory=list, max_length=64, description="Links to existing sites."
    )


class AddGpus(Edit):
    """More GPUs of one model for one owner at one site (a new pod, or an existing one)."""

    edit: Literal[EditKind.ADD_GPUS]
    site: Name = Field(description="Site (existing, or added by an earlier add_site).")
    pod: Name = Field(default="whatif", description="Pod to add to; created when absent.")
    model: Name = Field(description="GPU model id from the catalogue (`aifactory fleet gpus`).")
    owner: Name = Field(description="Tenant that owns the new hardware.")
    gpu_class: Name | None = Field(default=None, description="GPU class; default: the model id.")
    gpus: int = Field(
        gt=0, le=1_000_000, description="GPUs to add: a whole number of NVLink domains."
    )
    quota_to: list[Name] | None = Field(
        default=None,
        max_length=256,
        description="Tenants whose nominal quota of the class grows by the new GPUs, split "
        "equally (the first take any remainder); default: the owner; [] adds no quota.",
    )


class RemoveGpus(Edit):
    """Fewer GPUs at a site: whole NVLink domains taken from the matching groups, last first."""

    edit: Literal[EditKind.REMOVE_GPUS]
    site: Name = Field(description="Site to remove from.")
    owner: Name | None = Field(default=None, description="Only this owner's groups.")
    gpu_class: Name | None = Field(default=None, description="Only groups of this class.")
    gpus: int = Field(gt=0, le=1_000_000, description="GPUs to remove: whole NVLink domains.")
    quota_from: Name | None = Field(
        default=None,
        description="Tenant whose nominal quota of the class shrinks by the removed GPUs "
        "(without it, quotas above the new capacity make the variation invalid).",
    )


Unlimited = Literal["unlimited"]
# A limit in GPUs, bounded in the schema itself (the service's what-if takes these edits).
Limit = Annotated[int, Field(ge=0, le=10_000_000)]


class SetQuota(Edit):
    """A tenant's quota of one GPU class: nominal, borrowing and lending limits."""

    edit: Literal[EditKind.SET_QUOTA]
    tenant: Name = Field(description="Tenant holding (or to hold) the quota.")
    gpu_class: Name = Field(description="GPU class of the quota.")
    nominal: int | None = Field(
        default=None, ge=0, le=10_000_000, description="Guaranteed GPUs; null: unchanged."
    )
    borrowing_limit: Limit | Unlimited | None = Field(
        default=None, description="GPUs borrowed above nominal; 'unlimited'; null: unchanged."
    )
    lending_limit: Limit | Unlimited | None = Field(
        default=None, description="GPUs of nominal lent; 'unlimited' (all); null: unchanged."
    )


class SetCohort(Edit):
    """Put a tenant in a cohort (it then lends and borrows there), or take it out (null)."""

    edit: Literal[EditKind.SET_COHORT]
    tenant: Name = Field(description="Tenant to move.")
    cohort: Name | None = Field(description="Cohort to join; null: none of its own.")


class LinkBandwidth(Edit):
    """Scale or set the bandwidth of inter-site links: the twin's data copies share them
    (aifactory.twin.staging) and cross-site gangs all-reduce over them (physics.comm)."""

    edit: Literal[EditKind.LINK_BANDWIDTH]
    between: list[tuple[Name, Name]] | None = Field(
        default=None, max_length=1024, description="Links by their two sites; null: every link."
    )
    factor: float | None = Field(default=None, gt=0, le=1000, description="Multiply by this.")
    gbps: float | None = Field(default=None, gt=0, le=1e6, description="Set to this, Gbit/s.")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.factor is None) == (self.gbps is None):
            msg = "factor: give exactly one of factor and gbps"
            raise ValueError(msg)
        return self


#: The most a failure rate, and a tenant's workload, may be multiplied by (by one edit, and
#: by all of a live what-if's together: its forecasts' failures and arrivals grow with it).
MAX_FAILURE_MULTIPLIER = 100.0
MAX_GROWTH = 20.0


class FailureRate(Edit):
    """Multiply the failure model's interruption rate per GPU-hour."""

    edit: Literal[EditKind.FAILURE_RATE]
    multiplier: float = Field(
        gt=0, le=MAX_FAILURE_MULTIPLIER, description="Multiply the rate by this."
    )


class PowerCap(Edit):
    """A site's facility power capacity."""

    edit: Literal[EditKind.POWER_CAP]
    site: Name = Field(description="Site to cap.")
    power_mw: float = Field(gt=0, le=1e5, description="Facility power capacity, MW.")


class WorkloadGrowth(Edit):
    """Multiply the offered load of a tenant (and its sub-tenants) in the national workload."""

    edit: Literal[EditKind.WORKLOAD_GROWTH]
    tenant: Name = Field(description="Tenant whose workload grows (its children too).")
    factor: float = Field(gt=0, le=MAX_GROWTH, description="Multiply its offered load by this.")


class SetPolicy(Edit):
    """Scheduler settings of the run."""

    #: The run's settings this edit may change, each a field here (null: unchanged).
    SETTINGS: ClassVar[tuple[str, ...]] = (
        "policy",
        "backfill",
        "backfill_interval_s",
        "preemption",
        "queue_depth",
        "max_job_test",
    )

    edit: Literal[EditKind.POLICY]
    policy: PolicyName | None = Field(default=None, description="Ordering policy.")
    backfill: BackfillMode | None = Field(default=None, description="Backfill mode.")
    backfill_interval_s: float | None = Field(
        default=None, ge=0, le=86400, description="Seconds between deep backfill scans."
    )
    preemption: bool | None = Field(default=None, description="Whether preemption is on.")
    queue_depth: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SCAN,
        description="Jobs tried in a pass between deep scans (0: no limit); null: unchanged.",
    )
    max_job_test: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SCAN,
        description="Jobs tried in a deep backfill scan (0: no limit); null: unchanged.",
    )


AnyEdit = Annotated[
    AddSite
    | AddGpus
    | RemoveGpus
    | SetQuota
    | SetCohort
    | LinkBandwidth
    | FailureRate
    | PowerCap
    | WorkloadGrowth
    | SetPolicy,
    Field(discriminator="edit"),
]


class Variation(Frozen):
    """A named what-if: the base with these edits, in order."""

    name: Name = Field(description="Identifier of the variation in every output.")
    question: str = Field(
        default="", max_length=500, description="The question it answers, in words."
    )
    edits: list[AnyEdit] = Field(min_length=1, max_length=256, description="Edits, in order.")

    @property
    def unmodelled(self) -> list[str]:
        """Why each edit kind here that the twin does not read changes nothing (deduplicated)."""
        seen: dict[str, None] = {}
        for e in self.edits:
            if not e.MODELLED:
                seen[e.NOT_MODELLED_WHY] = None
        return list(seen)


class Scenario(Frozen):
    """A scenario file: a base run, its variations, and how runs are seeded."""

    name: Name = Field(description="Identifier of the scenario.")
    description: str = Field(default="", max_length=4000, description="What it studies.")
    base: Base = Field(description="The run every variation starts from.")
    variations: list[Variation] = Field(min_length=1, max_length=200, description="Named what-ifs.")
    paired: bool = Field(
        default=True,
        description="Common random numbers: seed i of every variation uses the same seed as "
        "seed i of the base (same workload draws), so differences are paired and their "
        "confidence intervals tighter. False: each variation's seeds differ too.",
    )
    notes: list[Annotated[str, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=100, description="Assumptions and their reasons."
    )

    @field_validator("variations")
    @classmethod
    def _unique(cls, variations: list[Variation]) -> list[Variation]:
        seen: set[str] = set()
        for i, v in enumerate(variations):
            if v.name == BASE:
                msg = f"[{i}].name: '{BASE}' is the run without edits"
                raise ValueError(msg)
            if v.name in seen:
                msg = f"[{i}].name: duplicate '{v.name}'"
                raise ValueError(msg)
            seen.add(v.name)
        return variations

    def variation(self, name: str) -> Variation | None:
        """The named variation (None for the base)."""
        return next((v for v in self.variations if v.name == name), None)

    @property
    def run_names(self) -> list[str]:
        """The base then every variation, in file order."""
        return [BASE, *(v.name for v in self.variations)]


def scenario_schema() -> dict[str, Any]:
    """The scenario file's JSON Schema, the same in both builds: an enum's description
    is its class docstring, which a compiled module replaces with a placeholder, so enum
    descriptions are left out (the fields that use them say what they are)."""
    schema = Scenario.model_json_schema()
    for definition in schema.get("$defs", {}).values():
        if "enum" in definition:
            definition.pop("description", None)
    return schema
