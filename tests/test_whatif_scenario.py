"""Scenario files: the typed model, every edit kind on the demo fleet, the schema, and the CLI.

Every edit is checked by what it did to the re-validated fleet (or the run plan), and every
refusal by the path it names: a planner with a long scenario file must see which variation
and which field is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.fleet import SpecError, fleet_summary, load_fleet
from aifactory.whatif.apply import bundled_scenarios, check_scenario, load_scenario, plan_run
from aifactory.whatif.model import Scenario, scenario_schema
from aifactory.whatif.runner import RunTask, derive_seed, tasks_for, workload_table

SCHEMA = Path(__file__).parents[1] / "src" / "aifactory" / "whatif" / "scenario.schema.json"


def scenario(*edits: dict[str, Any], **base: Any) -> dict[str, Any]:
    """A one-variation scenario on the demo fleet (builder)."""
    return {
        "name": "t",
        "base": {"fleet": "demo", "days": 0.25, "failures": "llama3", **base},
        "variations": [{"name": "v", "edits": list(edits)}],
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def plan(tmp_path: Path, *edits: dict[str, Any], **base: Any) -> Any:
    spec, where = load_scenario(write(tmp_path, scenario(*edits, **base)))
    return plan_run(spec, "v", where)


def problems(tmp_path: Path, *edits: dict[str, Any], **base: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        plan(tmp_path, *edits, **base)
    return info.value.problems


def quota(fleet: Any, tenant: str, cls: str) -> Any:
    t = next(t for t, _, _ in fleet.iter_tenants() if t.name == tenant)
    return next(q for q in t.quotas if q.gpu_class == cls)


def test_add_gpus_grows_the_class_and_the_owners_quota(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {"edit": "add_gpus", "site": "busan", "model": "b200", "owner": "startup", "gpus": 144},
    )
    base = load_fleet("demo")
    assert fleet_summary(p.fleet)["gpus_total"] == fleet_summary(base)["gpus_total"] + 144
    assert quota(p.fleet, "startup", "b200").nominal == quota(base, "startup", "b200").nominal + 144
    busan = next(s for s in p.fleet.sites if s.name == "busan")
    assert [pod.name for pod in busan.pods] == ["hgx", "whatif"]


def test_add_gpus_splits_quota_among_tenants_with_the_remainder_first(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {
            "edit": "add_gpus",
            "site": "seoul",
            "model": "h100",
            "owner": "lab",
            "gpus": 24,
            "quota_to": ["public", "startup"],
        },
    )
    assert quota(p.fleet, "public", "h100").nominal == 12
    assert quota(p.fleet, "startup", "h100").nominal == 12
    assert quota(p.fleet, "lab", "h100").nominal == 288


def test_add_site_then_gpus_makes_a_linked_site(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {
            "edit": "add_site",
            "site": "daegu",
            "region": "Daegu",
            "power_mw": 1,
            "pue": 1.2,
            "links": [{"to": "busan", "gbps": 100, "latency_ms": 0.5}],
        },
        {"edit": "add_gpus", "site": "daegu", "model": "b200", "owner": "public", "gpus": 16},
    )
    assert "daegu" in [s.name for s in p.fleet.sites]
    assert any({ln.a, ln.b} == {"daegu", "busan"} and ln.gbps == 100 for ln in p.fleet.links)
    assert quota(p.fleet, "public", "b200").nominal == 16


def test_remove_gpus_takes_whole_domains_and_the_named_quota(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {
            "edit": "remove_gpus",
            "site": "seoul",
            "gpu_class": "h100",
            "gpus": 80,
            "quota_from": "lab",
        },
    )
    assert (
        fleet_summary(p.fleet)["gpus_total"] == fleet_summary(load_fleet("demo"))["gpus_total"] - 80
    )
    assert quota(p.fleet, "lab", "h100").nominal == 208


def test_removing_gpus_below_the_quotas_is_refused_naming_the_variation(tmp_path: Path) -> None:
    found = problems(
        tmp_path, {"edit": "remove_gpus", "site": "seoul", "gpu_class": "h100", "gpus": 80}
    )
    assert any(
        p.startswith("variations[0] 'v': fleet after edits: ") and "h100" in p for p in found
    ), found


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (
            {"edit": "add_gpus", "site": "busan", "model": "b200", "owner": "startup", "gpus": 10},
            "gpus",
        ),
        (
            {"edit": "add_gpus", "site": "mars", "model": "b200", "owner": "startup", "gpus": 8},
            "site",
        ),
        (
            {"edit": "add_gpus", "site": "busan", "model": "nope", "owner": "startup", "gpus": 8},
            "model",
        ),
        (
            {"edit": "add_gpus", "site": "busan", "model": "b200", "owner": "ghost", "gpus": 8},
            "owner",
        ),
        ({"edit": "set_quota", "tenant": "ghost", "gpu_class": "b200", "nominal": 1}, "tenant"),
        ({"edit": "link_bandwidth", "between": [["seoul", "mars"]], "factor": 2}, "between[0]"),
        ({"edit": "workload_growth", "tenant": "ghost", "factor": 2}, "tenant"),
        ({"edit": "remove_gpus", "site": "busan", "gpus": 1000}, "gpus"),
    ],
)
def test_a_bad_edit_names_its_variation_edit_and_field(
    tmp_path: Path, edit: dict[str, Any], field: str
) -> None:
    found = problems(tmp_path, edit)
    assert found[0].startswith(f"variations[0] 'v'.edits[0].{field}: "), found


def test_set_quota_and_cohort_change_lending(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {"edit": "set_cohort", "tenant": "public", "cohort": "shared"},
        {
            "edit": "set_quota",
            "tenant": "public",
            "gpu_class": "gb200",
            "borrowing_limit": "unlimited",
            "lending_limit": 36,
        },
        {
            "edit": "set_quota",
            "tenant": "startup",
            "gpu_class": "b200",
            "lending_limit": "unlimited",
        },
    )
    public = next(t for t, _, _ in p.fleet.iter_tenants() if t.name == "public")
    assert public.cohort == "shared"
    q = quota(p.fleet, "public", "gb200")
    assert (q.borrowing_limit, q.lending_limit) == (None, 36)
    assert quota(p.fleet, "startup", "b200").lending_limit is None
    assert p.unmodelled == ()


def test_lending_above_nominal_is_refused_by_the_fleet_check(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {"edit": "set_quota", "tenant": "public", "gpu_class": "gb200", "lending_limit": 100},
    )
    assert found[0].startswith("variations[0] 'v': fleet after edits: tenants[2].quotas[0]")


def test_link_bandwidth_is_applied_and_modelled(tmp_path: Path) -> None:
    p = plan(tmp_path, {"edit": "link_bandwidth", "factor": 4})
    assert [ln.gbps for ln in p.fleet.links] == [1600.0]
    assert p.unmodelled == ()  # the twin reads links (staging, cross-site gangs)
    p = plan(tmp_path, {"edit": "link_bandwidth", "between": [["busan", "seoul"]], "gbps": 10})
    assert [ln.gbps for ln in p.fleet.links] == [10.0]


def test_power_cap_is_applied_and_modelled(tmp_path: Path) -> None:
    p = plan(tmp_path, {"edit": "power_cap", "site": "busan", "power_mw": 0.5})
    assert next(s for s in p.fleet.sites if s.name == "busan").power_mw == 0.5
    assert p.unmodelled == ()  # the scheduler holds starts past a site's cap


def test_a_lower_power_cap_holds_a_sweep_runs_site_under_it(tmp_path: Path) -> None:
    """A real sweep run (6 h of the demo fleet): busan's peak goes past 0.3 MW in the base
    and stays at or under a 0.3 MW cap in the variation."""
    from aifactory.whatif.runner import run_one  # noqa: PLC0415

    doc = scenario({"edit": "power_cap", "site": "busan", "power_mw": 0.3}, load=0.9, seed=3)
    rows = {
        v: run_one(RunTask(scenario=doc, where=str(tmp_path), variation=v, seed_index=0, seed=5))
        for v in ("base", "v")
    }
    assert [r["status"] for r in rows.values()] == ["ok", "ok"]
    assert rows["base"]["site.busan.peak_mw"] > 0.3  # the cap would bind
    assert rows["v"]["site.busan.capacity_mw"] == 0.3
    assert rows["v"]["site.busan.peak_mw"] <= 0.3 + 1e-9


def test_failure_rate_multiplies_and_needs_failures_on(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        {"edit": "failure_rate", "multiplier": 2},
        {"edit": "failure_rate", "multiplier": 1.5},
    )
    assert p.failure_multiplier == 3.0
    found = problems(tmp_path, {"edit": "failure_rate", "multiplier": 2}, failures="off")
    assert found == ["variations[0] 'v'.edits[0].multiplier: the base runs with failures off"]


def test_policy_edit_changes_only_what_it_names(tmp_path: Path) -> None:
    p = plan(tmp_path, {"edit": "policy", "policy": "sjf", "preemption": False})
    assert (p.policy, p.backfill.value, p.preemption) == ("sjf", "easy", False)


def test_scan_limits_come_from_the_base_and_a_policy_edit_changes_what_it_names(
    tmp_path: Path,
) -> None:
    plain = plan(tmp_path, {"edit": "policy"})
    assert (plain.queue_depth, plain.max_job_test) == (0, 0)  # no limit, as before
    p = plan(tmp_path, {"edit": "policy", "queue_depth": 50}, queue_depth=100, max_job_test=200)
    assert (p.queue_depth, p.max_job_test) == (50, 200)
    spec, where = load_scenario(
        write(tmp_path, scenario({"edit": "policy"}, queue_depth=100, max_job_test=200))
    )
    base = plan_run(spec, "base", where)
    assert (base.queue_depth, base.max_job_test) == (100, 200)


def test_a_sweep_run_hands_the_scan_limits_to_the_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aifactory.twin.run as twin_run  # noqa: PLC0415
    from aifactory.whatif import runner  # noqa: PLC0415

    seen: list[Any] = []

    class StopError(Exception):
        pass

    def fake_run_twin(spec: Any, **_kw: Any) -> Any:
        seen.append(spec)
        raise StopError

    monkeypatch.setattr(runner, "workload_table", lambda plan, seed: None)
    monkeypatch.setattr(twin_run, "run_twin", fake_run_twin)
    p = plan(tmp_path, {"edit": "policy", "max_job_test": 7}, queue_depth=100)
    task = runner.RunTask(scenario={}, where=str(tmp_path), variation="v", seed_index=0, seed=1)
    with pytest.raises(StopError):
        runner._run(p, task)
    assert (seen[0].queue_depth, seen[0].max_job_test) == (100, 7)


def test_workload_growth_grows_one_tenant_and_leaves_the_others_alone(tmp_path: Path) -> None:
    base_plan = plan_run(
        *_loaded(tmp_path, {"edit": "workload_growth", "tenant": "startup", "factor": 2}),
    )
    grown = plan(tmp_path, {"edit": "workload_growth", "tenant": "startup", "factor": 2})
    assert grown.growth == {"startup": 2.0}
    a = workload_table(base_plan, 5).to_pylist()
    b = workload_table(grown, 5).to_pylist()
    others_a = [r for r in a if r["tenant"] != "startup"]
    others_b = [r for r in b if r["tenant"] != "startup"]
    assert others_a == others_b
    gpu_s_a = sum(r["gpus"] * r["duration_s"] for r in a if r["tenant"] == "startup")
    gpu_s_b = sum(r["gpus"] * r["duration_s"] for r in b if r["tenant"] == "startup")
    # The synthesiser hits its offered load per class to within one job: about twice the work.
    assert 1.6 < gpu_s_b / gpu_s_a < 2.4
    submits = [r["submit_s"] for r in b]
    assert submits == sorted(submits)


def _loaded(tmp_path: Path, *edits: dict[str, Any]) -> tuple[Scenario, str, Path]:
    spec, where = load_scenario(write(tmp_path, scenario(*edits)))
    return spec, "base", where


def test_growth_needs_the_national_workload(tmp_path: Path) -> None:
    trace = tmp_path / "t.parquet"
    found = problems(
        tmp_path, {"edit": "workload_growth", "tenant": "lab", "factor": 2}, workload=str(trace)
    )
    assert found == [
        "variations[0] 'v'.edits[0].tenant: workload growth needs the national workload"
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                **scenario({"edit": "policy"}),
                "variations": [{"name": "base", "edits": [{"edit": "policy"}]}],
            },
            "variations[0].name: 'base' is the run without edits",
        ),
        (
            {
                **scenario(),
                "variations": [
                    {"name": "a", "edits": [{"edit": "policy"}]},
                    {"name": "a", "edits": [{"edit": "policy"}]},
                ],
            },
            "variations[1].name: duplicate 'a'",
        ),
        (scenario({"edit": "teleport"}), "variations[0].edits[0]"),
        (
            scenario({"edit": "failure_rate", "multiplier": -1}),
            "variations[0].edits[0].failure_rate.multiplier",
        ),
        (scenario({"edit": "link_bandwidth"}), "variations[0].edits[0].link_bandwidth.factor"),
        (scenario({"edit": "policy"}, days=0), "base.days"),
        (scenario({"edit": "policy"}, queue_depth=-1), "base.queue_depth"),
        (scenario({"edit": "policy"}, max_job_test=2**31), "base.max_job_test"),
        (
            scenario({"edit": "policy", "queue_depth": 1.5}),
            "variations[0].edits[0].policy.queue_depth",
        ),
        (
            scenario({"edit": "policy", "max_job_test": 2**31}),
            "variations[0].edits[0].policy.max_job_test",
        ),
        (scenario({"edit": "policy"}, colour="red"), "base.colour"),
        ({**scenario(), "variations": [{"name": "v", "edits": []}]}, "variations[0].edits"),
    ],
)
def test_an_invalid_file_is_refused_naming_the_path(
    tmp_path: Path, doc: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_scenario(write(tmp_path, doc))
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_relative_fleet_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    fleet_doc = load_fleet("demo").model_dump(mode="json")
    (tmp_path / "fleets").mkdir()
    (tmp_path / "fleets" / "mine.yaml").write_text(yaml.safe_dump(fleet_doc), encoding="utf-8")
    spec, where = load_scenario(
        write(tmp_path, scenario({"edit": "policy"}, fleet="fleets/mine.yaml"))
    )
    assert check_scenario(spec, where)[0].fleet.name == "demo"


def test_seeds_are_derived_and_paired_across_variations(tmp_path: Path) -> None:
    spec, where = load_scenario(write(tmp_path, scenario({"edit": "policy"})))
    tasks = tasks_for(spec, where, 3)
    seeds = {(t.variation, t.seed_index): t.seed for t in tasks}
    assert [seeds[("base", i)] for i in range(3)] == [seeds[("v", i)] for i in range(3)]
    assert len({seeds[("base", i)] for i in range(3)}) == 3
    unpaired = Scenario.model_validate({**scenario({"edit": "policy"}), "paired": False})
    tasks = tasks_for(unpaired, where, 2)
    assert tasks[0].seed != tasks[2].seed
    assert tasks[0].seed == derive_seed(unpaired.base.seed, "base", 0)
    assert isinstance(tasks[0], RunTask)


def test_the_committed_schema_is_current() -> None:
    committed = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert committed == scenario_schema(), (
        "regenerate: aifactory scenario schema > src/aifactory/whatif/scenario.schema.json"
    )


def test_korea_2030_is_bundled_and_asks_the_four_questions() -> None:
    assert "korea-2030" in bundled_scenarios()
    spec, where = load_scenario("korea-2030")
    plans = {p.variation: p for p in check_scenario(spec, where)}
    assert set(plans) == {"base", "highway-2030", "naver-lends", "busan-20k", "failures-2x"}
    base_gpus = fleet_summary(plans["base"].fleet)["gpus_total"]
    assert fleet_summary(plans["busan-20k"].fleet)["gpus_total"] == base_gpus + 20_000
    naver = next(t for t, _, _ in plans["naver-lends"].fleet.iter_tenants() if t.name == "naver")
    assert naver.cohort == "sovereign"
    assert plans["failures-2x"].failure_multiplier == 2.0
    assert plans["highway-2030"].unmodelled == ()


runner = CliRunner()


def test_cli_validate_and_show(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scenario", "validate", "korea-2030"])
    assert result.exit_code == 0, result.output
    assert "base and 4 variation(s) are valid" in result.output
    result = runner.invoke(app, ["scenario", "show", "korea-2030", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["name"] for r in doc["runs"]] == [
        "base",
        "highway-2030",
        "naver-lends",
        "busan-20k",
        "failures-2x",
    ]
    assert doc["runs"][1]["not_modelled"] == []  # links are read (issue #20 §1)
    result = runner.invoke(app, ["scenario", "show", "korea-2030"])
    assert result.exit_code == 0
    assert "busan-20k" in result.output


def test_cli_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        scenario(
            {"edit": "add_gpus", "site": "busan", "model": "b200", "owner": "startup", "gpus": 10}
        ),
    )
    result = runner.invoke(app, ["scenario", "validate", str(path)])
    assert result.exit_code == 2
    assert "variations[0] 'v'.edits[0].gpus: 10 is not a whole number" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["scenario", "show", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.output


def test_edits_change_a_copy_never_the_base(tmp_path: Path) -> None:
    spec, where = load_scenario(
        write(
            tmp_path,
            scenario(
                {
                    "edit": "add_gpus",
                    "site": "busan",
                    "model": "b200",
                    "owner": "startup",
                    "gpus": 144,
                },
                {"edit": "link_bandwidth", "factor": 2},
            ),
        )
    )
    before = plan_run(spec, "base", where).fleet
    plan_run(spec, "v", where)
    after = plan_run(spec, "base", where).fleet
    assert after == before == load_fleet("demo")


def test_cli_lists_the_bundled_scenarios() -> None:
    result = runner.invoke(app, ["scenario", "list"])
    assert result.exit_code == 0
    assert "korea-2030" in result.output
