"""Loading fleets: bundled ones by name, users' own from YAML, with whole-document checks.

Field-level checks live on the pydantic types; checks that need the whole document
(a group's model is in the catalogue, an owner is a tenant, a quota does not exceed the
class's capacity) live here, and report the same ``path: problem`` form.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from aifactory.fleet.errors import SpecError, problems_from
from aifactory.fleet.spec import Fleet, GpuModel, Tenant

_DATA = "aifactory.fleet.data"


def bundled_yaml(text: str) -> Any:
    """A YAML document shipped with the package, parsed with libyaml where PyYAML has it.

    The pure-Python SafeLoader took 25-30 ms of every ``simulate`` for the GPU catalogue
    and the fleet; the C loader reads the same documents to the same data (tests check
    every bundled fleet). Users' own files keep the SafeLoader and its error messages.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader, C or Python)


def bundled_fleets() -> list[str]:
    """Names of the fleets shipped with the package."""
    names = [
        p.name.removesuffix(".yaml")
        for p in resources.files(_DATA).iterdir()
        if p.name.endswith(".yaml") and p.name != "gpus.yaml"
    ]
    return sorted(names)


@cache
def catalogue() -> dict[str, GpuModel]:
    """The bundled GPU catalogue keyed by model id."""
    text = resources.files(_DATA).joinpath("gpus.yaml").read_text(encoding="utf-8")
    models = TypeAdapter(list[GpuModel]).validate_python(bundled_yaml(text))
    return {m.id: m for m in models}


def models_of(fleet: Fleet) -> dict[str, GpuModel]:
    """The catalogue as seen by ``fleet``: bundled models, overridden by the fleet's own."""
    out = dict(catalogue())
    out.update({m.id: m for m in fleet.gpu_models})
    return out


def load_fleet(name_or_path: str | Path) -> Fleet:
    """Load a bundled fleet by name, or a YAML file by path. Raises :class:`SpecError`."""
    text, source, bundled = _read(name_or_path)
    try:
        raw = bundled_yaml(text) if bundled else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(
            [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"], source
        ) from None
    return parse_fleet(raw, source)


def parse_fleet(raw: Any, source: str | None = None) -> Fleet:
    """Validate a parsed document as a fleet, including the cross-references."""
    if not isinstance(raw, dict):
        raise SpecError(["document: must be a mapping with 'name', 'sites' and 'tenants'"], source)
    try:
        fleet = Fleet.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source) from None
    problems = check_fleet(fleet)
    if problems:
        raise SpecError(problems, source)
    return fleet


