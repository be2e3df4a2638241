"""From a scenario and a variation name to one concrete run plan: the edited fleet and settings.

Edits are applied in order to a plain copy of the base fleet (its JSON form), and the result
is validated again as a whole fleet (:func:`aifactory.fleet.parse_fleet`): an edit never
reaches into a frozen spec, and a variation that breaks the fleet (a quota above the new
capacity, a GPU model not in the catalogue) is refused with the variation's name and the
field. Problems are ``variations[i] 'name'.edits[j].field: problem``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aifactory.fleet import Fleet, SpecError, load_fleet, parse_fleet
from aifactory.fleet.errors import problems_from
from aifactory.fleet.loader import models_of
from aifactory.scheduler.config import BackfillMode
from aifactory.whatif.model import (
    BASE,
    NATIONAL,
    AddGpus,
    AddSite,
    AnyEdit,
    FailureRate,
    LinkBandwidth,
    PowerCap,
    RemoveGpus,
    Scenario,
    SetCohort,
    SetPolicy,
    SetQuota,
    WorkloadGrowth,
)

_DATA = "aifactory.fleet.data"
_SCENARIOS = "scenarios"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything one run of a variation needs, resolved (paths absolute, fleet validated)."""

    variation: str
    fleet: Fleet
    #: The fleet the national workload is drawn for (the base's, or the edited one).
    workload_fleet: Fleet
    workload: str
    days: float
    load: float
    policy: str
    backfill: BackfillMode
    backfill_interval_s: float
    preemption: bool
    queue_depth: int
    max_job_test: int
    failures: str
    failure_multiplier: float
    checkpoint_write_s: float
    #: Offered-load multiplier per tenant with a quota (tenants absent: 1).
    growth: dict[str, float] = field(default_factory=dict)
    #: Why edits of this variation change nothing in the twin (empty: all modelled).
    unmodelled: tuple[str, ...] = ()


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    files = resources.files(_DATA).joinpath(_SCENARIOS).iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> tuple[Scenario, Path]:
    """A scenario and the folder its relative paths are relative to. Raises SpecError."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(["file not found"], source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError([f"cannot read ({exc})"], source) from None
        where = path.resolve().parent
    else:
        source = str(name_or_path)
        if source not in bundled_scenarios():
            known = ", ".join(bundled_scenarios())
            raise SpecError(
                [f"no bundled scenario or file of that name (bundled: {known})"], source
            )
        text = (
            resources.files(_DATA)
            .joinpath(_SCENARIOS)
            .joinpath(f"{source}.yaml")
            .read_text(encoding="utf-8")
        )
        where = Path.cwd()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(
            [f"{line}not valid YAML ({getattr(exc, 'problem', exc)})"], source
        ) from None
    if not isinstance(raw, dict):
        raise SpecError(
            ["document: must be a mapping with 'name', 'base' and 'variations'"], source
        )
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None
    return scenario, where


def resolve(value: str, where: Path) -> str:
    """A path relative to the scenario file, or a bundled name left as it is."""
    path = Path(value)
    if path.is_absolute() or path.suffix in {".yaml", ".yml", ".parquet", ".csv", ".json"}:
        return str(path if path.is_absolute() else (where / path))
    return value


def plan_run(scenario: Scenario, variation: str, where: Path) -> RunPlan:
    """The run plan of ``variation`` (or of the base, ``'base'``). Raises SpecError."""
    b = scenario.base
    fleet = load_fleet(resolve(b.fleet, where))
    workload = b.workload if b.workload == NATIONAL else resolve(b.workload, where)
    failures = b.failures if b.failures in {"off", "llama3"} else resolve(b.failures, where)
    settings: dict[str, Any] = {
        "policy": b.policy.value,
        "backfill": b.backfill,
        "backfill_interval_s": b.backfill_interval_s,
        "preemption": b.preemption,
        "queue_depth": b.queue_depth,
        "max_job_test": b.max_job_test,
    }
    if variation == BASE:
        return RunPlan(
            variation=BASE,
            fleet=fleet,
            workload_fleet=fleet,
            workload=workload,
            days=b.days,
            load=b.load,
            failures=failures,
            failure_multiplier=1.0,
            checkpoint_write_s=b.checkpoint_write_s,
            **settings,
        )
    index = next((i for i, v in enumerate(scenario.variations) if v.name == variation), None)
    if index is None:
        raise SpecError([f"variation: no variation named '{variation}'"])
    var = scenario.variations[index]
    head = f"variations[{index}] '{var.name}'"
    doc = fleet.model_dump(mode="json")
    growth: dict[str, float] = {}
    multiplier = 1.0
    problems: list[str] = []
    for j, edit in enumerate(var.edits):
        at = f"{head}.edits[{j}]"
        try:
            if isinstance(edit, FailureRate):
                if failures == "off":
                    raise _EditError("multiplier", "the base runs with failures off")
                multiplier *= edit.multiplier
            elif isinstance(edit, WorkloadGrowth):
                if workload != NATIONAL:
                    raise _EditError("tenant", "workload growth needs the national workload")
                for t in _descendants(doc, edit.tenant):
                    growth[t] = growth.get(t, 1.0) * edit.factor
            elif isinstance(edit, SetPolicy):
                for k in SetPolicy.SETTINGS:
                    value = getattr(edit, k)
                    if value is not None:
                        settings[k] = value.value if k == "policy" else value
            else:
                _edit_fleet(doc, edit, fleet)
        except _EditError as exc:
            problems.append(f"{at}.{exc.field}: {exc.problem}")
    if problems:
        raise SpecError(problems)
    try:
        edited = parse_fleet(doc)
    except SpecError as exc:
        raise SpecError([f"{head}: fleet after edits: {p}" for p in exc.problems]) from None
    return RunPlan(
        variation=var.name,
        fleet=edited,
        workload_fleet=fleet if b.workload_from == "base" else edited,
        workload=workload,
        days=b.days,
        load=b.load,
        failures=failures,
        failure_multiplier=multiplier,
        checkpoint_write_s=b.checkpoint_write_s,
        growth=growth,
        unmodelled=tuple(var.unmodelled),
        **settings,
    )


def check_scenario(scenario: Scenario, where: Path) -> list[RunPlan]:
    """Plan every run (base first); raises SpecError with every variation's problems."""
    plans: list[RunPlan] = []
    problems: list[str] = []
    for name in scenario.run_names:
        try:
            plans.append(plan_run(scenario, name, where))
        except SpecError as exc:
            where_ = f"{exc.source}: " if exc.source else ""
            problems.extend(f"{where_}{p}" for p in exc.problems)
            if name == BASE:
                break
    if problems:
        raise SpecError(problems)
    return plans


