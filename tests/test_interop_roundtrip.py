"""Round trips: export a fleet, import it back, and the fleets agree on GPUs per tenant,
class, site and NVLink domain and on every quota the target can express; then the twin
gives the same per-job results on both for a one-day run.

What each target can express (docs/interop.md): Kueue holds nominal, borrowing and lending
limits, cohorts and (in an annotation) the tenant tree; Slurm holds the account tree and a
nominal GrpTRES, but no cohort, borrowing or lending. So the Slurm twin comparisons run on
fleets without their cohorts (what a Slurm cluster can mean), the Kueue ones on the fleets as
they are.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import Fleet, compile_topology, load_fleet, parse_fleet
from aifactory.fleet.errors import SpecError
from aifactory.interop.kueue_export import write_kueue
from aifactory.interop.kueue_import import import_kueue
from aifactory.interop.slurm_export import write_slurm
from aifactory.interop.slurm_import import import_slurm
from aifactory.twin.run import TwinSpec, run_twin
from aifactory.workload.synth.core import synthesize
from interop_support import small_fleet

DAY_S = 86_400.0


def gpus_by(fleet: Fleet) -> dict[str, Counter[Any]]:
    """GPUs per owner, class and site, and the multiset of NVLink domains."""
    t = compile_topology(fleet)
    out: dict[str, Counter[Any]] = {k: Counter() for k in ("tenant", "class", "site", "domain")}
    for d in range(t.n_domains):
        gpus = int(t.domain_gpus[d])
        pod = int(t.domain_pod[d])
        out["tenant"][t.owners[t.domain_owner[d]]] += gpus
        out["class"][t.classes[t.domain_class[d]]] += gpus
        out["site"][t.sites[t.pod_site[pod]]] += gpus
        key = (t.pods[pod], t.classes[t.domain_class[d]], t.owners[t.domain_owner[d]])
        out["domain"][(*key, int(t.domain_nodes[d]), gpus)] += 1
    return out


def quotas(fleet: Fleet, target: str) -> dict[str, Any]:
    """Every quota ``target`` can express, per tenant (a parent's GrpTRES caps its
    subtree in Slurm, as a parent's nominal quota does here)."""
    out = {}
    for tenant, parent, cohort in fleet.iter_tenants():
        per_class: dict[str, Any] = {}
        for q in tenant.quotas:
            if target == "slurm":
                per_class[q.gpu_class] = q.nominal
            elif cohort is None:  # without a cohort the limits mean nothing, in both
                per_class[q.gpu_class] = (q.nominal,)
            else:
                per_class[q.gpu_class] = (q.nominal, q.borrowing_limit, q.lending_limit)
        out[tenant.name] = (
            parent.name if parent else None,
            cohort if target == "kueue" else None,
            per_class,
        )
    return out


def assoc_from(accounts_sh: Path, out: Path) -> Path:
    """What `sacctmgr show assoc -P format=Account,User,ParentName,GrpTRES` prints once
    accounts.sh ran (Slurm's own root account first)."""
    accounts: dict[str, list[str]] = {}
    for line in accounts_sh.read_text().splitlines():
        tok = shlex.split(line) if line.startswith(("sacctmgr", "grp_typed ")) else []
        if line.startswith("sacctmgr"):
            kv = dict(t.split("=", 1) for t in tok[5:] if "=" in t)
            accounts[tok[4]] = [kv["parent"], *filter(None, [kv.get("GrpTRES")])]
        elif line.startswith("grp_typed "):  # what it sets where slurmdbd knows the types
            accounts[tok[1]] += [f"gres/gpu:{kv}" for kv in tok[2:]]
    rows = ["Account|User|Par Name|GrpTRES", "root|||"]
    rows += [f"{a}||{v[0]}|{','.join(v[1:])}" for a, v in accounts.items()]
    out.write_text("\n".join(rows) + "\n")
    return out


def via_kueue(fleet: Fleet, tmp: Path) -> Fleet:
    write_kueue(fleet, tmp)
    return import_kueue([tmp / "kueue.yaml"], tmp / "nodes.json")


def via_slurm(fleet: Fleet, tmp: Path) -> Fleet:
    write_slurm(fleet, tmp)
    return import_slurm(
        tmp / "slurm.conf",
        gres=tmp / "gres.conf",
        topology=[tmp / "topology.conf", tmp / "topology.tree.conf"],
        assoc=assoc_from(tmp / "accounts.sh", tmp / "assoc.txt"),
    )


def without_cohorts(fleet: Fleet) -> Fleet:
    raw = fleet.model_dump(exclude_none=True)

    def strip(ts: list[dict[str, Any]]) -> None:
        for t in ts:
            t.pop("cohort", None)
            strip(t.get("children", []))

    strip(raw["tenants"])
    return parse_fleet(raw)


@pytest.mark.parametrize("target", ["kueue", "slurm"])
@pytest.mark.parametrize("name", ["korea-2025", "demo", "philly-2017-vc", "small"])
def test_fleets_agree(target: str, name: str, tmp_path: Path) -> None:
    fleet = small_fleet() if name == "small" else load_fleet(name)
    back = via_kueue(fleet, tmp_path) if target == "kueue" else via_slurm(fleet, tmp_path)
    assert back.name == fleet.name or target == "slurm"
    assert gpus_by(back) == gpus_by(fleet)
    assert quotas(back, target) == quotas(fleet, target)
    assert any("assumption" in s.source for s in back.sites), "site figures are marked"


def without_links(fleet: Fleet) -> Fleet:
    """The fleet as Kueue and Slurm can carry it: the links between sites are neither's
    objects (both exports say so), and since issue #20 the twin reads them (staging,
    spanning), so the original is compared without them."""
    raw = fleet.model_dump(exclude_none=True)
    raw.pop("links", None)
    return parse_fleet(raw)


def same_run(a: Fleet, b: Fleet, load: float) -> dict[str, Any]:
    """Run the twin one day on both fleets with one workload; per-job results must match."""
    assert not b.links, "an import has no links to compare"
    a = without_links(a)
    table = synthesize(a, 1.0, load, seed=11)
    spec = TwinSpec(fleet=a.name, trace="", until_s=DAY_S)
    ra, rb = run_twin(spec, table=table, fleet=a), run_twin(spec, table=table, fleet=b)
    assert ra.jobs_table().equals(rb.jobs_table())
    return ra.summary


# korea-2025 at half load: a national day (~37,000 jobs); demo near saturation, where its
# cohort borrows and reclaims (preemptions), which korea's private factories never do.
DAYS = [("korea-2025", 0.5), ("demo", 0.9)]


@pytest.mark.parametrize(("name", "load"), DAYS)
def test_twin_gives_the_same_results_through_kueue(name: str, load: float, tmp_path: Path) -> None:
    fleet = load_fleet(name)
    summary = same_run(fleet, via_kueue(fleet, tmp_path), load)
    assert summary["completed"] > 1000, "a real day: thousands of jobs end"
    if name == "demo":
        assert summary["preemptions"] > 0, "borrowing and reclaim are exercised"


@pytest.mark.parametrize(("name", "load"), DAYS)
def test_twin_gives_the_same_results_through_slurm(name: str, load: float, tmp_path: Path) -> None:
    fleet = without_cohorts(load_fleet(name))
    summary = same_run(fleet, via_slurm(fleet, tmp_path), load)
    assert summary["completed"] > 1000


def test_the_comparison_can_fail(tmp_path: Path) -> None:
    """A changed quota changes the agreement and the twin's results: the checks can fail."""
    demo = load_fleet("demo")
    raw = demo.model_dump(exclude_none=True)
    raw["tenants"][0]["quotas"][0]["nominal"] = 216
    changed = parse_fleet(raw)
    assert quotas(changed, "kueue") != quotas(demo, "kueue")
    table = synthesize(demo, 1.0, 0.9, seed=11)
    spec = TwinSpec(fleet="demo", trace="", until_s=DAY_S)
    assert (
        not run_twin(spec, table=table, fleet=demo)
        .jobs_table()
        .equals(run_twin(spec, table=table, fleet=changed).jobs_table())
    )


def test_hostile_inputs_are_clear_errors(tmp_path: Path) -> None:
    write_kueue(load_fleet("demo"), tmp_path)
    text = (tmp_path / "kueue.yaml").read_text().replace("nominalQuota: 288", "nominalQuota: 2e9")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SpecError, match="nominalQuota: '2e9' is not a whole number"):
        import_kueue([tmp_path / "bad.yaml"], tmp_path / "nodes.json")
    (tmp_path / "slurm.conf").write_text("NodeName=n[0-3 Gres=gpu:h100:8\n")
    with pytest.raises(SpecError, match="line 1"):
        import_slurm(tmp_path / "slurm.conf")
    (tmp_path / "slurm.conf").write_text("NodeName=n[0-1] Gres=gpu:8\n")
    with pytest.raises(SpecError, match="--gpu-model"):
        import_slurm(tmp_path / "slurm.conf")
    fleet = import_slurm(tmp_path / "slurm.conf", gpu_model="h100")
    assert compile_topology(fleet).gpus_total == 16
    assert any("--gpu-model" in n for n in fleet.notes), "the assumption is stated"