def _read(name_or_path: str | Path) -> tuple[str, str, bool]:
    """The document's text, its name for messages, and whether it is a bundled fleet."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path), False
        except FileNotFoundError:
            raise SpecError(["file not found"], str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError([f"cannot read ({exc})"], str(path)) from None
    name = str(name_or_path)
    if name not in bundled_fleets():
        known = ", ".join(bundled_fleets())
        raise SpecError([f"no bundled fleet or file of that name (bundled: {known})"], name)
    text = resources.files(_DATA).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return text, name, True


def check_fleet(fleet: Fleet) -> list[str]:
    """Whole-document checks; returns problems as ``path: problem`` (empty when valid)."""
    problems: list[str] = []
    models = models_of(fleet)
    tenants = {t.name: t for t, _, _ in fleet.iter_tenants()}
    seen_tenants: set[str] = set()
    for path, t in _tenant_paths(fleet):
        if t.name in seen_tenants:
            problems.append(f"{path}.name: duplicate tenant '{t.name}'")
        seen_tenants.add(t.name)

    capacity: dict[str, int] = defaultdict(int)
    class_model: dict[str, str] = {}
    # Classes with a group of unknown model have an unknown capacity: their quotas are not
    # checked, so one typo in a model id gives one message, not one per quota.
    unsized: set[str] = set()
    slurm_names: set[str] = set()
    for si, site in enumerate(fleet.sites):
        for pi, pod in enumerate(site.pods):
            for gi, group in enumerate(pod.groups):
                path = f"sites[{si}].pods[{pi}].groups[{gi}]"
                model = models.get(group.model)
                if model is None:
                    problems.append(f"{path}.model: unknown GPU model '{group.model}'")
                    unsized.add(group.flavor)
                    continue
                if group.owner not in tenants:
                    problems.append(f"{path}.owner: unknown tenant '{group.owner}'")
                flavor = group.flavor
                if class_model.setdefault(flavor, group.model) != group.model:
                    problems.append(
                        f"{path}.gpu_class: class '{flavor}' already holds model "
                        f"'{class_model[flavor]}', not '{group.model}'"
                    )
                capacity[flavor] += group_gpus(group, model)
                problems.extend(_check_slurm_nodes(path, group, model, slurm_names))

    site_names = {s.name for s in fleet.sites}
    seen_links: set[frozenset[str]] = set()
    for li, link in enumerate(fleet.links):
        pair = frozenset((link.a, link.b))
        if pair in seen_links:
            problems.append(f"links[{li}]: duplicate link between '{link.a}' and '{link.b}'")
        seen_links.add(pair)
        problems.extend(
            f"links[{li}].{end}: unknown site '{name}'"
            for end, name in (("a", link.a), ("b", link.b))
            if name not in site_names
        )
        if link.a == link.b:
            problems.append(f"links[{li}].b: a link must join two different sites")

    nominal_sum: dict[str, int] = defaultdict(int)
    for path, tenant in _tenant_paths(fleet):
        for qi, quota in enumerate(tenant.quotas):
            qpath = f"{path}.quotas[{qi}]"
            if quota.gpu_class in unsized:
                continue
            cap = capacity.get(quota.gpu_class)
            if cap is None:
                problems.append(f"{qpath}.gpu_class: no GPUs of class '{quota.gpu_class}'")
                continue
            if quota.nominal > cap:
                problems.append(
                    f"{qpath}.nominal: {quota.nominal} exceeds the capacity of "
                    f"class '{quota.gpu_class}' ({cap})"
                )
    for top in fleet.tenants:  # each tree once: a parent's quota holds its children's
        for cls, nominal in _effective_nominal(top).items():
            if cls in capacity and cls not in unsized:  # (else a quota's own problem)
                nominal_sum[cls] += nominal
    problems.extend(_check_tree(fleet))
    for cls, total in sorted(nominal_sum.items()):
        if total > capacity.get(cls, 0):
            problems.append(
                f"tenants: nominal quotas of class '{cls}' add up to {total}, "
                f"more than its capacity ({capacity[cls]})"
            )
    if fleet.default_tenant is not None and fleet.default_tenant not in tenants:
        problems.append(f"default_tenant: unknown tenant '{fleet.default_tenant}'")
    return problems


def group_gpus(group: Any, model: GpuModel) -> int:
    """GPUs in a domain group, with the model's defaults for unspecified sizes."""
    gpn = group.gpus_per_node or model.gpus_per_node
    npd = group.nodes_per_domain or max(1, model.nvlink_domain_gpus // gpn)
    return int(group.domains * npd * gpn)


def _check_slurm_nodes(path: str, group: Any, model: GpuModel, seen: set[str]) -> list[str]:
    """A group's ``slurm_nodes``: one name per node, no Slurm node named twice in the fleet
    (two fleet nodes on one Slurm node would be given the same GPUs twice)."""
    if group.slurm_nodes is None:
        return []
    problems = []
    gpn = group.gpus_per_node or model.gpus_per_node
    nodes = group.domains * (group.nodes_per_domain or max(1, model.nvlink_domain_gpus // gpn))
    if len(group.slurm_nodes) != nodes:
        problems.append(
            f"{path}.slurm_nodes: {len(group.slurm_nodes)} names for the group's {nodes} nodes"
        )
    for name in group.slurm_nodes:
        if name in seen:
            problems.append(f"{path}.slurm_nodes: Slurm node '{name}' is named twice")
        seen.add(name)
    return problems


def _effective_nominal(tenant: Tenant) -> dict[str, int]:
    """Nominal GPUs per class of a tenant: declared, or for a parent that declares none
    of a class, its children's sum (the scheduler's QuotaBook reads them the same way)."""
    out = {q.gpu_class: q.nominal for q in tenant.quotas}
    for child in tenant.children:
        for cls, nominal in _effective_nominal(child).items():
            if not any(q.gpu_class == cls for q in tenant.quotas):
                out[cls] = out.get(cls, 0) + nominal
    return out


def _check_tree(fleet: Fleet) -> list[str]:
    """Nested quotas: a parent's nominal quota of a class holds its children's (their sum
    must not exceed it), and a tree lends and borrows in one cohort (its top's)."""
    problems: list[str] = []
    for path, tenant in _tenant_paths(fleet):
        if not tenant.children:
            continue
        declared = {q.gpu_class: (qi, q.nominal) for qi, q in enumerate(tenant.quotas)}
        sums: dict[str, int] = defaultdict(int)
        for child in tenant.children:
            for cls, nominal in _effective_nominal(child).items():
                sums[cls] += nominal
        for cls, total in sorted(sums.items()):
            if cls in declared and total > declared[cls][1]:
                qi, nominal = declared[cls]
                names = ", ".join(c.name for c in tenant.children)
                problems.append(
                    f"{path}.quotas[{qi}].nominal: children ({names}) have {total} GPUs of "
                    f"class '{cls}' in all, more than '{tenant.name}' has ({nominal})"
                )
        for ci, child in enumerate(tenant.children):
            if child.cohort is not None:
                problems.append(
                    f"{path}.children[{ci}].cohort: only the top of a tenant tree joins a "
                    f"cohort ('{child.name}' shares its parent '{tenant.name}''s capacity)"
                )
    return problems


def _tenant_paths(fleet: Fleet) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []

    def walk(prefix: str, tenants: list[Any]) -> None:
        for i, t in enumerate(tenants):
            path = f"{prefix}[{i}]"
            out.append((path, t))
            walk(f"{path}.children", t.children)

    walk("tenants", fleet.tenants)
    return out
