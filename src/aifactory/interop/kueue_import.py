"""Import a fleet from Kueue manifests and a Kubernetes node list.

ClusterQueues become tenants (their ``nvidia.com/gpu`` quota per flavor: nominal, borrowing
and lending limits), Cohorts the tenants' cohorts, ResourceFlavors the GPU classes, and the
nodes (``kubectl get nodes -o yaml`` or ``-o json``) the sites, pods and NVLink domains of
the flavor's Topology: the last level above the node is the NVLink domain, the one above it
the pod, the first of three or more the site. The ``aifactory.io/*`` labels and annotations
that ``export kueue`` writes are read first, so an exported fleet comes back as it was.

What the twin cannot hold is said in the fleet's notes: a hierarchical cohort is flattened
to its root (the twin's cohorts are one level deep), a Cohort's own quota is left out,
other resources than GPUs are left out, and a preemption policy other than the twin's is
reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aifactory.fleet.errors import SpecError
from aifactory.fleet.spec import Fleet
from aifactory.interop.build import NodeRec, QuotaRec, TenantRec, build_fleet, model_id
from aifactory.interop.kueue_export import (
    CLASS,
    GPU,
    HOST,
    MODEL,
    NAME,
    OWNER,
    PARENT,
    twin_preemption,
)

MAX_BYTES = 512 << 20  # one manifest or node file; a national fleet's node list is ~35 MiB


def _load_docs(path: Path) -> list[dict[str, Any]]:
    import yaml  # noqa: PLC0415

    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError([f"larger than {MAX_BYTES >> 20} MiB"], str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(["file not found"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read ({exc})"], str(path)) from None
    try:
        if text.lstrip().startswith("{"):
            docs = [json.loads(text)]
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(
            [f"not valid YAML or JSON ({str(exc).splitlines()[0]})"], str(path)
        ) from None
    out: list[dict[str, Any]] = []
    for d in docs:
        if d is None:
            continue
        if not isinstance(d, dict):
            raise SpecError(["every document must be a mapping (a Kubernetes object)"], str(path))
        if d.get("kind") == "List" or (d.get("kind", "").endswith("List") and "items" in d):
            out.extend(i for i in d.get("items") or [] if isinstance(i, dict))
        else:
            out.append(d)
    return out


def _quantity(value: Any, where: str, source: str) -> int:
    """A GPU count: an integer, or a string of digits (Kubernetes quantity without suffix)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError([f"{where}: '{value}' is not a whole number of GPUs"], source)
    text = str(value).strip()
    if not text.isdigit() or len(text) > 9:
        raise SpecError([f"{where}: '{value}' is not a whole number of GPUs"], source)
    return int(text)


def _name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    return str(notes.get(NAME) or meta.get("name") or "")


def import_kueue(manifests: list[Path], nodes_file: Path, *, name: str | None = None) -> Fleet:
    """The fleet of the Kueue objects in ``manifests`` and the nodes in ``nodes_file``."""
    objs = [o for p in manifests for o in _load_docs(p)]
    source = ", ".join(str(p) for p in manifests)
    notes: list[str] = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        by_kind.setdefault(str(o.get("kind")), []).append(o)
    flavors = {(o.get("metadata") or {}).get("name"): o for o in by_kind.get("ResourceFlavor", [])}
    topologies = {
        (o.get("metadata") or {}).get("name"): [
            lv.get("nodeLabel") for lv in (o.get("spec") or {}).get("levels") or []
        ]
        for o in by_kind.get("Topology", [])
    }
    cohort_parent = {
        (o.get("metadata") or {}).get("name"): (o.get("spec") or {}).get("parentName")
        for o in by_kind.get("Cohort", [])
    }
    if any((o.get("spec") or {}).get("resourceGroups") for o in by_kind.get("Cohort", [])):
        notes.append("left out: quotas of Cohort objects (the twin's cohorts hold no quota)")
    if any(p for p in cohort_parent.values()):
        notes.append("approximation: hierarchical cohorts are flattened to their root cohort")
    cohort_names = {
        (o.get("metadata") or {}).get("name"): _name_of(o) for o in by_kind.get("Cohort", [])
    }
    tenants = [
        _tenant(cq, flavors, cohort_parent, cohort_names, notes, source)
        for cq in by_kind.get("ClusterQueue", [])
    ]
    nodes = _nodes(_load_docs(nodes_file), flavors, topologies, notes, str(nodes_file))
    topo_name = next((_name_of(o) for o in by_kind.get("Topology", [])), None)
    return build_fleet(
        name or topo_name or "kueue",
        nodes,
        tenants,
        source=f"Kueue manifests {source} and nodes {nodes_file}",
        notes=notes,
    )


