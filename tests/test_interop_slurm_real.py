"""The Slurm export loaded by a real Slurm: scripts/slurm-export-up.sh starts a second,
separate Slurm (its own config dir, ports and state; the default test Slurm of
scripts/slurm-up.sh is left alone) from `aifactory export slurm --topology tree` of the
small test fleet, and ``sinfo``, ``scontrol show node`` and ``scontrol show topology`` must
agree with the fleet's nodes, GPUs, classes, pods and sites.

Debian's Slurm 22.05 has no topology/block (Slurm >= 23.11), so the tree plugin is what
runs here; the block file is counted by parsing in tests/test_interop_slurm.py. Skipped
where Slurm cannot run (not root, not installed: the script exits 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.fleet import compile_topology
from aifactory.interop.hostlist import expand
from aifactory.interop.slurm_export import write_slurm
from interop_support import small_fleet

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-export-up.sh"
CONF = "/etc/aifactory-slurm-export/slurm.conf"


@pytest.fixture(scope="module")
def exported_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        pytest.skip("needs root and an installed Slurm (bash scripts/slurm-up.sh installs it)")
    out = tmp_path_factory.mktemp("slurm-export")
    write_slurm(small_fleet(), out, plugin="tree")
    up = subprocess.run(
        ["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=180, check=False
    )
    if up.returncode == 3:
        pytest.skip(f"Slurm cannot run here: {up.stderr.strip()}")
    try:
        assert up.returncode == 0, up.stderr
        yield {**os.environ, "SLURM_CONF": CONF}
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "--stop"], capture_output=True, timeout=60, check=False
        )


def _run(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_sinfo_and_scontrol_agree_with_the_fleet(exported_slurm: dict[str, str]) -> None:
    fleet = small_fleet()
    topo = compile_topology(fleet)
    rows = [
        r.split() for r in _run(exported_slurm, "sinfo", "-h", "-N", "-o", "%N %G %P").splitlines()
    ]
    assert len({r[0] for r in rows}) == topo.n_nodes
    by_class: Counter[str] = Counter()
    for line in _run(exported_slurm, "scontrol", "show", "node", "-o").splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        _, _model, count = fields["Gres"].split(":")
        cls = next(f for f in fields["AvailableFeatures"].split(",") if f.startswith("class_"))
        by_class[cls.removeprefix("class_")] += int(count)
        assert fields["State"].startswith("IDLE")
    assert dict(by_class) == topo.class_capacity()
    assert sum(by_class.values()) == topo.gpus_total


def test_scontrol_topology_is_pods_under_sites(exported_slurm: dict[str, str]) -> None:
    fleet = small_fleet()
    topo = compile_topology(fleet)
    switches = {}
    for line in _run(exported_slurm, "scontrol", "show", "topology").splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        switches[fields["SwitchName"]] = fields
    leaves = {n: s for n, s in switches.items() if s["Level"] == "0"}
    assert sorted(leaves) == sorted(p.replace("/", "-") for p in topo.pods)
    for pod, sw in leaves.items():
        nodes = expand(sw["Nodes"])
        pi = [p.replace("/", "-") for p in topo.pods].index(pod)
        domains = [d for d in range(topo.n_domains) if topo.domain_pod[d] == pi]
        assert len(nodes) == sum(int(topo.domain_nodes[d]) for d in domains)
    sites = {n for n, s in switches.items() if s["Level"] == "1"}
    assert sites == set(topo.sites)
    root = switches[fleet.name]
    assert root["Level"] == "2"
    assert len(expand(root["Nodes"])) == topo.n_nodes
