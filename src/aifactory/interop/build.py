"""Build a validated fleet from imported nodes and tenants (shared by both imports).

An import knows nodes (name, GPUs, model, class, owner and where they are: site, pod,
NVLink domain) and tenants (parent, cohort, quotas). Whatever the source did not say is
filled with a stated assumption, marked ``assumption`` where the spec has a ``source`` and
listed in the fleet's ``notes``. Sites, pods and domains keep the order in which their first
node appears (the order placement walks), and consecutive domains of one shape and owner in
a pod become one domain group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aifactory.fleet.errors import SpecError
from aifactory.fleet.loader import catalogue, parse_fleet
from aifactory.fleet.spec import ASSUMPTION, Fleet
from aifactory.interop.layout import layout

PUE: float = 1.3  # assumption for an imported site: a typical air/liquid mix (facts.md §2)
HEADROOM: float = 1.3  # site power over the GPUs' peak: CPUs, storage, network


@dataclass(slots=True)
class NodeRec:
    """One imported node."""

    name: str
    gpus: int
    model: str
    gpu_class: str
    owner: str | None = None
    site: str | None = None
    pod: str | None = None
    domain: str | None = None


@dataclass(slots=True)
class QuotaRec:
    """One imported quota (per GPU class)."""

    gpu_class: str
    nominal: int
    borrowing_limit: int | None = None
    lending_limit: int | None = None
    source: str = ASSUMPTION


@dataclass(slots=True)
class TenantRec:
    """One imported tenant; ``parent`` names another imported tenant or is None."""

    name: str
    parent: str | None = None
    cohort: str | None = None
    quotas: list[QuotaRec] = field(default_factory=list)
    display_name: str | None = None


def model_id(text: str) -> str | None:
    """The catalogue id a GPU type or product string names (``H100``, ``NVIDIA-H100-80GB-HBM3``,
    ``a100-80g``), or None. The longest id contained in the normalised text wins; else the one
    catalogue id the text is the start of. A caller states it as an assumption when the id
    is not the text itself."""
    norm = "".join(ch for ch in text.lower() if ch.isalnum())
    ids = sorted(catalogue(), key=len, reverse=True)
    for mid in ids:
        if mid == text.lower():
            return mid
    for mid in ids:
        if "".join(ch for ch in mid if ch.isalnum()) in norm:
            return mid
    # 'a100' names no one catalogue model but may name exactly one variant ('a100-80g').
    variants = [mid for mid in ids if norm and mid.startswith(text.lower())]
    return variants[0] if len(variants) == 1 else None


def build_fleet(
    name: str,
    nodes: list[NodeRec],
    tenants: list[TenantRec],
    *,
    source: str,
    notes: list[str],
    default_tenant: str | None = None,
    keep_node_names: bool = False,
) -> Fleet:
    """The fleet of ``nodes`` and ``tenants``, validated (raises :class:`SpecError`)."""
    if not nodes:
        raise SpecError(["no GPU nodes found"], source)
    models = catalogue()
    notes = list(notes)
    if not tenants:
        caps: dict[str, int] = {}
        for n in nodes:
            caps[n.gpu_class] = caps.get(n.gpu_class, 0) + n.gpus
        tenants = [
            TenantRec(
                "root",
                quotas=[
                    QuotaRec(c, g, source="assumption: one tenant holds every GPU")
                    for c, g in caps.items()
                ],
            )
        ]
        notes.append("assumption: no tenants in the source; one tenant, root, holds every GPU")
    owner_default = default_tenant or _first_holder(tenants)
    known = {t.name for t in tenants}
    unowned = [n for n in nodes if n.owner not in known]
    if unowned:
        notes.append(
            f"assumption: {len(unowned)} nodes name no owner among the tenants; they are "
            "owned by the tenant with a quota in their class (the first such), else by "
            f"'{owner_default}'"
        )
    for n in unowned:
        n.owner = next(
            (t.name for t in tenants if any(q.gpu_class == n.gpu_class for q in t.quotas)),
            owner_default,
        )
    sites: dict[str, dict[str, dict[str, list[NodeRec]]]] = {}
    for n in nodes:
        site = n.site or "cluster"
        pod = n.pod or "pod0"
        domain = n.domain or f"node:{n.name}"
        sites.setdefault(site, {}).setdefault(pod, {}).setdefault(domain, []).append(n)
    if any(n.site is None for n in nodes):
        notes.append("assumption: nodes without a site are in one site, 'cluster'")
    if any(n.domain is None for n in nodes):
        notes.append("assumption: a node in no NVLink domain (block) is a domain of its own")
    site_docs = []
    for sname, pods in sites.items():
        peak_w = 0.0
        pod_docs = []
        for pname, domains in pods.items():
            groups: list[dict[str, Any]] = []
            for dname, members in domains.items():
                shape = _shape(dname, members, source)
                if shape[0] in models:
                    peak_w += models[shape[0]].busy_watts * shape[1] * len(members)
                last = groups[-1] if groups else None
                if last is not None and last["_shape"] == shape:
                    last["domains"] += 1
                    continue
                model, gpn, cls, owner = shape
                groups.append(
                    {
                        "_shape": shape,
                        "model": model,
                        "domains": 1,
                        "nodes_per_domain": len(members),
                        "gpus_per_node": gpn,
                        "owner": owner,
                        "gpu_class": cls,
                        "source": source,
                    }
                )
            pod_docs.append({"name": _name(pname), "groups": groups})
        power = max(0.1, math.ceil(peak_w * PUE * HEADROOM / 1e5) / 10)
        site_docs.append(
            {
                "name": _name(sname),
                "region": "unknown (imported)",
                "power_mw": power,
                "pue": PUE,
                "source": f"assumption: imported from {source}; power = GPU peak x PUE {PUE} "
                f"x {HEADROOM} headroom, PUE {PUE}",
                "pods": pod_docs,
            }
        )
    doc = {
        "name": _name(name),
        "description": f"Imported from {source}.",
        "default_tenant": default_tenant,
        "sites": site_docs,
        "tenants": _tenant_tree(tenants, source),
        "notes": [f"source: {source}", *notes],
    }
    _strip(doc)
    fleet = parse_fleet(doc, source)
    if keep_node_names:
        _name_nodes(doc, fleet, sites)
        fleet = parse_fleet(doc, source)
    return fleet


def _first_holder(tenants: list[TenantRec]) -> str:
    return next((t.name for t in tenants if t.quotas), tenants[0].name)


def _name(text: str) -> str:
    """A fleet name from an imported one: lower case, other characters as '-'."""
    out = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text.lower()).strip("-.")
    return out[:64] or "imported"


def _shape(dname: str, members: list[NodeRec], source: str) -> tuple[str, int, str, str]:
    first = members[0]
    for m in members[1:]:
        if (m.model, m.gpus, m.gpu_class, m.owner) != (
            first.model,
            first.gpus,
            first.gpu_class,
            first.owner,
        ):
            raise SpecError(
                [
                    (
                        f"node {m.name}: NVLink domain '{dname}' mixes {m.gpus} x {m.model} "
                        f"({m.gpu_class}, owner {m.owner}) with {first.name}'s {first.gpus} x "
                        f"{first.model} ({first.gpu_class}, owner {first.owner})"
                    )
                ],
                source,
            )
    assert first.owner is not None
    return first.model, first.gpus, first.gpu_class, first.owner


def _tenant_tree(tenants: list[TenantRec], source: str) -> list[dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for t in tenants:
        docs[t.name] = {
            "name": t.name,
            "display_name": t.display_name,
            "cohort": t.cohort,
            "quotas": [
                {
                    "gpu_class": q.gpu_class,
                    "nominal": q.nominal,
                    "borrowing_limit": q.borrowing_limit,
                    "lending_limit": q.lending_limit,
                    "source": q.source,
                }
                for q in t.quotas
            ],
            "children": [],
        }
    roots = []
    for t in tenants:
        if t.parent is not None and t.parent in docs and t.parent != t.name:
            docs[t.parent]["children"].append(docs[t.name])
        elif t.parent is not None and t.parent not in docs:
            raise SpecError([f"tenant {t.name}: parent '{t.parent}' is not imported"], source)
        else:
            roots.append(docs[t.name])
    for root in roots:
        _lift_cohort(root)
    return roots


def _lift_cohort(top: dict[str, Any]) -> None:
    """Only a tree's top joins a cohort (aifactory's nested quotas): a cohort that the
    source names on members of a tree (Kueue's ClusterQueues, each with its cohortName)
    becomes the top's when it is one for the whole tree; several differing ones are left
    for the fleet's validation to refuse, naming each."""
    below: set[str] = set()

    def walk(doc: dict[str, Any]) -> None:
        for child in doc["children"]:
            if child.get("cohort") is not None:
                below.add(child["cohort"])
            walk(child)

    walk(top)
    if len(below) != 1 or top.get("cohort") not in (None, *below):
        return
    top["cohort"] = below.pop()

    def clear(doc: dict[str, Any]) -> None:
        for child in doc["children"]:
            child["cohort"] = None
            clear(child)

    clear(top)


def _strip(doc: Any) -> None:
    """Drop None values and the builder's private keys, in place."""
    if isinstance(doc, dict):
        for k in [k for k, v in doc.items() if v is None or k.startswith("_")]:
            del doc[k]
        for v in doc.values():
            _strip(v)
    elif isinstance(doc, list):
        for v in doc:
            _strip(v)


def _name_nodes(doc: dict[str, Any], fleet: Fleet, sites: dict[str, Any]) -> None:
    """Give every group ``slurm_nodes`` where the source's node names differ from the
    export's own numbering (so that a round trip of an exported fleet stays as it was)."""
    names_by_group = [
        [m.name for members in domains.values() for m in members]
        for pods in sites.values()
        for domains in pods.values()
    ]
    # Regroup the per-pod name lists by the groups built above, in the same order.
    flat_groups = [g for s in doc["sites"] for p in s["pods"] for g in p["groups"]]
    per_pod = iter(names_by_group)
    pod_names: list[str] = []
    cursor = 0
    generated = layout(fleet)
    for gi, group in enumerate(flat_groups):
        if gi == 0 or generated[gi].first_node == 0:
            pod_names = next(per_pod)
            cursor = 0
        count = generated[gi].nodes
        mine = pod_names[cursor : cursor + count]
        cursor += count
        if mine != generated[gi].node_names():
            group["slurm_nodes"] = mine
