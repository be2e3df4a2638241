"""The fleet spec and its loader: every bad input gets one exact ``path: problem`` message.

Each bad case is a small edit of one valid document (``good()``), so a case shows the one
thing that is wrong and the message a user sees for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from aifactory.fleet import (
    Fleet,
    Quota,
    SpecError,
    bundled_fleets,
    catalogue,
    load_fleet,
    parse_fleet,
)
from aifactory.fleet.errors import format_path

Doc = dict[str, Any]

_FIGURES = ("hbm_gb", "bf16_tflops", "busy_watts", "idle_watts", "nvlink_domain_gpus")


def good() -> Doc:
    """A valid two-site fleet: 16 B200 in s1, one 72-GPU GB200 rack in s2, one cohort."""
    return {
        "name": "t",
        "default_tenant": "a",
        "sites": [
            {
                "name": "s1",
                "region": "R1",
                "power_mw": 1.0,
                "pue": 1.2,
                "pods": [{"name": "p1", "groups": [{"model": "b200", "domains": 2, "owner": "a"}]}],
            },
            {
                "name": "s2",
                "region": "R2",
                "power_mw": 1.0,
                "pue": 1.2,
                "pods": [
                    {"name": "p1", "groups": [{"model": "gb200", "domains": 1, "owner": "b"}]}
                ],
            },
        ],
        "links": [{"a": "s1", "b": "s2", "gbps": 400, "latency_ms": 1.5}],
        "tenants": [
            {"name": "a", "cohort": "c", "quotas": [{"gpu_class": "b200", "nominal": 8}]},
            {
                "name": "b",
                "cohort": "c",
                "quotas": [{"gpu_class": "gb200", "nominal": 72}],
                "children": [{"name": "b1"}],
            },
        ],
    }


def group(d: Doc, site: int = 0, pod: int = 0, g: int = 0) -> Doc:
    """The domain group at ``sites[site].pods[pod].groups[g]``."""
    grp: Doc = d["sites"][site]["pods"][pod]["groups"][g]
    return grp


def model_doc(**changes: Any) -> Doc:
    """A valid extra GPU model for ``gpu_models``, with ``changes`` applied."""
    doc: Doc = {
        "id": "x1",
        "name": "X1",
        "hbm_gb": 80,
        "bf16_tflops": 100,
        "busy_watts": 500,
        "idle_watts": 100,
        "nvlink_domain_gpus": 8,
        "gpus_per_node": 8,
        "sources": dict.fromkeys((*_FIGURES, "gpus_per_node"), "assumption"),
    }
    doc.update(changes)
    return doc


Edit = Callable[[Doc], object]

BAD: list[Any] = [
    # --- field checks (pydantic) --------------------------------------------------------
    pytest.param(
        lambda d: group(d).update(domains=0),
        ["sites[0].pods[0].groups[0].domains: must be > 0"],
        id="zero-domains",
    ),
    pytest.param(
        lambda d: group(d).update(domains="two"),
        ["sites[0].pods[0].groups[0].domains: must be an integer"],
        id="domains-not-a-number",
    ),
    pytest.param(
        lambda d: group(d).update(domains=1.5),
        ["sites[0].pods[0].groups[0].domains: must be a whole number"],
        id="fractional-domains",
    ),
    pytest.param(
        lambda d: group(d).update(gpus_per_node=0),
        ["sites[0].pods[0].groups[0].gpus_per_node: must be > 0"],
        id="zero-gpus-per-node",
    ),
    pytest.param(
        lambda d: d["sites"][0].update(pue=0.9),
        ["sites[0].pue: must be >= 1"],
        id="pue-below-one",
    ),
    pytest.param(
        lambda d: d["sites"][1].update(power_mw=-5),
        ["sites[1].power_mw: must be > 0"],
        id="negative-power",
    ),
    pytest.param(
        lambda d: d["links"][0].update(gbps=0),
        ["links[0].gbps: must be > 0"],
        id="zero-bandwidth",
    ),
    pytest.param(
        lambda d: d["tenants"][0]["quotas"][0].update(nominal=-1),
        ["tenants[0].quotas[0].nominal: must be >= 0"],
        id="negative-nominal",
    ),
    pytest.param(
        lambda d: d["sites"][0].pop("region"),
        ["sites[0].region: is required"],
        id="missing-region",
    ),
    pytest.param(
        lambda d: d.pop("tenants"),
        ["tenants: is required"],
        id="missing-tenants",
    ),
    pytest.param(
        lambda d: group(d).pop("owner"),
        ["sites[0].pods[0].groups[0].owner: is required"],
        id="missing-owner",
    ),
    pytest.param(
        lambda d: d["sites"][0].update(colour="blue"),
        ["sites[0].colour: unknown field"],
        id="extra-field-on-site",
    ),
    pytest.param(
        lambda d: d["tenants"][1]["children"][0].update(quota=[]),
        ["tenants[1].children[0].quota: unknown field"],
        id="extra-field-typo-in-child",
    ),
    pytest.param(
        lambda d: d.update(name="Bad Name"),
        ["name: must be a lower-case identifier (a-z, 0-9, '.', '_', '-')"],
        id="name-not-an-identifier",
    ),
    pytest.param(
        lambda d: d["tenants"][0].update(name=103959),
        ["tenants[0].name: must be a string"],
        id="unquoted-numeric-name",
    ),
    pytest.param(
        lambda d: d["sites"][0].update(pods=[]),
        ["sites[0].pods: must have at least 1 item(s)"],
        id="site-without-pods",
    ),
    pytest.param(
        lambda d: d.update(tenants=[]),
        ["tenants: must have at least 1 item(s)"],
        id="no-tenants",
    ),
    pytest.param(
        lambda d: d.update(sites="s1"),
        ["sites: must be a list"],
        id="sites-not-a-list",
    ),
    pytest.param(
        lambda d: d["sites"].__setitem__(1, "s2"),
        ["sites[1]: must be a mapping"],
        id="site-not-a-mapping",
    ),
    pytest.param(
        lambda d: d["tenants"][0]["quotas"][0].update(lending_limit=9),
        ["tenants[0].quotas[0].lending_limit: must not exceed nominal"],
        id="lending-above-nominal",
    ),
    pytest.param(
        lambda d: d.update(gpu_models=[model_doc(idle_watts=600)]),
        ["gpu_models[0].idle_watts: must not exceed busy_watts"],
        id="model-idle-above-busy",
    ),
    pytest.param(
        lambda d: d.update(gpu_models=[model_doc(sources={})]),
        [
            (
                "gpu_models[0].sources: no source for hbm_gb, bf16_tflops, busy_watts, "
                "idle_watts, nvlink_domain_gpus, gpus_per_node"
            )
        ],
        id="model-without-sources",
    ),
    pytest.param(
        lambda d: d.update(gpu_models=[model_doc(nvlink_domain_gpus=12)]),
        ["gpu_models[0].nvlink_domain_gpus: must be a multiple of gpus_per_node"],
        id="model-domain-not-whole-nodes",
    ),
    # --- duplicates ------------------------------------------------------------------------
    pytest.param(
        lambda d: d["sites"][1].update(name="s1"),
        ["sites[1].name: duplicate 's1'"],
        id="duplicate-site",
    ),
    pytest.param(
        lambda d: d["sites"][1]["pods"].append(copy.deepcopy(d["sites"][1]["pods"][0])),
        ["sites[1].pods[1].name: duplicate 'p1'"],
        id="duplicate-pod-in-site",
    ),
    pytest.param(
        lambda d: d["tenants"][1]["children"][0].update(name="a"),
        ["tenants[1].children[0].name: duplicate tenant 'a'"],
        id="duplicate-tenant-across-tree",
    ),
    pytest.param(
        lambda d: d["tenants"][0]["quotas"].append({"gpu_class": "b200", "nominal": 0}),
        ["tenants[0].quotas[1].gpu_class: duplicate 'b200'"],
        id="duplicate-quota-class",
    ),
    pytest.param(
        lambda d: d["links"].append({"a": "s2", "b": "s1", "gbps": 100, "latency_ms": 2}),
        ["links[1]: duplicate link between 's2' and 's1'"],
        id="duplicate-link-reversed",
    ),
    # --- cross-references (whole-document checks) -----------------------------------------
    pytest.param(
        lambda d: group(d).update(model="x100"),
        [
            "sites[0].pods[0].groups[0].model: unknown GPU model 'x100'",
            "tenants[0].quotas[0].gpu_class: no GPUs of class 'b200'",
        ],
        id="unknown-model",
    ),
    pytest.param(
        lambda d: group(d).update(model="x100", gpu_class="b200"),
        ["sites[0].pods[0].groups[0].model: unknown GPU model 'x100'"],
        id="unknown-model-one-message-per-typo",
    ),
    pytest.param(
        lambda d: group(d).update(owner="nobody"),
        ["sites[0].pods[0].groups[0].owner: unknown tenant 'nobody'"],
        id="unknown-owner",
    ),
    pytest.param(
        lambda d: d["links"][0].update(b="s9"),
        ["links[0].b: unknown site 's9'"],
        id="unknown-link-site",
    ),
    pytest.param(
        lambda d: d["links"][0].update(b="s1"),
        ["links[0].b: a link must join two different sites"],
        id="link-to-itself",
    ),
    pytest.param(
        lambda d: d["tenants"][0]["quotas"][0].update(nominal=17),
        [
            "tenants[0].quotas[0].nominal: 17 exceeds the capacity of class 'b200' (16)",
            "tenants: nominal quotas of class 'b200' add up to 17, more than its capacity (16)",
        ],
        id="nominal-above-capacity",
    ),
    pytest.param(
        lambda d: d["tenants"][1]["children"][0].update(
            quotas=[{"gpu_class": "b200", "nominal": 9}]
        ),
        ["tenants: nominal quotas of class 'b200' add up to 17, more than its capacity (16)"],
        id="nominal-sum-above-capacity",
    ),
    pytest.param(
        lambda d: d["tenants"][1]["children"][0].update(
            quotas=[{"gpu_class": "h100", "nominal": 1}]
        ),
        ["tenants[1].children[0].quotas[0].gpu_class: no GPUs of class 'h100'"],
        id="quota-for-absent-class",
    ),
    pytest.param(
        lambda d: group(d, site=1).update(gpu_class="b200"),
        [
            (
                "sites[1].pods[0].groups[0].gpu_class: class 'b200' already holds model "
                "'b200', not 'gb200'"
            ),
            "tenants[1].quotas[0].gpu_class: no GPUs of class 'gb200'",
        ],
        id="class-mixing-models",
    ),
    pytest.param(
        lambda d: d.update(default_tenant="nobody"),
        ["default_tenant: unknown tenant 'nobody'"],
        id="unknown-default-tenant",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BAD)
def test_bad_spec_reports_exact_path_and_problem(edit: Edit, expected: list[str]) -> None:
    doc = good()
    edit(doc)
    with pytest.raises(SpecError) as info:
        parse_fleet(doc, "bad.yaml")
    assert info.value.problems == expected
    assert str(info.value) == "bad.yaml: " + "; ".join(expected)


def test_good_spec_loads_and_is_frozen() -> None:
    fleet = parse_fleet(good())
    assert [s.name for s in fleet.sites] == ["s1", "s2"]
    with pytest.raises(pydantic.ValidationError):
        fleet.sites[0].pue = 2.0  # type: ignore[misc]  # assigning a frozen field is the point


def test_problems_are_all_reported_at_once() -> None:
    doc = good()
    group(doc).update(domains=0)
    doc["sites"][1].update(pue=5)
    with pytest.raises(SpecError) as info:
        parse_fleet(doc)
    assert info.value.problems == [
        "sites[0].pods[0].groups[0].domains: must be > 0",
        "sites[1].pue: must be <= 3",
    ]


@pytest.mark.parametrize("raw", [None, [1, 2], "fleet"], ids=["empty", "list", "string"])
def test_document_that_is_not_a_mapping(raw: object) -> None:
    with pytest.raises(SpecError) as info:
        parse_fleet(raw, "f.yaml")
    assert info.value.problems == ["document: must be a mapping with 'name', 'sites' and 'tenants'"]


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsites: [\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_fleet(path)
    assert info.value.source == str(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("line 3: not valid YAML (")


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        load_fleet("/nonexistent/fleet.yaml")
    assert info.value.problems == ["file not found"]
    with pytest.raises(SpecError) as info:
        load_fleet("no-such-fleet")
    known = ", ".join(bundled_fleets())
    assert info.value.problems == [f"no bundled fleet or file of that name (bundled: {known})"]


def test_file_round_trip(tmp_path: Path) -> None:
    """A fleet written as YAML by a user loads to the same spec as the parsed document."""
    import yaml  # noqa: PLC0415 (only this test writes YAML)

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(good()), encoding="utf-8")
    assert load_fleet(path) == parse_fleet(good())


def test_cohort_is_inherited_by_children() -> None:
    fleet = parse_fleet(good())
    cohorts = {t.name: cohort for t, _parent, cohort in fleet.iter_tenants()}
    parents = {t.name: (p.name if p else None) for t, p, _ in fleet.iter_tenants()}
    assert cohorts == {"a": "c", "b": "c", "b1": "c"}
    assert parents == {"a": None, "b": None, "b1": "b"}


def test_fleet_models_extend_the_catalogue() -> None:
    doc = good()
    doc["gpu_models"] = [model_doc()]
    doc["sites"][0]["pods"][0]["groups"].append({"model": "x1", "domains": 1, "owner": "a"})
    doc["tenants"][0]["quotas"].append({"gpu_class": "x1", "nominal": 8})
    fleet = parse_fleet(doc)
    assert fleet.gpu_models[0].id == "x1"


@pytest.mark.parametrize(
    ("nominal", "lending_limit", "lendable"),
    [(10, None, 10), (10, 4, 4), (10, 0, 0)],
    ids=["default-lends-all", "limited", "lends-nothing"],
)
def test_quota_lendable(nominal: int, lending_limit: int | None, lendable: int) -> None:
    assert Quota(gpu_class="g", nominal=nominal, lending_limit=lending_limit).lendable == lendable


def test_catalogue_has_the_required_models_each_figure_sourced() -> None:
    cat = catalogue()
    required = {"gb200", "b200", "h200", "h100", "a100-80g", "philly-12g", "philly-24g"}
    assert required <= set(cat)
    for model in cat.values():
        for figure in (*_FIGURES, "gpus_per_node"):
            assert model.sources[figure].strip(), f"{model.id}.{figure} has an empty source"


def test_catalogue_placement_units_match_facts() -> None:
    """facts.md §2: NVL72 is one 72-GPU domain of 4-GPU trays; HGX servers are 8-GPU domains."""
    cat = catalogue()
    assert (cat["gb200"].nvlink_domain_gpus, cat["gb200"].gpus_per_node) == (72, 4)
    for hgx in ("b200", "h200", "h100", "a100-80g"):
        assert (cat[hgx].nvlink_domain_gpus, cat[hgx].gpus_per_node) == (8, 8)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("sites", 2, "pods", 0, "domains"), "sites[2].pods[0].domains"),
        (("name",), "name"),
        ((0, "id"), "[0].id"),
        ((), ""),
    ],
    ids=["nested", "top-level", "leading-index", "empty"],
)
def test_format_path(loc: tuple[int | str, ...], path: str) -> None:
    assert format_path(loc) == path


def test_json_schema_has_help_on_fields() -> None:
    schema = Fleet.model_json_schema()
    assert set(schema["required"]) == {"name", "sites", "tenants"}
    group_schema = schema["$defs"]["DomainGroup"]["properties"]
    assert group_schema["domains"]["description"]
