"""Export a fleet as Slurm configuration: nodes, GPUs, partitions, topology and accounts.

Written into one directory (docs/interop.md has the whole mapping):

- ``slurm.conf``: the lines to merge into a cluster's slurm.conf: ``NodeName`` per domain
  group with ``Gres=gpu:<model>:<n>`` and the class, site, pod and owner as ``Features``, one
  ``PartitionName`` per GPU class (or per site), the topology plugin;
- ``gres.conf``: the GPUs of every node (``/dev/nvidia<i>``);
- ``topology.conf`` for ``topology/block`` (Slurm >= 23.11): one block per NVLink domain of
  more than one node (an NVL72 rack); and ``topology.tree.conf`` for ``topology/tree``
  (older Slurm): one leaf switch per pod, one switch per site above them, one root;
- ``accounts.sh``: ``sacctmgr`` commands creating the tenant tree as the account tree, with
  ``GrpTRES`` from the nominal quotas and ``Fairshare`` from the guaranteed GPUs;
- ``NOTES.md``: what has no Slurm equivalent and how it was approximated.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path
from typing import Final, Literal

from aifactory.fleet.spec import Fleet, Tenant
from aifactory.interop.hostlist import compress
from aifactory.interop.layout import ExportError, GroupLayout, dns_name, iter_domains, layout

Partitions = Literal["class", "site"]

SLURM_NOTE: Final = """\
# Slurm export of fleet '{fleet}'

Merge `slurm.conf` into the cluster's slurm.conf (ClusterName, controller, ports and CPUs are
the cluster's own), copy `gres.conf` and one topology file beside it as `topology.conf`, and
run `sh accounts.sh` once slurmctld has started with this AccountingStorageTRES: slurmdbd
learns the per-model TRES (gres/gpu:<model>) from it, and refuses them before; the script
then sets only the total and says so.

- `topology.conf`: topology/block (Slurm >= 23.11), one block per NVLink domain of more than
  one node. Nodes of single-node domains (8-GPU HGX servers) are in no block: a block is an
  NVLink domain, which they are alone. With such nodes in the same cluster, give their
  partitions the flat topology (topology.yaml, Slurm >= 24.11), or use the tree file.
- `topology.tree.conf`: topology/tree for older Slurm: pods are leaf switches, sites the
  switches above them, `{root}` the root.

What has no Slurm equivalent, and how it was approximated:
- nominal quota: Slurm guarantees nothing; `GrpTRES=gres/gpu=<nominal>` caps an account at
  its nominal GPUs, and `Fairshare=<nominal>` gives it a share in proportion to them.
- borrowing limits: Slurm accounts do not borrow from each other. GrpTRES holds a tenant to
  its nominal quota, so a cohort's idle GPUs stay idle in Slurm where the twin lends them.
  The comment above each account gives the twin's ceiling (nominal + what it may borrow);
  raise GrpTRES to it to let Slurm fill idle GPUs (then nothing reclaims them: Slurm
  preempts by QOS or partition, not by quota).
- lending limits: no equivalent; nothing is lent.
- GPU classes that share a model (h100 and h100-edge) share the GRES type; the class is the
  node feature and the partition, and GrpTRES counts `gres/gpu:<model>`.