def _root(cohort: str, parents: dict[Any, Any]) -> str:
    seen = {cohort}
    while parents.get(cohort):
        cohort = parents[cohort]
        if cohort in seen:  # a cycle Kueue itself refuses; stop rather than loop
            break
        seen.add(cohort)
    return cohort


def _tenant(
    cq: dict[str, Any],
    flavors: dict[Any, dict[str, Any]],
    cohort_parent: dict[Any, Any],
    cohort_names: dict[Any, str],
    notes: list[str],
    source: str,
) -> TenantRec:
    meta = cq.get("metadata") or {}
    spec = cq.get("spec") or {}
    name = _name_of(cq)
    cohort = spec.get("cohortName") or spec.get("cohort")  # v1beta2, v1beta1
    if cohort:
        cohort = _root(str(cohort), cohort_parent)
        cohort = cohort_names.get(cohort, cohort)
    quotas = []
    for gi, rg in enumerate(spec.get("resourceGroups") or []):
        for fi, f in enumerate(rg.get("flavors") or []):
            fl = flavors.get(f.get("name"))
            cls = (fl and _name_of(fl)) or str(f.get("name"))
            for r in f.get("resources") or []:
                if r.get("name") != GPU:
                    continue
                where = f"ClusterQueue {name}: resourceGroups[{gi}].flavors[{fi}]"
                quotas.append(
                    QuotaRec(
                        cls,
                        _quantity(r.get("nominalQuota", 0), f"{where}.nominalQuota", source),
                        _opt(r.get("borrowingLimit"), f"{where}.borrowingLimit", source),
                        _opt(r.get("lendingLimit"), f"{where}.lendingLimit", source),
                        source=f"kueue: ClusterQueue {meta.get('name')}",
                    )
                )
    if spec.get("preemption") and spec["preemption"] != twin_preemption():
        notes.append(
            f"ClusterQueue {name}: preemption {spec['preemption']} is not the twin's "
            f"({twin_preemption()}); the twin preempts its own way"
        )
    parent = (meta.get("annotations") or {}).get(PARENT)
    return TenantRec(name, parent=parent, cohort=cohort, quotas=quotas)


def _opt(value: Any, where: str, source: str) -> int | None:
    return None if value is None else _quantity(value, where, source)


def _nodes(
    items: list[dict[str, Any]],
    flavors: dict[Any, dict[str, Any]],
    topologies: dict[Any, list[Any]],
    notes: list[str],
    source: str,
) -> list[NodeRec]:
    out = []
    guessed: dict[str, str] = {}
    guessed_class = 0
    for i, item in enumerate(items):
        if item.get("kind", "Node") != "Node":
            continue
        meta = item.get("metadata") or {}
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        node = str(meta.get("name") or labels.get(HOST) or f"node-{i}")
        status = item.get("status") or {}
        cap = (status.get("allocatable") or status.get("capacity") or {}).get(GPU)
        if cap is None:
            continue  # not a GPU node
        gpus = _quantity(cap, f"node {node}: {GPU}", source)
        if gpus == 0:
            continue
        flavor = next(
            (
                f
                for f in flavors.values()
                if (f.get("spec") or {}).get("nodeLabels")
                and all(labels.get(k) == str(v) for k, v in f["spec"]["nodeLabels"].items())
            ),
            None,
        )
        fspec = (flavor or {}).get("spec") or {}
        fmeta = ((flavor or {}).get("metadata") or {}).get("annotations") or {}
        raw_model = labels.get(MODEL) or fmeta.get(MODEL) or labels.get("nvidia.com/gpu.product")
        model = model_id(raw_model) if raw_model else None
        if model is None:
            raise SpecError(
                [f"node {node}: GPU model unknown (label {MODEL} or nvidia.com/gpu.product)"],
                source,
            )
        if raw_model and model != raw_model:
            guessed[raw_model] = model
        if flavor is None:
            guessed_class += 1
        cls = labels.get(CLASS) or (flavor and _name_of(flavor)) or model
        levels = [lv for lv in topologies.get(fspec.get("topologyName"), []) if lv != HOST]
        site = labels.get(levels[0]) if len(levels) >= 3 else None
        pod = labels.get(levels[-2]) if len(levels) >= 2 else None
        domain = labels.get(levels[-1]) if levels else None
        if pod and site and pod.startswith(f"{site}."):
            pod = pod[len(site) + 1 :]  # the export's pod label is '<site>.<pod>'
        out.append(NodeRec(node, gpus, model, cls, labels.get(OWNER), site, pod, domain))
    notes.extend(f"assumption: GPU '{raw}' is the catalogue's '{m}'" for raw, m in guessed.items())
    if guessed_class:
        notes.append(
            f"assumption: {guessed_class} GPU nodes match no ResourceFlavor; "
            "their class is their model"
        )
    return out
