"""Export a fleet as Kueue objects (v1beta2) and the Kubernetes nodes they select.

The mapping, and why (docs/interop.md has the whole table):

- a GPU class is a ``ResourceFlavor`` selecting the nodes labelled with it, tied to one
  ``Topology`` whose levels are site -> pod -> NVLink domain -> node (the levels the twin's
  placement keeps a gang inside);
- every tenant is a ``ClusterQueue`` (parents too: in the twin a parent is a tenant of its
  own, with its own quotas, in the cohort it passes down) with, per class it has a quota in,
  ``nominalQuota``, ``borrowingLimit`` and ``lendingLimit`` of ``nvidia.com/gpu``; a tenant
  has no other class, as in the twin, where a class without a quota cannot be used;
- every cohort is a ``Cohort``; the twin's cohorts are one level deep and hold no quota of
  their own, so they have no ``parentName`` and no resource groups; the tenant tree travels
  in the ``aifactory.io/parent`` annotation, which the import reads back;
- a tenant's ``LocalQueue`` lives in its namespace (named after the tenant) and only that
  namespace may submit to its ClusterQueue;
- the service's priority classes are ``WorkloadPriorityClass`` objects;
- preemption is the twin's (scheduler/preemption.py): a job evicts lower-priority jobs of
  its own tenant (``withinClusterQueue: LowerPriority``), a tenant within its nominal quota
  takes back lent GPUs from any borrower whatever its priority (``reclaimWithinCohort:
  Any``), and a borrower never evicts another tenant's job (``borrowWithinCohort: Never``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from aifactory.fleet.spec import Fleet, Quota, Tenant
from aifactory.interop.layout import ExportError, dns_name, iter_domains, label_value, layout

API: Final = "kueue.x-k8s.io/v1beta2"
GPU: Final = "nvidia.com/gpu"
TOPOLOGY: Final = "aifactory"
# Node labels written by the export and read by the import; the last topology level is the
# node itself, which Kueue requires to be kubernetes.io/hostname.
SITE: Final = "aifactory.io/site"
POD: Final = "aifactory.io/pod"
DOMAIN: Final = "aifactory.io/nvlink-domain"
HOST: Final = "kubernetes.io/hostname"
CLASS: Final = "aifactory.io/gpu-class"
MODEL: Final = "aifactory.io/gpu-model"
OWNER: Final = "aifactory.io/owner"
# Annotations keeping aifactory's own names where the Kubernetes spelling differs.
NAME: Final = "aifactory.io/name"
PARENT: Final = "aifactory.io/parent"
TOPOLOGY_LEVELS: Final = (SITE, POD, DOMAIN, HOST)


def twin_preemption(enabled: bool = True) -> dict[str, Any]:
    """The ClusterQueue preemption policy that matches the twin's (see the module doc)."""
    if not enabled:
        return {
            "withinClusterQueue": "Never",
            "reclaimWithinCohort": "Never",
            "borrowWithinCohort": {"policy": "Never"},
        }
    return {
        "withinClusterQueue": "LowerPriority",
        "reclaimWithinCohort": "Any",
        "borrowWithinCohort": {"policy": "Never"},
    }


def _meta(name: str, original: str, **extra: str) -> dict[str, Any]:
    notes = {NAME: original, **extra}
    return {"name": name, "annotations": notes}


def flavors(fleet: Fleet) -> list[dict[str, Any]]:
    """One ResourceFlavor per GPU class, selecting its nodes, tied to the topology."""
    seen: dict[str, str] = {}
    for _site, _pod, group in fleet.iter_groups():
        seen.setdefault(group.flavor, group.model)
    return [
        {
            "apiVersion": API,
            "kind": "ResourceFlavor",
            "metadata": _meta(dns_name(cls, f"gpu_class '{cls}'"), cls, **{MODEL: model}),
            "spec": {
                "nodeLabels": {CLASS: label_value(cls, f"gpu_class '{cls}'")},
                "topologyName": TOPOLOGY,
            },
        }
        for cls, model in seen.items()
    ]


