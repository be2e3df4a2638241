"""Imports of configuration aifactory did not write: no aifactory.io labels, annotations or
features, a hierarchical cohort, another preemption policy, NodeName=DEFAULT, a tree whose
switch names follow no scheme. What the source does not say must come back as a stated
assumption, and what it does say must be kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.fleet import compile_topology
from aifactory.fleet.errors import SpecError
from aifactory.interop.kueue_import import import_kueue
from aifactory.interop.slurm_import import import_slurm

KUEUE = """\
apiVersion: kueue.x-k8s.io/v1beta2
kind: Topology
metadata: {name: dc}
spec:
  levels:
  - nodeLabel: example.com/zone
  - nodeLabel: example.com/block
  - nodeLabel: example.com/rack
  - nodeLabel: kubernetes.io/hostname
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {name: h100-sxm}
spec:
  nodeLabels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
  topologyName: dc
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: Cohort
metadata: {name: research}
spec: {parentName: org}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: Cohort
metadata: {name: org}
spec: {}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {name: team-a}
spec:
  cohortName: research
  preemption: {withinClusterQueue: LowerOrNewerEqualPriority, reclaimWithinCohort: Any}
  resourceGroups:
  - coveredResources: [cpu, nvidia.com/gpu]
    flavors:
    - name: h100-sxm
      resources:
      - {name: cpu, nominalQuota: 96}
      - {name: nvidia.com/gpu, nominalQuota: "16", borrowingLimit: 8}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {name: team-b}
spec:
  cohortName: org
  resourceGroups:
  - coveredResources: [nvidia.com/gpu]
    flavors:
    - name: h100-sxm
      resources:
      - {name: nvidia.com/gpu, nominalQuota: 8, lendingLimit: 4}
"""


def node(name: str, zone: str, block: str, rack: str, gpus: int = 8) -> str:
    return f"""\
- apiVersion: v1
  kind: Node
  metadata:
    name: {name}
    labels: {{example.com/zone: {zone}, example.com/block: {block}, example.com/rack: {rack},
             kubernetes.io/hostname: {name}, nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}}
  status: {{capacity: {{nvidia.com/gpu: "{gpus}"}}}}
"""


def test_kueue_of_someone_else(tmp_path: Path) -> None:
    (tmp_path / "kueue.yaml").write_text(KUEUE)
    nodes = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        node(f"gpu-{i}", "z1", f"b{i // 2}", f"r{i}") for i in range(4)
    )
    nodes += (
        "- {apiVersion: v1, kind: Node, metadata: {name: cpu-0}, status: {capacity: {cpu: '64'}}}\n"
    )
    (tmp_path / "nodes.yaml").write_text(nodes)
    fleet = import_kueue([tmp_path / "kueue.yaml"], tmp_path / "nodes.yaml")
    topo = compile_topology(fleet)
    assert topo.gpus_total == 32, "the CPU node is left out"
    assert topo.classes == ("h100-sxm",)
    assert [s.name for s in fleet.sites] == ["z1"]
    assert [p.name for p in fleet.sites[0].pods] == ["b0", "b1"]
    assert topo.n_domains == 4, "a rack (the last level above the node) is an NVLink domain"
    tenants = {t.name: (t, c) for t, _, c in fleet.iter_tenants()}
    a, cohort_a = tenants["team-a"]
    b, cohort_b = tenants["team-b"]
    assert cohort_a == cohort_b == "org", "a cohort tree is flattened to its root"
    assert (a.quotas[0].nominal, a.quotas[0].borrowing_limit) == (16, 8)
    assert (b.quotas[0].nominal, b.quotas[0].lending_limit) == (8, 4)
    notes = " ".join(fleet.notes)
    assert "flattened" in notes
    assert "team-a: preemption" in notes, "a policy the twin does not follow is reported"
    assert "GPU 'NVIDIA-H100-80GB-HBM3' is the catalogue's 'h100'" in notes
    assert all("assumption" in s.source for s in fleet.sites)


def test_kueue_node_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "kueue.yaml").write_text(KUEUE)
    (tmp_path / "nodes.json").write_text(
        '{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "x"},'
        ' "status": {"capacity": {"nvidia.com/gpu": "8"}}}]}'
    )
    with pytest.raises(SpecError, match="node x: GPU model unknown"):
        import_kueue([tmp_path / "kueue.yaml"], tmp_path / "nodes.json")


SLURM_CONF = """\
ClusterName=Lab-Cluster
GresTypes=gpu
NodeName=DEFAULT CPUs=128 RealMemory=1000000 Gres=gpu:a100:8   # every node below
NodeName=g[01-04]
NodeName=big[1-2] Gres=gpu:h100:8
NodeName=cpu[1-8] Gres=
PartitionName=all Nodes=ALL Default=YES
"""
TOPOLOGY = """\
SwitchName=leaf1 Nodes=g[01-02]
SwitchName=leaf2 Nodes=g[03-04],big[1-2]
SwitchName=spine Switches=leaf[1-2]
"""
ASSOC = """\
Account|User|ParentName|GrpTRES
root|||
physics|||
physics|alice||
astro||physics|gres/gpu:a100=16
hep||physics|gres/gpu=8
chem|||cpu=64
"""


def test_slurm_of_someone_else(tmp_path: Path) -> None:
    for name, text in (("slurm.conf", SLURM_CONF), ("topology.conf", TOPOLOGY), ("assoc", ASSOC)):
        (tmp_path / name).write_text(text)
    fleet = import_slurm(
        tmp_path / "slurm.conf", topology=[tmp_path / "topology.conf"], assoc=tmp_path / "assoc"
    )
    topo = compile_topology(fleet)
    assert fleet.name == "lab-cluster"
    assert topo.class_capacity() == {"a100-80g": 32, "h100": 16}
    assert "assumption: GPU type 'a100' is the catalogue's 'a100-80g'" in fleet.notes
    assert topo.n_nodes == 6, "the CPU nodes are left out"
    assert [p.name for s in fleet.sites for p in s.pods] == ["leaf1", "leaf2"]
    tenants = {t.name: (t, p) for t, p, _ in fleet.iter_tenants()}
    assert "root" not in tenants, "Slurm's root is the tree's root"
    astro, parent = tenants["astro"]
    assert parent is not None
    assert parent.name == "physics"
    assert {q.gpu_class: q.nominal for q in astro.quotas} == {topo.classes[0]: 16}
    hep, _ = tenants["hep"]
    assert sum(q.nominal for q in hep.quotas) == 8
    chem, _ = tenants["chem"]
    assert sum(q.nominal for q in chem.quotas) == 48 - 16 - 8, "no GPU GrpTRES: the rest"
    assert any("no GrpTRES" in q.source for q in chem.quotas)
    names = [n for _, _, g in fleet.iter_groups() for n in g.slurm_nodes or []]
    assert sorted(names) == ["big1", "big2", "g01", "g02", "g03", "g04"]
