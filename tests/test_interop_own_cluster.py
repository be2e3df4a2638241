"""A user's own cluster: the twin built from the test Slurm's own configuration only.

`aifactory import slurm` reads the local Slurm's slurm.conf and gres.conf (those of
scripts/slurm-up.sh: two nodes of 8 untyped GPUs, so --gpu-model names them) and its real
`sacctmgr show assoc -P` output; a seeded multi-node stream runs on that Slurm, its sacct
history is replayed in the twin on the imported fleet, and the twin must start the jobs in
Slurm's order within the same bounds as tests/test_twin_vs_slurm.py holds the hand-written
fleet slurm-local to. Nothing of slurm-local is used: the fleet comes from the cluster.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import compile_topology, load_fleet, parse_fleet
from aifactory.interop.slurm_export import write_slurm
from aifactory.interop.slurm_import import import_slurm
from aifactory.service.executors.slurm import SlurmExecutor
from interop_support import small_raw
from test_twin_vs_slurm import SECOND, compare_on, multi_node_stream, stream_sacct

REPO = Path(__file__).resolve().parents[1]
CONF = Path("/etc/slurm")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("bench.bench_twin_vs_slurm")


@pytest.fixture(scope="module")
def imported(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet file `aifactory import slurm` makes of the running local Slurm."""
    why = bench.ensure_slurm()
    if why is not None and "CANNOT INSTALL" in why:
        pytest.skip(f"Slurm cannot be installed here: {why}")
    assert why is None, f"scripts/slurm-up.sh failed: {why}"
    tmp = tmp_path_factory.mktemp("own-cluster")
    assoc = subprocess.run(
        ["sacctmgr", "-n", "show", "assoc", "-P", "format=Account,User,ParentName,GrpTRES"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    (tmp / "assoc.txt").write_text("Account|User|ParentName|GrpTRES\n" + assoc)
    fleet = import_slurm(
        CONF / "slurm.conf", gres=CONF / "gres.conf", assoc=tmp / "assoc.txt", gpu_model="h100"
    )
    path = tmp / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet.model_dump(mode="json", exclude_none=True)))
    return path


@pytest.mark.slurm
def test_the_imported_fleet_is_the_cluster(imported: Path) -> None:
    fleet = load_fleet(imported)
    topo = compile_topology(fleet)
    nodes = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N %G"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    rows = [r.split() for r in nodes if r.strip()]
    assert topo.n_nodes == len({r[0] for r in rows})
    assert topo.gpus_total == sum(int(r[1].rsplit(":", 1)[1]) for r in rows)
    names = [n for _, _, g in fleet.iter_groups() for n in g.slurm_nodes or []]
    assert sorted(names) == sorted({r[0] for r in rows}), "the service can submit to them"
    assert any("assumption" in n for n in fleet.notes)


@pytest.mark.slurm
def test_twin_on_the_imported_fleet_matches_slurm(bench: ModuleType, imported: Path) -> None:
    sacct = stream_sacct(bench, multi_node_stream(bench, seed=13, n=10), SlurmExecutor())
    cmp = compare_on(bench, sacct, imported)
    assert len(cmp.raw) == 10
    order_twin = bench.Comparison.start_order(cmp.raw, by_twin=True)
    assert order_twin == bench.Comparison.start_order(cmp.raw, by_twin=False)
    handoffs = max(cmp.handoff_s, SECOND)
    for i, d in enumerate(sorted(cmp.raw, key=lambda d: d.slurm_start_s), start=1):
        assert d.twin_start_s <= d.slurm_start_s + SECOND, d
        assert d.slurm_start_s - d.twin_start_s <= i * (handoffs + SECOND), d
    worst = bench.Comparison.worst(cmp.modelled)
    print(f"own cluster: {len(cmp.raw)} jobs, hand-off {cmp.handoff_s:.2f} s, max {worst:.2f} s")
    assert worst <= bench.TARGET_MAX_DIFF_S, [d.diff_s for d in cmp.modelled]