def topology(fleet: Fleet) -> dict[str, Any]:
    """The Topology: site -> pod -> NVLink domain -> node (annotated with the fleet's name)."""
    return {
        "apiVersion": API,
        "kind": "Topology",
        "metadata": _meta(TOPOLOGY, fleet.name),
        "spec": {"levels": [{"nodeLabel": label} for label in TOPOLOGY_LEVELS]},
    }


def _resources(q: Quota, in_cohort: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"name": GPU, "nominalQuota": q.nominal}
    # Kueue refuses a borrowing limit on a ClusterQueue without a cohort; the twin ignores
    # both limits there, as nothing is borrowed from or lent to anyone.
    if in_cohort and q.borrowing_limit is not None:
        res["borrowingLimit"] = q.borrowing_limit
    if in_cohort and q.lending_limit is not None:
        res["lendingLimit"] = q.lending_limit
    return res


def cluster_queue(
    tenant: Tenant, parent: Tenant | None, cohort: str | None, preemption: dict[str, Any]
) -> dict[str, Any]:
    """A tenant's ClusterQueue, open to its own namespace only."""
    name = dns_name(tenant.name, f"tenant '{tenant.name}'")
    extra = {PARENT: parent.name} if parent is not None else {}
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}},
        # The twin backfills past a head that does not fit (EASY); BestEffortFIFO is Kueue's
        # nearest: a later workload may be admitted while the head waits.
        "queueingStrategy": "BestEffortFIFO",
        "preemption": preemption,
    }
    if cohort is not None:
        spec["cohortName"] = dns_name(cohort, f"cohort '{cohort}'")
    if tenant.quotas:
        spec["resourceGroups"] = [
            {
                "coveredResources": [GPU],
                "flavors": [
                    {
                        "name": dns_name(q.gpu_class, f"gpu_class '{q.gpu_class}'"),
                        "resources": [_resources(q, cohort is not None)],
                    }
                    for q in tenant.quotas
                ],
            }
        ]
    return {
        "apiVersion": API,
        "kind": "ClusterQueue",
        "metadata": _meta(name, tenant.name, **extra),
        "spec": spec,
    }


def priority_classes() -> list[dict[str, Any]]:
    """The service's named priorities as WorkloadPriorityClasses (same names and values)."""
    from aifactory.service.schemas import PRIORITY_VALUE  # noqa: PLC0415 (service: only here)

    return [
        {
            "apiVersion": API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": str(cls)},
            "value": value,
            "description": f"aifactory priority class '{cls}'",
        }
        for cls, value in PRIORITY_VALUE.items()
    ]


def kueue_objects(fleet: Fleet, *, preemption: bool = True) -> list[dict[str, Any]]:
    """Every Kueue object of the fleet, plus the tenants' Namespaces, in apply order."""
    policy = twin_preemption(preemption)
    objs: list[dict[str, Any]] = [topology(fleet), *flavors(fleet)]
    cohorts: list[str] = []
    queues: list[dict[str, Any]] = []
    names: set[str] = set()
    for tenant, parent, cohort in fleet.iter_tenants():
        cq = cluster_queue(tenant, parent, cohort, policy)
        if cq["metadata"]["name"] in names:
            msg = f"tenant '{tenant.name}': its Kubernetes name collides with another tenant's"
            raise ExportError(msg)
        names.add(cq["metadata"]["name"])
        queues.append(cq)
        if cohort is not None and cohort not in cohorts:
            cohorts.append(cohort)
    objs.extend(
        {
            "apiVersion": API,
            "kind": "Cohort",
            "metadata": _meta(dns_name(c, f"cohort '{c}'"), c),
            "spec": {},
        }
        for c in cohorts
    )
    objs.extend(queues)
    for cq in queues:
        ns = cq["metadata"]["name"]
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        objs.append(
            {
                "apiVersion": API,
                "kind": "LocalQueue",
                "metadata": {"name": ns, "namespace": ns},
                "spec": {"clusterQueue": ns},
            }
        )
    objs.extend(priority_classes())
    return objs


