"""Node and domain names of an exported fleet, shared by the Slurm and Kueue exports.

The fleet spec describes uniform groups; both targets need one name per node and per NVLink
domain. Names are numbered per pod in declaration order (``<site>-<pod>-<i>``, zero-padded
to the pod's width so that Slurm hostlist ranges stay short and, within a pod, name order is
node order); a group that names its Slurm nodes (``slurm_nodes``) keeps those names.
Both exports and both imports agree on this one scheme, which is what makes a round trip
exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from aifactory.fleet.loader import models_of
from aifactory.fleet.spec import DomainGroup, Fleet, GpuModel, Pod, Site

# A DNS-1123 subdomain (Kubernetes object names) and a label value: both refuse '_' and a
# trailing '-' or '.', which fleet names allow.
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ExportError(ValueError):
    """A fleet that cannot be written in the target's terms; the message names the field."""


def dns_name(name: str, field: str, max_len: int = 253) -> str:
    """``name`` as a Kubernetes object name ('_' becomes '-'); refuses what cannot be one."""
    out = name.replace("_", "-")
    if len(out) > max_len or not DNS_NAME.match(out):
        msg = f"{field}: '{name}' cannot be a Kubernetes or Slurm name (a-z, 0-9, '-', '.')"
        raise ExportError(msg)
    return out


def label_value(value: str, field: str) -> str:
    """``value`` checked as a Kubernetes label value (at most 63 characters)."""
    if len(value) > 63 or not LABEL_VALUE.match(value):
        msg = f"{field}: '{value}' cannot be a Kubernetes label value"
        raise ExportError(msg)
    return value


@dataclass(frozen=True, slots=True)
class GroupLayout:
    """One domain group with its sizes resolved and its place in the pod's numbering."""

    site: Site
    pod: Pod
    group: DomainGroup
    model: GpuModel
    nodes_per_domain: int
    gpus_per_node: int
    first_node: int  # index of the group's first node within its pod
    first_domain: int  # index of the group's first domain within its pod
    pod_nodes: int  # nodes in the whole pod (for the name width)

    @property
    def nodes(self) -> int:
        """Nodes in this group."""
        return self.group.domains * self.nodes_per_domain

    def node_names(self) -> list[str]:
        """The group's node names, domain by domain."""
        if self.group.slurm_nodes is not None:
            return list(self.group.slurm_nodes)
        prefix = pod_prefix(self.site, self.pod)
        width = name_width(self.pod_nodes)
        return [
            f"{prefix}-{i:0{width}d}" for i in range(self.first_node, self.first_node + self.nodes)
        ]

    def domain_names(self) -> list[str]:
        """The group's NVLink domain names (``<site>-<pod>-d<j>``)."""
        prefix = pod_prefix(self.site, self.pod)
        return [
            f"{prefix}-d{j}"
            for j in range(self.first_domain, self.first_domain + self.group.domains)
        ]


def name_width(count: int) -> int:
    """Digits of a zero-padded index below ``count`` (at least 2)."""
    return max(2, len(str(max(0, count - 1))))


def pod_prefix(site: Site, pod: Pod) -> str:
    """The name prefix of a pod's nodes and domains."""
    return dns_name(f"{site.name}-{pod.name}", f"sites.{site.name}.pods.{pod.name}")


def layout(fleet: Fleet) -> list[GroupLayout]:
    """Every domain group of a validated fleet, with sizes and numbering, in fleet order."""
    models = models_of(fleet)
    out: list[GroupLayout] = []
    for site in fleet.sites:
        for pod in site.pods:
            sized = []
            for group in pod.groups:
                model = models[group.model]
                gpn = group.gpus_per_node or model.gpus_per_node
                npd = group.nodes_per_domain or max(1, model.nvlink_domain_gpus // gpn)
                sized.append((group, model, npd, gpn))
            pod_nodes = sum(g.domains * npd for g, _, npd, _ in sized)
            node = domain = 0
            for group, model, npd, gpn in sized:
                out.append(GroupLayout(site, pod, group, model, npd, gpn, node, domain, pod_nodes))
                node += group.domains * npd
                domain += group.domains
    return out


def iter_domains(groups: list[GroupLayout]) -> Iterator[tuple[GroupLayout, str, list[str]]]:
    """Every NVLink domain: its group, its name and its node names."""
    for g in groups:
        names = g.node_names()
        npd = g.nodes_per_domain
        for j, dname in enumerate(g.domain_names()):
            yield g, dname, names[j * npd : (j + 1) * npd]
