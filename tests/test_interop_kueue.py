"""`aifactory export kueue`: every object validates against Kueue's own CRD schemas.

The CRDs are read from ../shared/schemas/kueue/ (never copied into the repository). Their
``openAPIV3Schema`` is checked with jsonschema, made strict the way the API server is
effectively strict (it prunes unknown fields, which would silently drop a misspelt one, so
here an unknown field is an error). The CEL rules that jsonschema cannot evaluate and that
our objects could break are checked by hand below (``cel_problems``).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import load_fleet
from aifactory.fleet.loader import parse_fleet
from aifactory.interop.kueue_export import (
    GPU,
    TOPOLOGY_LEVELS,
    kueue_objects,
    node_objects,
    twin_preemption,
)
from aifactory.interop.layout import DNS_NAME, ExportError

KINDS = {
    "ClusterQueue": "clusterqueues",
    "Cohort": "cohorts",
    "LocalQueue": "localqueues",
    "ResourceFlavor": "resourceflavors",
    "Topology": "topologies",
    "WorkloadPriorityClass": "workloadpriorityclasses",
}


def _strict(schema: Any) -> Any:
    """Unknown fields are errors wherever the schema lists the known ones."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validators(shared_dir: Path) -> dict[str, jsonschema.Draft7Validator]:
    out = {}
    for kind, plural in KINDS.items():
        crd = yaml.safe_load(
            (shared_dir / "schemas/kueue" / f"kueue.x-k8s.io_{plural}.yaml").read_text()
        )
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
        assert version["served"], f"{kind}: v1beta2 is not served by these CRDs"
        schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
        out[kind] = jsonschema.Draft7Validator(schema)
    return out


def cel_problems(obj: dict[str, Any]) -> list[str]:
    """The CRDs' x-kubernetes-validations rules that apply to what the export writes."""
    spec = obj.get("spec", {})
    problems = []
    if obj["kind"] in {"ClusterQueue", "Cohort"}:
        for rg in spec.get("resourceGroups", []):
            for f in rg["flavors"]:
                if len(f["resources"]) != len(rg["coveredResources"]):
                    problems.append("flavors must have as many resources as coveredResources")
                no_cohort = obj["kind"] == "ClusterQueue" and "cohortName" not in spec
                if no_cohort and any("borrowingLimit" in r for r in f["resources"]):
                    problems.append("borrowingLimit must be nil when cohort is empty")
    if obj["kind"] == "ClusterQueue":
        p = spec.get("preemption", {})
        if (
            p.get("reclaimWithinCohort") == "Never"
            and p.get("borrowWithinCohort", {}).get("policy", "Never") != "Never"
        ):
            problems.append("reclaimWithinCohort=Never and borrowWithinCohort.policy!=Never")
    if obj["kind"] == "Topology":
        labels = [lv["nodeLabel"] for lv in spec["levels"]]
        if len(set(labels)) != len(labels):
            problems.append("levels must be unique")
        if "kubernetes.io/hostname" in labels and labels[-1] != "kubernetes.io/hostname":
            problems.append("kubernetes.io/hostname only at the lowest level")
    if obj["kind"] == "ResourceFlavor" and "topologyName" in spec and not spec.get("nodeLabels"):
        problems.append("at least one nodeLabel is required when topology is set")
    if not DNS_NAME.match(obj["metadata"]["name"]):
        problems.append(f"metadata.name '{obj['metadata']['name']}' is not a DNS-1123 name")
    return problems


@pytest.mark.parametrize("fleet", ["demo", "korea-2025", "philly-2017-vc", "slurm-local"])
def test_every_object_validates(
    fleet: str, validators: dict[str, jsonschema.Draft7Validator]
) -> None:
    spec = load_fleet(fleet)
    objs = kueue_objects(spec)
    kinds = {o["kind"] for o in objs}
    has_cohort = any(c for _, _, c in spec.iter_tenants())
    expected = set(KINDS) | {"Namespace"}
    assert kinds == (expected if has_cohort else expected - {"Cohort"})
    for obj in objs:
        if obj["kind"] == "Namespace":
            continue
        errors = [e.message for e in validators[obj["kind"]].iter_errors(obj)]
        errors += cel_problems(obj)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {errors}"


