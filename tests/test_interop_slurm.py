"""`aifactory export slurm`: the files, parsed and counted against the fleet.

Counted here for every bundled fleet: nodes, GPUs per model and class, NVLink domains as
blocks, pods and sites as switches, the account tree and its GrpTRES. Whether a real Slurm
loads them is tests/test_interop_slurm_real.py (topology/tree: Debian's Slurm 22.05 has no
topology/block, so the block file is checked only here, by parsing).
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import compile_topology, load_fleet
from aifactory.interop.hostlist import HostlistError, compress, expand
from aifactory.interop.slurm_export import write_slurm
from interop_support import small_fleet


def params(line: str) -> dict[str, str]:
    """``Key=value Key=value`` of one Slurm config line."""
    return dict(tok.split("=", 1) for tok in shlex.split(line) if "=" in tok)


def lines(path: Path, key: str) -> list[dict[str, str]]:
    return [params(x) for x in path.read_text().splitlines() if x.startswith(f"{key}=")]


@pytest.mark.parametrize("name", ["demo", "korea-2025", "philly-2017-vc", "small"])
def test_files_hold_the_fleet(name: str, tmp_path: Path) -> None:
    fleet = small_fleet() if name == "small" else load_fleet(name)
    topo = compile_topology(fleet)
    write_slurm(fleet, tmp_path)
    nodes = lines(tmp_path / "slurm.conf", "NodeName")
    names: list[str] = []
    gpus_by_model: Counter[str] = Counter()
    gpus_by_class: Counter[str] = Counter()
    for n in nodes:
        members = expand(n["NodeName"])
        names += members
        _, model, count = n["Gres"].split(":")
        gpus_by_model[model] += int(count) * len(members)
        cls = next(f for f in n["Features"].split(",") if f.startswith("class_"))
        gpus_by_class[cls.removeprefix("class_")] += int(count) * len(members)
    assert len(names) == len(set(names)) == topo.n_nodes
    assert dict(gpus_by_class) == topo.class_capacity()
    models = Counter()
    for cls, model in zip(topo.classes, topo.class_model, strict=True):
        models[model.id] += topo.class_capacity()[cls]
    assert gpus_by_model == models

    parts = lines(tmp_path / "slurm.conf", "PartitionName")
    assert {p["PartitionName"] for p in parts} == set(topo.classes)
    assert sorted(n for p in parts for n in expand(p["Nodes"])) == sorted(names)

    gres = lines(tmp_path / "gres.conf", "NodeName")
    assert sorted(n for g in gres for n in expand(g["NodeName"])) == sorted(names)

    blocks = lines(tmp_path / "topology.conf", "BlockName")
    multi = [int(n) for n in topo.domain_nodes if n > 1]
    assert len(blocks) == len(multi), "one block per NVLink domain of more than one node"
    assert sorted(len(expand(b["Nodes"])) for b in blocks) == sorted(multi)

    switches = {s["SwitchName"]: s for s in lines(tmp_path / "topology.tree.conf", "SwitchName")}
    leaves = [s for s in switches.values() if "Nodes" in s]
    assert len(leaves) == len(topo.pods)
    assert sorted(n for s in leaves for n in expand(s["Nodes"])) == sorted(names)
    assert set(expand(switches[fleet.name]["Switches"])) == set(topo.sites)


def test_accounts_are_the_tenant_tree(tmp_path: Path) -> None:
    fleet = load_fleet("korea-2025")
    write_slurm(fleet, tmp_path)
    script = (tmp_path / "accounts.sh").read_text().splitlines()
    adds = [shlex.split(x) for x in script if x.startswith("sacctmgr")]
    accounts = {a[4]: params(" ".join(shlex.quote(t) for t in a[5:])) for a in adds}
    typed = {
        t[1]: dict(kv.split("=") for kv in t[2:])
        for t in (shlex.split(x) for x in script if x.startswith("grp_typed "))
    }
    tenants = list(fleet.iter_tenants())
    assert set(accounts) == {t.name for t, _, _ in tenants}
    for tenant, parent, _ in tenants:
        acct = accounts[tenant.name]
        assert acct["parent"] == (parent.name if parent else "root")
        nominal = sum(q.nominal for q in tenant.quotas)
        if tenant.quotas or not tenant.children:
            assert acct["GrpTRES"] == f"gres/gpu={nominal}"
            per_model = Counter()
            for q in tenant.quotas:
                per_model["h100" if q.gpu_class == "h100-edge" else q.gpu_class] += q.nominal
            assert {m: int(n) for m, n in typed.get(tenant.name, {}).items()} == dict(per_model)
        else:
            assert "GrpTRES" not in acct, "a parent's GrpTRES would cap its subtree"
        assert int(acct["Fairshare"]) >= 1
    assert int(accounts["government"]["Fairshare"]) == 50_000, "a parent's share is its subtree's"


def test_a_display_name_cannot_reach_the_shell(tmp_path: Path) -> None:
    raw = small_fleet().model_dump(exclude_none=True)
    raw["tenants"][0]["display_name"] = "x'; rm -rf / #\nnext"
    from aifactory.fleet import parse_fleet  # noqa: PLC0415

    write_slurm(parse_fleet(raw), tmp_path)
    line = next(x for x in (tmp_path / "accounts.sh").read_text().splitlines() if " lab " in x)
    assert shlex.split(line)[-1] == "Description=x'; rm -rf / # next"


def test_hostlists_round_trip() -> None:
    names = [f"n-{i:03d}" for i in [*range(18), 20, 21, 99]] + ["x", "y7", "y8"]
    assert expand(compress(names)) == names
    assert expand("a[1-2]-[08-09],b") == ["a1-08", "a1-09", "a2-08", "a2-09", "b"]
    for bad in ("a[1-", "a]", "a[2-1]", "a[x]", "a[0-99999999]"):
        with pytest.raises(HostlistError):
            expand(bad)


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app, ["export", "slurm", "demo", "--out", str(tmp_path), "--topology", "tree"]
    )
    assert ok.exit_code == 0, ok.output
    assert "TopologyPlugin=topology/tree" in (tmp_path / "slurm.conf").read_text()
    assert re.search(r"^SwitchName=", (tmp_path / "topology.conf").read_text(), re.M)
    site = runner.invoke(
        app, ["export", "slurm", "demo", "--out", str(tmp_path), "--partitions", "site"]
    )
    assert site.exit_code == 0
    parts = {p["PartitionName"] for p in lines(tmp_path / "slurm.conf", "PartitionName")}
    assert parts == {"seoul", "busan"}
    for args in (["--topology", "torus"], ["--partitions", "rack"]):
        bad = runner.invoke(app, ["export", "slurm", "demo", "--out", str(tmp_path), *args])
        assert bad.exit_code == 2
        assert "error:" in bad.output