def edit_fleet(
    fleet: Fleet, edits: Sequence[AnyEdit], where: str = "edits", *, skip_run: bool = False
) -> tuple[Fleet, tuple[int | None, ...]]:
    """``fleet`` with the fleet edits applied in order and validated again as a fleet, and
    where each of its groups went: for every group of ``fleet`` (sites, pods and groups in
    file order) its index among the edited fleet's groups, None where it was removed.

    A group keeps its place in its pod (``add_gpus`` appends, ``remove_gpus`` takes a
    group's last domains first), so the first domains of a kept group are its old ones:
    that lets a caller map nodes of the old fleet onto the new one (the service's live
    what-if restores running jobs that way). Run edits (failure rate, workload growth,
    policy) are refused: they change no fleet; with ``skip_run`` they are passed over
    (a caller that reads them itself, keeping each edit's index ``j`` in the problems).
    Raises SpecError with ``<where>[j].field: problem``.
    """
    doc = fleet.model_dump(mode="json")
    # The group dicts before any edit, held so their ids stay unique while compared below.
    before = _groups(doc)
    problems: list[str] = []
    for j, edit in enumerate(edits):
        try:
            if isinstance(edit, FailureRate | WorkloadGrowth | SetPolicy):
                if skip_run:
                    continue
                raise _EditError("edit", f"'{edit.edit}' changes the run, not the fleet")
            _edit_fleet(doc, edit, fleet)
        except _EditError as exc:
            problems.append(f"{where}[{j}].{exc.field}: {exc.problem}")
    if problems:
        raise SpecError(problems)
    after = {id(g): i for i, g in enumerate(_groups(doc))}
    kept = tuple(after.get(id(g)) for g in before)
    try:
        edited = parse_fleet(doc)
    except SpecError as exc:
        raise SpecError([f"{where}: fleet after edits: {p}" for p in exc.problems]) from None
    return edited, kept


def _groups(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for site in doc["sites"] for pod in site["pods"] for g in pod["groups"]]


class _EditError(Exception):
    def __init__(self, field_: str, problem: str) -> None:
        super().__init__(f"{field_}: {problem}")
        self.field = field_
        self.problem = problem