def test_a_misspelt_field_is_refused(validators: dict[str, jsonschema.Draft7Validator]) -> None:
    """The strict validator can fail: a typo the API server would silently prune."""
    cq = next(o for o in kueue_objects(load_fleet("demo")) if o["kind"] == "ClusterQueue")
    bad = copy.deepcopy(cq)
    bad["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuotas"] = 1
    assert list(validators["ClusterQueue"].iter_errors(bad))
    bad = copy.deepcopy(cq)
    bad["spec"]["preemption"]["reclaimWithinCohort"] = "Sometimes"
    assert list(validators["ClusterQueue"].iter_errors(bad))


def _by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_quotas_cohorts_and_queues_are_the_fleets() -> None:
    fleet = load_fleet("korea-2025")
    objs = kueue_objects(fleet)
    cqs = _by_kind(objs, "ClusterQueue")
    tenants = list(fleet.iter_tenants())
    assert set(cqs) == {t.name for t, _, _ in tenants}
    for tenant, parent, cohort in tenants:
        cq = cqs[tenant.name]
        assert cq["spec"].get("cohortName") == cohort
        assert cq["metadata"]["annotations"].get("aifactory.io/parent") == (
            parent.name if parent else None
        )
        got = {
            f["name"]: f["resources"][0]
            for rg in cq["spec"].get("resourceGroups", [])
            for f in rg["flavors"]
        }
        assert set(got) == {q.gpu_class for q in tenant.quotas}
        for q in tenant.quotas:
            r = got[q.gpu_class]
            assert r["name"] == GPU
            assert r["nominalQuota"] == q.nominal
            in_cohort = cohort is not None
            assert r.get("borrowingLimit") == (q.borrowing_limit if in_cohort else None)
            assert r.get("lendingLimit") == (q.lending_limit if in_cohort else None)
    assert set(_by_kind(objs, "Cohort")) == {c for _, _, c in tenants if c}
    lqs = [o for o in objs if o["kind"] == "LocalQueue"]
    assert {(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in lqs} == {
        (n, n) for n in cqs
    }
    wpcs = _by_kind(objs, "WorkloadPriorityClass")
    assert wpcs["high"]["value"] > wpcs["normal"]["value"] > wpcs["low"]["value"]


def test_preemption_is_the_twins() -> None:
    for cq in _by_kind(kueue_objects(load_fleet("demo")), "ClusterQueue").values():
        assert cq["spec"]["preemption"] == {
            "withinClusterQueue": "LowerPriority",
            "reclaimWithinCohort": "Any",
            "borrowWithinCohort": {"policy": "Never"},
        }
    assert twin_preemption(enabled=False) == {
        "withinClusterQueue": "Never",
        "reclaimWithinCohort": "Never",
        "borrowWithinCohort": {"policy": "Never"},
    }


def test_nodes_carry_the_topology() -> None:
    fleet = load_fleet("demo")
    nodes = list(node_objects(fleet))
    gpus = sum(int(n["status"]["capacity"][GPU]) for n in nodes)
    assert gpus == 1008
    assert all(set(TOPOLOGY_LEVELS) <= set(n["metadata"]["labels"]) for n in nodes)
    domains = {n["metadata"]["labels"]["aifactory.io/nvlink-domain"] for n in nodes}
    assert len(domains) == 6 + 36 + 36
    names = [n["metadata"]["name"] for n in nodes]
    assert len(set(names)) == len(names)
    for pod in ("seoul-nvl-", "seoul-hgx-", "busan-hgx-"):
        in_pod = [n for n in names if n.startswith(pod)]
        assert in_pod == sorted(in_pod), "within a pod, name order is the fleet's node order"


def test_a_name_kubernetes_refuses_is_a_clear_error() -> None:
    raw = yaml.safe_load(resources.files("aifactory.fleet.data").joinpath("demo.yaml").read_text())
    raw["tenants"][2]["name"] = "public-"
    fleet = parse_fleet(raw)
    with pytest.raises(ExportError, match="tenant 'public-'"):
        kueue_objects(fleet)


def test_cli_writes_the_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "kueue", "demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all((tmp_path / "kueue.yaml").read_text()))
    assert docs == kueue_objects(load_fleet("demo"))
    nodes = json.loads((tmp_path / "nodes.json").read_text())
    assert len(nodes["items"]) == 6 * 18 + 36 + 36
    bad = CliRunner().invoke(app, ["export", "kueue", "no-such-fleet", "--out", str(tmp_path)])
    assert bad.exit_code == 2
    assert "error:" in bad.output
    assert "Traceback" not in bad.output