- sites' power, PUE and inter-site links have no place in Slurm's configuration.
"""


def _nodes_by(groups: list[GroupLayout], key: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for g in groups:
        k = g.group.flavor if key == "class" else g.site.name
        out[k].extend(g.node_names())
    return out


def slurm_conf(fleet: Fleet, groups: list[GroupLayout], partitions: Partitions, plugin: str) -> str:
    """The slurm.conf lines of the fleet."""
    lines = [
        f"# aifactory export of fleet '{fleet.name}': merge into slurm.conf",
        "GresTypes=gpu",
        "SelectType=select/cons_tres",
        f"TopologyPlugin=topology/{plugin}",
        "AccountingStorageTRES=gres/gpu,"
        + ",".join(sorted({f"gres/gpu:{g.group.model}" for g in groups})),
        "PriorityType=priority/multifactor",
        "",
    ]
    for g in groups:
        features = ",".join(
            (
                f"class_{g.group.flavor}",
                f"site_{g.site.name}",
                f"pod_{g.site.name}.{g.pod.name}",
                f"owner_{g.group.owner}",
            )
        )
        lines.append(
            f"NodeName={compress(g.node_names())} Gres=gpu:{g.group.model}:{g.gpus_per_node} "
            f"Features={features} State=UNKNOWN"
        )
    lines.append("")
    for i, (name, nodes) in enumerate(_nodes_by(groups, partitions).items()):
        default = " Default=YES" if i == 0 else ""
        part = dns_name(name, f"partition '{name}'")
        lines.append(
            f"PartitionName={part} Nodes={compress(nodes)}{default} MaxTime=INFINITE State=UP"
        )
    return "\n".join(lines) + "\n"


def gres_conf(groups: list[GroupLayout]) -> str:
    """gres.conf: each node's GPUs as /dev/nvidia0.. (one line per domain group)."""
    lines = ["# aifactory export: the GPUs of every node"]
    for g in groups:
        last = g.gpus_per_node - 1
        files = "/dev/nvidia0" if last == 0 else f"/dev/nvidia[0-{last}]"
        lines.append(
            f"NodeName={compress(g.node_names())} Name=gpu Type={g.group.model} File={files}"
        )
    return "\n".join(lines) + "\n"


def block_conf(groups: list[GroupLayout]) -> str:
    """topology/block: one block per NVLink domain of more than one node."""
    lines = ["# aifactory export: topology/block (Slurm >= 23.11), a block per NVLink domain"]
    sizes: set[int] = set()
    for _g, dname, nodes in iter_domains(groups):
        if len(nodes) > 1:
            sizes.add(len(nodes))
            lines.append(f"BlockName={dname} Nodes={compress(nodes)}")
    if len(sizes) == 1:
        lines.append(f"BlockSizes={sizes.pop()}")
    return "\n".join(lines) + "\n"


def tree_conf(groups: list[GroupLayout], root: str) -> str:
    """topology/tree: pods as leaf switches, sites above them, one root."""
    lines = ["# aifactory export: topology/tree, pods as leaf switches under their sites"]
    pods: dict[str, list[str]] = defaultdict(list)
    site_pods: dict[str, list[str]] = defaultdict(list)
    for g in groups:
        switch = dns_name(f"{g.site.name}-{g.pod.name}", f"pod '{g.pod.name}'")
        if switch not in pods:
            site_pods[g.site.name].append(switch)
        pods[switch].extend(g.node_names())
    names = set(pods) | set(site_pods) | {root}
    if len(names) != len(pods) + len(site_pods) + 1:
        msg = "sites: a site's, a pod's and the fleet's names collide as Slurm switch names"
        raise ExportError(msg)
    lines.extend(f"SwitchName={s} Nodes={compress(nodes)}" for s, nodes in pods.items())
    lines.extend(f"SwitchName={s} Switches={','.join(p)}" for s, p in site_pods.items())
    lines.append(f"SwitchName={root} Switches={','.join(site_pods)}")
    return "\n".join(lines) + "\n"


def _nominal(t: Tenant, model_of: dict[str, str]) -> dict[str, int]:
    per_model: dict[str, int] = defaultdict(int)
    for q in t.quotas:
        per_model[model_of[q.gpu_class]] += q.nominal
    return dict(per_model)


def _subtree_gpus(t: Tenant) -> int:
    """Nominal GPUs of a tenant's subtree: its own quota of a class it declares (which
    holds its children's), else its children's."""
    return sum(_subtree_by_class(t).values())


def _subtree_by_class(t: Tenant) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for child in t.children:
        for cls, n in _subtree_by_class(child).items():
            out[cls] += n
    for q in t.quotas:
        out[q.gpu_class] = q.nominal
    return dict(out)