def _edit_fleet(doc: dict[str, Any], edit: AnyEdit, fleet: Fleet) -> None:
    if isinstance(edit, AddSite):
        _add_site(doc, edit)
    elif isinstance(edit, AddGpus):
        _add_gpus(doc, edit, fleet)
    elif isinstance(edit, RemoveGpus):
        _remove_gpus(doc, edit, fleet)
    elif isinstance(edit, SetQuota):
        quota = _quota(_tenant(doc, edit.tenant, "tenant"), edit.gpu_class, create=True)
        if edit.nominal is not None:
            quota["nominal"] = edit.nominal
        for k in ("borrowing_limit", "lending_limit"):
            value = getattr(edit, k)
            if value is not None:
                quota[k] = None if value == "unlimited" else value
    elif isinstance(edit, SetCohort):
        _tenant(doc, edit.tenant, "tenant")["cohort"] = edit.cohort
    elif isinstance(edit, LinkBandwidth):
        _links(doc, edit)
    elif isinstance(edit, PowerCap):
        _site(doc, edit.site)["power_mw"] = edit.power_mw
    else:  # pragma: no cover - every edit kind is handled above or in plan_run
        msg = f"unhandled edit {edit!r}"
        raise AssertionError(msg)


def _site(doc: dict[str, Any], name: str) -> dict[str, Any]:
    sites: list[dict[str, Any]] = doc["sites"]
    for site in sites:
        if site["name"] == name:
            return site  # the document's own dict: edits change it in place
    known = ", ".join(s["name"] for s in doc["sites"])
    raise _EditError("site", f"unknown site '{name}' (known: {known})")


def _add_site(doc: dict[str, Any], edit: AddSite) -> None:
    if any(s["name"] == edit.site for s in doc["sites"]):
        raise _EditError("site", f"site '{edit.site}' exists already")
    names = {s["name"] for s in doc["sites"]}
    for k, link in enumerate(edit.links):
        if link.to not in names:
            raise _EditError(f"links[{k}].to", f"unknown site '{link.to}'")
    # A site needs a pod with a group to be a valid fleet: add_gpus fills it; the empty
    # list is refused by the fleet check if no add_gpus follows.
    doc["sites"].append(
        {
            "name": edit.site,
            "region": edit.region,
            "power_mw": edit.power_mw,
            "pue": edit.pue,
            "pods": [],
            "source": "scenario",
        }
    )
    doc["links"].extend(
        {"a": edit.site, "b": link.to, "gbps": link.gbps, "latency_ms": link.latency_ms}
        for link in edit.links
    )


def _domain_gpus(fleet: Fleet, model_id: str) -> int:
    model = models_of(fleet).get(model_id)
    if model is None:
        raise _EditError("model", f"unknown GPU model '{model_id}'")
    return model.nvlink_domain_gpus


def _add_gpus(doc: dict[str, Any], edit: AddGpus, fleet: Fleet) -> None:
    site = _site(doc, edit.site)
    per_domain = _domain_gpus(fleet, edit.model)
    if edit.gpus % per_domain:
        raise _EditError(
            "gpus", f"{edit.gpus} is not a whole number of {edit.model} domains ({per_domain})"
        )
    _tenant(doc, edit.owner, "owner")
    pod = next((p for p in site["pods"] if p["name"] == edit.pod), None)
    if pod is None:
        pod = {"name": edit.pod, "groups": []}
        site["pods"].append(pod)
    pod["groups"].append(
        {
            "model": edit.model,
            "domains": edit.gpus // per_domain,
            "owner": edit.owner,
            "gpu_class": edit.gpu_class,
            "source": "scenario",
        }
    )
    takers = [edit.owner] if edit.quota_to is None else edit.quota_to
    cls = edit.gpu_class or edit.model
    share, extra = divmod(edit.gpus, len(takers)) if takers else (0, 0)
    for k, name in enumerate(takers):
        quota = _quota(_tenant(doc, name, f"quota_to[{k}]"), cls, create=True)
        quota["nominal"] += share + (1 if k < extra else 0)