def node_objects(fleet: Fleet) -> Iterator[dict[str, Any]]:
    """The fleet's nodes as ``kubectl get nodes -o yaml`` would list them: labels for the
    topology, class, model and owner, and ``nvidia.com/gpu`` capacity."""
    for g, domain, nodes in iter_domains(layout(fleet)):
        labels_common = {
            SITE: label_value(g.site.name, f"site '{g.site.name}'"),
            POD: label_value(f"{g.site.name}.{g.pod.name}", f"pod '{g.pod.name}'"),
            DOMAIN: label_value(domain, f"domain '{domain}'"),
            CLASS: g.group.flavor,
            MODEL: g.group.model,
            OWNER: label_value(g.group.owner, f"owner '{g.group.owner}'"),
        }
        gpus = str(g.gpus_per_node)
        for node in nodes:
            yield {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node, "labels": {**labels_common, HOST: node}},
                "status": {"capacity": {GPU: gpus}, "allocatable": {GPU: gpus}},
            }


KUEUE_NOTE: Final = """\
# Kueue export of fleet '{fleet}'

- `kueue.yaml`: apply with `kubectl apply -f kueue.yaml` (Kueue v1beta2 API).
- `nodes.json`: the nodes as `kubectl get nodes -o json` lists them; label your real nodes
  with the same `aifactory.io/*` labels (the flavors and the topology select on them).

What has no Kueue equivalent, and how it was approximated:
- the twin's backfill (EASY) is `queueingStrategy: BestEffortFIFO` (Kueue admits a later
  workload while the head waits, but makes no reservation for the head);
- the twin's placement preferences (an owner's own hardware first, the fewest pods, sites,
  NVLink domains) are only the Topology: a workload asks for a level with
  `kueue.x-k8s.io/podset-preferred-topology` (or `-required-topology`) itself;
- the twin's policies other than priority-then-FIFO (LAS, fair share) have no ClusterQueue
  field; the policy that ranks within a tenant's queue is Kueue's own;
- sites' power, PUE and the links between sites are not Kubernetes objects and are not
  exported;
- the tenant tree is kept in the `aifactory.io/parent` annotation (Kueue's cohorts are the
  twin's, one level deep, without quotas of their own).
"""


def dump_all(docs: list[dict[str, Any]]) -> str:
    """Multi-document YAML (with libyaml's emitter when PyYAML has it)."""
    import yaml  # noqa: PLC0415

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump_all(docs, Dumper=dumper, sort_keys=False, default_flow_style=False))


def write_kueue(fleet: Fleet, out_dir: Any, *, preemption: bool = True) -> list[str]:
    """Write kueue.yaml, nodes.json and NOTES.md into ``out_dir``; returns the file names.

    The node list is JSON (``kubectl get nodes -o json``; JSON is also YAML, so the import
    reads either): a national fleet has ~60,000 nodes, which PyYAML writes in ~20 s and the
    json module in about one."""
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    out = Path(out_dir)
    objs = kueue_objects(fleet, preemption=preemption)
    node_list = {"apiVersion": "v1", "kind": "List", "items": list(node_objects(fleet))}
    out.mkdir(parents=True, exist_ok=True)
    (out / "kueue.yaml").write_text(dump_all(objs), encoding="utf-8")
    (out / "nodes.json").write_text(json.dumps(node_list, indent=1) + "\n", encoding="utf-8")
    (out / "NOTES.md").write_text(KUEUE_NOTE.format(fleet=fleet.name), encoding="utf-8")
    return ["kueue.yaml", "nodes.json", "NOTES.md"]
