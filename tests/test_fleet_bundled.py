"""The bundled fleets load, compile consistently, and match their sources.

Expected figures come from the sources themselves: ``../shared/docs/facts.md`` §1 for
korea-2025 (restated below, each with its line), and the Philly config files under
``../shared/traces/philly/cluster_config`` read at test time for the Philly fleets.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from aifactory.fleet import Fleet, bundled_fleets, compile_topology, fleet_summary, load_fleet
from aifactory.fleet.loader import group_gpus, models_of
from aifactory.fleet.spec import ASSUMPTION
from aifactory.fleet.summary import root_owner_map

BUNDLED = ["demo", "korea-2025", "philly-2017", "philly-2017-vc"]
ALL = bundled_fleets()  # the checks of every fleet also cover fleets added later

# facts.md §1: new Blackwell GPUs per owner ("up to" figures at their maximum).
KOREA_NEW = {"samsung": 50_000, "sk": 50_000, "hyundai": 50_000, "naver": 60_000}
KOREA_GOVERNMENT = 50_000
KOREA_NEW_TOTAL = 260_000
KOREA_EXISTING = 65_000  # "about 65,000" installed before
BLACKWELL = {"gb200", "b200"}
CONSORTIA = {
    "sovereign-lg",
    "sovereign-naver",
    "sovereign-skt",
    "sovereign-nc",
    "sovereign-upstage",
}


def owned_by_class(fleet: Fleet) -> dict[tuple[str, str], int]:
    """GPUs per (top-level owner, GPU class)."""
    models = models_of(fleet)
    roots = root_owner_map(fleet)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for _site, _pod, g in fleet.iter_groups():
        out[(roots[g.owner], g.flavor)] += group_gpus(g, models[g.model])
    return dict(out)


def outer_quotas(fleet: Fleet) -> list[tuple[str, str, int]]:
    """(tenant, GPU class, nominal) of every declared quota that no ancestor of the tenant
    also declares (a parent's quota of a class already holds its children's)."""
    above: dict[str, set[str]] = {}
    out: list[tuple[str, str, int]] = []
    for tenant, parent, _cohort in fleet.iter_tenants():
        covered = above[parent.name] if parent is not None else set()
        out.extend(
            (tenant.name, q.gpu_class, q.nominal)
            for q in tenant.quotas
            if q.gpu_class not in covered
        )
        above[tenant.name] = covered | {q.gpu_class for q in tenant.quotas}
    return out


def nominal_by_class(fleet: Fleet) -> dict[tuple[str, str], int]:
    """Nominal quota per (top-level tenant, GPU class), summed over the subtree."""
    roots = root_owner_map(fleet)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for name, cls, nominal in outer_quotas(fleet):
        out[(roots[name], cls)] += nominal
    return {k: v for k, v in out.items() if v}


def read_vcs(shared: Path) -> dict[str, int]:
    """philly_vc.csv: VC id -> number of 8-GPU nodes."""
    path = shared / "traces/philly/cluster_config/philly_vc.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["vc"]: int(row["node num"]) for row in csv.DictReader(fh)}


def largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` in proportion to ``weights``; leftovers to the largest remainders."""
    wsum = sum(weights.values())
    exact = {k: Fraction(total * w, wsum) for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    order = sorted(weights, key=lambda k: (-(exact[k] - out[k]), list(weights).index(k)))
    for k in order[: total - sum(out.values())]:
        out[k] += 1
    return out


# --- every bundled fleet ---------------------------------------------------------------------


def test_bundled_names() -> None:
    assert set(BUNDLED) <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_topology_arrays_are_consistent(name: str) -> None:
    fleet = load_fleet(name)
    topo = compile_topology(fleet)
    summary = fleet_summary(fleet)
    assert int(topo.node_gpus.sum()) == topo.gpus_total == summary["gpus_total"]
    assert int(topo.domain_gpus.sum()) == topo.gpus_total
    assert topo.n_domains == summary["nvlink_domains"]
    # Nodes of one domain are contiguous and cover 0..n_nodes-1 in order.
    ends = topo.domain_first_node + topo.domain_nodes
    assert topo.domain_first_node[0] == 0
    assert np.array_equal(topo.domain_first_node[1:], ends[:-1])
    assert ends[-1] == topo.n_nodes
    assert np.array_equal(topo.node_domain, np.repeat(np.arange(topo.n_domains), topo.domain_nodes))
    # Domains of one pod, and pods of one site, are contiguous index ranges.
    assert np.all(np.diff(topo.domain_pod) >= 0)
    assert np.all(np.diff(topo.pod_site) >= 0)
    # Per-node GPUs add up per domain.
    per_domain = np.bincount(topo.node_domain, weights=topo.node_gpus, minlength=topo.n_domains)
    assert np.array_equal(per_domain.astype(np.int64), topo.domain_gpus)
    # Class capacities agree with the spec's groups.
    expected: dict[str, int] = defaultdict(int)
    for (_owner, cls), n in owned_by_class(fleet).items():
        expected[cls] += n
    assert topo.class_capacity() == dict(expected)


@pytest.mark.parametrize("name", ALL)
def test_quotas_fit_capacity_and_power_fits_sites(name: str) -> None:
    fleet = load_fleet(name)
    capacity = compile_topology(fleet).class_capacity()
    nominal: dict[str, int] = defaultdict(int)
    for _name, cls, n in outer_quotas(fleet):
        nominal[cls] += n
    for cls, n in nominal.items():
        assert n <= capacity[cls], cls
    summary = fleet_summary(fleet)
    for site, peak in summary["power_mw_by_site"].items():
        assert peak <= summary["site_capacity_mw"][site], f"{name}/{site}: peak above capacity"


@pytest.mark.parametrize("name", ALL)
def test_every_figure_has_a_source_and_the_choices_are_noted(name: str) -> None:
    fleet = load_fleet(name)
    assert fleet.notes, "bundled fleets explain their assumptions in notes"
    assert fleet.default_tenant is not None
    for site in fleet.sites:
        assert site.source.strip()
    for _site, _pod, g in fleet.iter_groups():
        assert g.source.strip()
    for link in fleet.links:
        assert link.source.strip()
    uses_assumptions = any(ASSUMPTION in s.source for s in fleet.sites) or any(
        ASSUMPTION in g.source for _s, _p, g in fleet.iter_groups()
    )
    if uses_assumptions:
        assert any(n.startswith("assumption") for n in fleet.notes)


@pytest.mark.parametrize("name", BUNDLED)
def test_nvlink_domains_follow_the_catalogue(name: str) -> None:
    """A bundled group never overrides the domain size: NVL72 racks hold 72, servers 8 or 2."""
    fleet = load_fleet(name)
    models = models_of(fleet)
    for _site, _pod, g in fleet.iter_groups():
        model = models[g.model]
        assert g.nodes_per_domain is None
        assert g.gpus_per_node is None
        assert group_gpus(g, model) == g.domains * model.nvlink_domain_gpus


# --- korea-2025 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def korea() -> Fleet:
    return load_fleet("korea-2025")


def test_korea_new_gpus_match_the_announcement(korea: Fleet) -> None:
    owned = owned_by_class(korea)
    new: dict[str, int] = defaultdict(int)
    for (owner, cls), n in owned.items():
        if cls in BLACKWELL:
            new[owner] += n
    assert dict(new) == {**KOREA_NEW, "government": KOREA_GOVERNMENT}
    assert sum(new.values()) == KOREA_NEW_TOTAL


def test_korea_existing_pool(korea: Fleet) -> None:
    summary = fleet_summary(korea)
    assert summary["gpus_by_tenant"]["national-pool"] == KOREA_EXISTING
    assert summary["gpus_total"] == KOREA_NEW_TOTAL + KOREA_EXISTING
    pool_models = {
        g.model
        for _s, _p, g in korea.iter_groups()
        if root_owner_map(korea)[g.owner] == "national-pool"
    }
    assert pool_models <= {"h100", "h200", "a100-80g"}, "existing GPUs are Hopper/Ampere"


def test_korea_tenant_tree(korea: Fleet) -> None:
    """Other components address these tenants by name."""
    assert [t.name for t in korea.tenants] == [
        "samsung",
        "sk",
        "hyundai",
        "naver",
        "government",
        "national-pool",
    ]
    summary = fleet_summary(korea)
    assert set(summary["gpus_by_tenant"]) == {t.name for t in korea.tenants}
    tree = {t.name: t for t, _p, _c in korea.iter_tenants()}
    assert {c.name for c in tree["government"].children} == CONSORTIA
    assert {c.name for c in tree["national-pool"].children} == {"research", "ai-ran"}
    cohorts = {t.name: c for t, _p, c in korea.iter_tenants()}
    for name in CONSORTIA:
        assert cohorts[name] == "sovereign"
    # One national cohort: the private owners but Naver lend to the consortia and the pool,
    # and borrow nothing.
    assert cohorts["research"] == cohorts["ai-ran"] == "sovereign"
    assert cohorts["naver"] is None
    for owner in ("samsung", "sk", "hyundai"):
        assert cohorts[owner] == "sovereign"
        assert all(q.borrowing_limit == 0 for q in tree[owner].quotas)
    for owner in KOREA_NEW:
        assert not tree[owner].children
    assert korea.default_tenant == "research"


def test_korea_quotas_give_each_owner_its_hardware(korea: Fleet) -> None:
    assert nominal_by_class(korea) == owned_by_class(korea)


def test_korea_consortia_share_the_government_gpus(korea: Fleet) -> None:
    tree = {t.name: t for t, _p, _c in korea.iter_tenants()}
    totals = [sum(q.nominal for q in tree[c].quotas) for c in sorted(CONSORTIA)]
    assert sum(totals) == KOREA_GOVERNMENT
    assert len(set(totals)) == 1, "equal split (assumption noted in the file)"


def test_korea_has_projects_under_two_consortia(korea: Fleet) -> None:
    """LG's and SK Telecom's quotas are split among two projects each (the leaves where
    their jobs run), within the consortium's nominal of every class; the others are leaves."""
    tree = {t.name: t for t, _p, _c in korea.iter_tenants()}
    with_projects = {c for c in CONSORTIA if tree[c].children}
    assert with_projects == {"sovereign-lg", "sovereign-skt"}
    for c in with_projects:
        assert len(tree[c].children) == 2
        assert all(not k.children for k in tree[c].children)
        for q in tree[c].quotas:
            below = sum(
                kq.nominal
                for k in tree[c].children
                for kq in k.quotas
                if kq.gpu_class == q.gpu_class
            )
            assert 0 < below <= q.nominal, (c, q.gpu_class)


def test_korea_sites_are_joined_by_links(korea: Fleet) -> None:
    sites = {s.name for s in korea.sites}
    reach = {korea.sites[0].name}
    frontier = list(reach)
    while frontier:
        here = frontier.pop()
        for link in korea.links:
            for a, b in ((link.a, link.b), (link.b, link.a)):
                if a == here and b not in reach:
                    reach.add(b)
                    frontier.append(b)
    assert reach == sites


def test_korea_pods_are_of_realistic_size(korea: Fleet) -> None:
    models = models_of(korea)
    for site in korea.sites:
        for pod in site.pods:
            gpus = sum(group_gpus(g, models[g.model]) for g in pod.groups)
            assert gpus <= 16_384, f"{site.name}/{pod.name}: {gpus} GPUs on one fabric"


# --- philly-2017 -----------------------------------------------------------------------------


def test_philly_machines() -> None:
    """Trace README: 321 machines of 2 x 12 GB, 231 of 8 x 24 GB, 2,490 GPUs."""
    fleet = load_fleet("philly-2017")
    topo = compile_topology(fleet)
    assert topo.gpus_total == 2_490
    nodes = Counter(
        (topo.class_model[topo.domain_class[d]].id, int(topo.node_gpus[n]))
        for n, d in enumerate(topo.node_domain)
    )
    assert nodes == {("philly-12g", 2): 321, ("philly-24g", 8): 231}


def test_philly_machines_match_the_machine_list(shared_dir: Path) -> None:
    path = shared_dir / "traces/philly/cluster_config/cluster_machine_list"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    listed = Counter((int(r[1]), int(r[2].strip().removesuffix("GB"))) for r in rows if r)
    fleet = load_fleet("philly-2017")
    models = models_of(fleet)
    ours: Counter[tuple[int, int]] = Counter()
    for _s, _p, g in fleet.iter_groups():
        model = models[g.model]
        ours[(model.gpus_per_node, int(model.hbm_gb))] += g.domains
    assert ours == listed


def test_philly_vcs_keep_their_share(shared_dir: Path) -> None:
    vcs = read_vcs(shared_dir)
    fleet = load_fleet("philly-2017")
    capacity = compile_topology(fleet).class_capacity()
    quotas = {
        t.name: {q.gpu_class: q.nominal for q in t.quotas} for t, _p, _c in fleet.iter_tenants()
    }
    for cls, cap in capacity.items():
        expected = largest_remainder(cap, vcs)
        assert {vc: quotas[vc][cls] for vc in vcs} == expected, cls
    cohorts = {t.name: c for t, _p, c in fleet.iter_tenants() if t.quotas}
    assert set(cohorts.values()) == {"philly"}, "one cohort: idle GPUs are lent"


def test_philly_unknown_clusters_go_to_the_default_tenant(shared_dir: Path) -> None:
    vcs = read_vcs(shared_dir)
    with (shared_dir / "traces/philly/philly.csv").open(newline="", encoding="utf-8") as fh:
        clusters = {row["cluster"] for row in csv.DictReader(fh)}
    assert len(clusters) == 15
    unknown = clusters - set(vcs)
    assert len(unknown) == 4
    for name in ("philly-2017", "philly-2017-vc"):
        fleet = load_fleet(name)
        tenants = {t.name for t, _p, _c in fleet.iter_tenants()}
        assert set(vcs) <= tenants
        assert not unknown & tenants
        assert fleet.default_tenant == "philly-other"


# --- philly-2017-vc --------------------------------------------------------------------------


def test_philly_vc_partitions(shared_dir: Path) -> None:
    vcs = read_vcs(shared_dir)
    fleet = load_fleet("philly-2017-vc")
    topo = compile_topology(fleet)
    assert topo.gpus_total == 8 * sum(vcs.values()) == 2_816
    assert topo.class_capacity() == {f"vc-{vc}": 8 * n for vc, n in vcs.items()}
    assert {m.id for m in topo.class_model} == {"philly-24g"}
    tenants = {t.name: (t, c) for t, _p, c in fleet.iter_tenants()}
    for vc, nodes in vcs.items():
        tenant, _cohort = tenants[vc]
        assert [(q.gpu_class, q.nominal, q.borrowing_limit) for q in tenant.quotas] == [
            (f"vc-{vc}", 8 * nodes, 0)
        ]


def test_philly_vc_isolation(shared_dir: Path) -> None:
    """No VC shares a cohort with another VC; the default tenant borrows at most one node."""
    vcs = read_vcs(shared_dir)
    fleet = load_fleet("philly-2017-vc")
    members: dict[str, list[str]] = defaultdict(list)
    for t, _p, cohort in fleet.iter_tenants():
        if cohort is not None:
            members[cohort].append(t.name)
    for names in members.values():
        assert len(set(names) & set(vcs)) <= 1
    other = next(t for t, _p, _c in fleet.iter_tenants() if t.name == "philly-other")
    assert all(q.nominal == 0 for q in other.quotas)
    assert sum(q.borrowing_limit or 0 for q in other.quotas) == 8
    assert all(q.borrowing_limit is not None for q in other.quotas)


@pytest.mark.parametrize("name", [*ALL, "gpus"])
def test_bundled_yaml_reads_the_same_with_libyaml(name: str) -> None:
    """Bundled documents are parsed with libyaml's loader (fleet.loader.bundled_yaml): it
    must give exactly what PyYAML's pure-Python SafeLoader gives, types included."""
    import yaml  # noqa: PLC0415

    from aifactory.fleet.loader import bundled_yaml  # noqa: PLC0415

    path = Path(__file__).resolve().parents[1] / "src/aifactory/fleet/data" / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    pure = yaml.load(text, Loader=yaml.SafeLoader)
    fast = bundled_yaml(text)
    assert fast == pure
    assert repr(fast) == repr(pure)  # same types too (1 and 1.0 compare equal)