@pytest.mark.slurm
def test_the_readme_two_commands(imported: Path, tmp_path: Path) -> None:
    """README's path: `import slurm`, then `simulate` the cluster's own sacct history."""
    fields = (
        "JobID,User,Account,Partition,Submit,Start,End,Elapsed,State,AllocTRES,ReqTRES,Timelimit"
    )
    sacct = subprocess.run(
        ["sacct", "-a", "-P", "-X", "-S", "2020-01-01", f"--format={fields}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "history.sacct").write_text(sacct)
    rows = [r for r in sacct.splitlines()[1:] if r.strip()]
    if not rows:
        pytest.skip("this Slurm has no job history yet")
    runner = CliRunner()
    imp = runner.invoke(
        app,
        ["import", "slurm", "--conf", str(CONF / "slurm.conf"), "--gres", str(CONF / "gres.conf"),
         "--assoc", str(imported.parent / "assoc.txt"), "--gpu-model", "h100",
         "--out", str(tmp_path / "my-cluster.yaml")],
    )  # fmt: skip
    assert imp.exit_code == 0, imp.output
    sim = runner.invoke(
        app,
        ["simulate", "--fleet", str(tmp_path / "my-cluster.yaml"), "--trace",
         str(tmp_path / "history.sacct"), "--format", "sacct", "--json"],
    )  # fmt: skip
    assert sim.exit_code == 0, sim.output
    summary = json.loads(sim.stdout)
    assert summary["jobs"] > 0
    assert summary["jobs"] == summary["completed"] + summary["unfinished"]


CLUSTER = "aifx-export"


def _renamed(raw: dict[str, object]) -> dict[str, object]:
    """The small fleet with every tenant called aifx-<name>: no account of anyone else's is
    touched in the shared accounting database."""
    text = yaml.safe_dump(raw)
    for name in ("team-b", "lab", "org"):
        text = text.replace(f": {name}\n", f": aifx-{name}\n")
    out: dict[str, object] = yaml.safe_load(text)
    return out


@pytest.mark.slurm
def test_accounts_sh_runs_in_the_real_sacctmgr(imported: Path, tmp_path: Path) -> None:
    """The export's accounts.sh against the test Slurm's slurmdbd, under a cluster of its own
    (removed afterwards), then `import slurm --assoc` of what sacctmgr shows. This slurmdbd
    knows only the untyped gres/gpu (its slurmctld's AccountingStorageTRES), so the
    per-model limits are refused with the script's warning and the totals are compared."""
    fleet = parse_fleet(_renamed(small_raw()))
    write_slurm(fleet, tmp_path)
    conf = tmp_path / "cluster.conf"
    text = (CONF / "slurm.conf").read_text()
    conf.write_text(re.sub(r"(?m)^ClusterName=.*$", f"ClusterName={CLUSTER}", text))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    tenants = [t.name for t, _, _ in fleet.iter_tenants()]

    def sacctmgr(*args: str) -> str:
        return subprocess.run(
            ["sacctmgr", *args], env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout

    try:
        sacctmgr("-i", "add", "cluster", CLUSTER)
        run = subprocess.run(
            ["sh", str(tmp_path / "accounts.sh")], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        if "gres|gpu:gb200" not in sacctmgr("-n", "-P", "list", "tres", "format=Type,Name"):
            assert "knows no gres/gpu:gb200" in run.stderr, "the refused limit is said"
        shown = sacctmgr(
            "-n",
            "-P",
            "show",
            "assoc",
            f"cluster={CLUSTER}",
            "format=Account,User,ParentName,GrpTRES",
        )
        (tmp_path / "assoc.txt").write_text("Account|User|ParentName|GrpTRES\n" + shown)
        back = import_slurm(tmp_path / "slurm.conf", assoc=tmp_path / "assoc.txt")
        want = {
            t.name: (p.name if p else None, sum(q.nominal for q in t.quotas))
            for t, p, _ in fleet.iter_tenants()
        }
        got = {
            t.name: (p.name if p else None, sum(q.nominal for q in t.quotas))
            for t, p, _ in back.iter_tenants()
        }
        assert got == want
    finally:
        for name in reversed(tenants):  # children before parents
            subprocess.run(
                ["sacctmgr", "-i", "delete", "account", name],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
        subprocess.run(
            ["sacctmgr", "-i", "delete", "cluster", CLUSTER],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