# slurmdbd refuses a typed TRES (gres/gpu:gb200) it has not learnt from a slurmctld whose
# AccountingStorageTRES names it; the total is set with the account, and each per-model
# limit only where slurmdbd knows the type, with a warning where it does not.
TYPED_TRES_SH: Final = """\
KNOWN_TRES=$(sacctmgr -n -P list tres format=Type,Name)
grp_typed() {  # grp_typed ACCOUNT MODEL=N...: the per-model GrpTRES slurmdbd knows
  account=$1; shift
  for kv in "$@"; do
    if printf '%s\\n' "$KNOWN_TRES" | grep -qx "gres|gpu:${kv%%=*}"; then
      sacctmgr -i modify account "$account" set GrpTRES="gres/gpu:$kv" >/dev/null
    else
      echo "accounts.sh: $account: slurmdbd knows no gres/gpu:${kv%%=*} yet (start slurmctld" \\
        "with this export's AccountingStorageTRES first); only the total is set" >&2
    fi
  done
}"""


def accounts_sh(fleet: Fleet, groups: list[GroupLayout]) -> str:
    """sacctmgr commands: the tenant tree as accounts, GrpTRES from nominal quotas."""
    from aifactory.fleet.topology import compile_topology  # noqa: PLC0415
    from aifactory.scheduler.quota import QuotaBook  # noqa: PLC0415

    model_of = {g.group.flavor: g.group.model for g in groups}
    topo = compile_topology(fleet)
    book = QuotaBook(fleet, topo.classes)
    lines = [
        "#!/bin/sh",
        f"# aifactory export of fleet '{fleet.name}': the tenant tree as Slurm accounts",
        "set -e",
        *TYPED_TRES_SH.splitlines(),
    ]
    for tenant, parent, _cohort in fleet.iter_tenants():
        name = dns_name(tenant.name, f"tenant '{tenant.name}'")
        nominal = _nominal(tenant, model_of)
        t = book.index[tenant.name]
        ceilings = {
            cls: book.ceiling(t, topo.class_index(cls))
            for cls in (q.gpu_class for q in tenant.quotas)
        }
        if ceilings:
            lines.append(
                "# twin ceiling (nominal + borrowable): "
                + ", ".join(f"{c}={n}" for c, n in ceilings.items())
            )
        opts = [f"parent={parent.name if parent else 'root'}"]
        opts.append(f"Fairshare={max(1, _subtree_gpus(tenant))}")
        # An account without GrpTRES is unlimited in Slurm, where a twin tenant without a
        # quota can use nothing: every tenant but a parent without quotas of its own gets
        # one (a parent's GrpTRES would cap its whole subtree).
        limited = bool(tenant.quotas or not tenant.children)
        if limited:
            opts.append(f"GrpTRES=gres/gpu={sum(nominal.values())}")
        # A display name is free text: quoted for the shell, one line.
        desc = shlex.quote(" ".join((tenant.display_name or tenant.name).split()))
        lines.append(f"sacctmgr -i add account {name} {' '.join(opts)} Description={desc}")
        if limited and nominal:
            lines.append(f"grp_typed {name} " + " ".join(f"{m}={n}" for m, n in nominal.items()))
    return "\n".join(lines) + "\n"


def write_slurm(
    fleet: Fleet, out_dir: str | Path, *, partitions: Partitions = "class", plugin: str = "block"
) -> list[str]:
    """Write the Slurm files into ``out_dir``; returns their names. ``plugin`` (block or
    tree) is the one slurm.conf selects and topology.conf holds."""
    if plugin not in {"block", "tree"}:
        msg = f"--topology: '{plugin}' is not block or tree"
        raise ExportError(msg)
    groups = layout(fleet)
    root = dns_name(fleet.name, "name")
    block, tree = block_conf(groups), tree_conf(groups, root)
    files = {
        "slurm.conf": slurm_conf(fleet, groups, partitions, plugin),
        "gres.conf": gres_conf(groups),
        "topology.conf": block if plugin == "block" else tree,
        f"topology.{'tree' if plugin == 'block' else 'block'}.conf": tree
        if plugin == "block"
        else block,
        "accounts.sh": accounts_sh(fleet, groups),
        "NOTES.md": SLURM_NOTE.format(fleet=fleet.name, root=root),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return list(files)