def test_cli_import_both(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["export", "kueue", "demo", "-o", str(tmp_path / "k")]).exit_code == 0
    assert runner.invoke(app, ["export", "slurm", "demo", "-o", str(tmp_path / "s")]).exit_code == 0
    k = runner.invoke(
        app,
        ["import", "kueue", str(tmp_path / "k/kueue.yaml"),
         "--nodes", str(tmp_path / "k/nodes.json"), "--out", str(tmp_path / "k.yaml")],
    )  # fmt: skip
    assert k.exit_code == 0, k.output
    assert gpus_by(load_fleet(tmp_path / "k.yaml")) == gpus_by(load_fleet("demo"))
    s = runner.invoke(
        app,
        ["import", "slurm", "--conf", str(tmp_path / "s/slurm.conf"), "--topology",
         str(tmp_path / "s/topology.conf"), "--out", str(tmp_path / "s.yaml")],
    )  # fmt: skip
    assert s.exit_code == 0, s.output
    assert compile_topology(load_fleet(tmp_path / "s.yaml")).gpus_total == 1008
    bad = runner.invoke(
        app, ["import", "slurm", "--conf", str(tmp_path / "nope"), "--out", "x.yaml"]
    )
    assert bad.exit_code == 2
    assert "file not found" in bad.output