def _remove_gpus(doc: dict[str, Any], edit: RemoveGpus, fleet: Fleet) -> None:
    site = _site(doc, edit.site)
    models = models_of(fleet)
    left = edit.gpus
    classes: set[str] = set()
    for pod in reversed(site["pods"]):
        for group in reversed(pod["groups"]):
            cls = group["gpu_class"] or group["model"]
            if edit.owner not in (None, group["owner"]) or edit.gpu_class not in (None, cls):
                continue
            model = models[group["model"]]
            gpn = group["gpus_per_node"] or model.gpus_per_node
            per_domain = (
                group["nodes_per_domain"] or max(1, model.nvlink_domain_gpus // gpn)
            ) * gpn
            take = min(group["domains"], left // per_domain)
            group["domains"] -= take
            left -= take * per_domain
            if take:
                classes.add(cls)
        pod["groups"] = [g for g in pod["groups"] if g["domains"] > 0]
    site["pods"] = [p for p in site["pods"] if p["groups"]]
    if left:
        raise _EditError(
            "gpus",
            f"{edit.gpus} GPUs are not whole domains of the matching groups "
            f"({edit.gpus - left} could be removed)",
        )
    if edit.quota_from is not None:
        if len(classes) != 1:
            raise _EditError("quota_from", "the removed GPUs span several classes; set gpu_class")
        quota = _quota(_tenant(doc, edit.quota_from, "quota_from"), classes.pop(), create=False)
        if quota["nominal"] < edit.gpus:
            raise _EditError("quota_from", f"nominal {quota['nominal']} < {edit.gpus} removed")
        quota["nominal"] -= edit.gpus


def _links(doc: dict[str, Any], edit: LinkBandwidth) -> None:
    chosen = doc["links"]
    if edit.between is not None:
        chosen = []
        for k, (a, b) in enumerate(edit.between):
            link = next((x for x in doc["links"] if {x["a"], x["b"]} == {a, b}), None)
            if link is None:
                raise _EditError(f"between[{k}]", f"no link between '{a}' and '{b}'")
            chosen.append(link)
    for link in chosen:
        gbps = edit.gbps if edit.gbps is not None else link["gbps"] * (edit.factor or 1.0)
        if not math.isfinite(gbps):
            raise _EditError("factor", "bandwidth is not finite")
        link["gbps"] = gbps


def _walk(tenants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in tenants:
        out.append(t)
        out.extend(_walk(t["children"]))
    return out


def _tenant(doc: dict[str, Any], name: str, field_: str) -> dict[str, Any]:
    for t in _walk(doc["tenants"]):
        if t["name"] == name:
            return t
    raise _EditError(field_, f"unknown tenant '{name}'")


def _descendants(doc: dict[str, Any], name: str) -> list[str]:
    return [t["name"] for t in _walk([_tenant(doc, name, "tenant")])]


def growth_of(
    fleet: Fleet, edits: Sequence[AnyEdit], where: str = "edits", *, limit: float | None = None
) -> dict[str, float]:
    """The offered-load multiplier per tenant that the ``workload_growth`` edits among
    ``edits`` give (a tenant's edit applies to its sub-tenants too, and edits multiply;
    tenants absent: 1), as a scenario's variation applies them. Raises SpecError with
    ``<where>[j].tenant: problem`` for a tenant the fleet lacks, and ``<where>[j].factor``
    where a tenant's product passes ``limit``."""
    doc = fleet.model_dump(mode="json")
    growth: dict[str, float] = {}
    problems: list[str] = []
    for j, edit in enumerate(edits):
        if not isinstance(edit, WorkloadGrowth):
            continue
        try:
            for t in _descendants(doc, edit.tenant):
                growth[t] = growth.get(t, 1.0) * edit.factor
                if limit is not None and growth[t] > limit:
                    raise _EditError(
                        "factor", f"tenant '{t}' grown {growth[t]:g}x in all, more than {limit:g}"
                    )
        except _EditError as exc:
            problems.append(f"{where}[{j}].{exc.field}: {exc.problem}")
    if problems:
        raise SpecError(problems)
    return growth


def _quota(tenant: dict[str, Any], gpu_class: str, *, create: bool) -> dict[str, Any]:
    quotas: list[dict[str, Any]] = tenant["quotas"]
    for q in quotas:
        if q["gpu_class"] == gpu_class:
            return q
    if not create:
        raise _EditError("gpu_class", f"tenant '{tenant['name']}' has no quota of '{gpu_class}'")
    quota: dict[str, Any] = {
        "gpu_class": gpu_class,
        "nominal": 0,
        "borrowing_limit": None,
        "lending_limit": None,
        "source": "scenario",
    }
    tenant["quotas"].append(quota)
    return quota
