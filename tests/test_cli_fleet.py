"""`aifactory --version` and `aifactory fleet ...` through Typer's test runner.

The JSON of ``fleet show --json`` is a contract other tools read, so its keys are pinned
here; a bad file must give exit code 2 and a ``path: problem`` message, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aifactory import __version__
from aifactory.cli import app
from aifactory.fleet import bundled_fleets, fleet_summary, load_fleet

CONTRACT_KEYS = {
    "name",
    "gpus_total",
    "gpus_by_tenant",
    "gpus_by_site",
    "gpus_by_model",
    "nvlink_domains",
    "power_mw",
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"aifactory {__version__}"


def test_fleet_list_names_every_bundled_fleet(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fleet", "list"])
    assert result.exit_code == 0, result.output
    for name in bundled_fleets():
        assert name in result.stdout
    assert "325,000" in result.stdout  # korea-2025's size, as the table prints it


def test_fleet_show_by_name(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fleet", "show", "demo"])
    assert result.exit_code == 0, result.output
    for text in ("GPUs by owner, site and model", "Sites", "Quotas", "seoul", "startup"):
        assert text in result.stdout
    assert "NVLink domains: 78" in result.stdout


def test_fleet_show_json_contract(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fleet", "show", "korea-2025", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= CONTRACT_KEYS
    assert data["name"] == "korea-2025"
    assert set(data["gpus_by_tenant"]) == {
        "samsung",
        "sk",
        "hyundai",
        "naver",
        "government",
        "national-pool",
    }
    for key in ("gpus_by_tenant", "gpus_by_site", "gpus_by_model"):
        assert sum(data[key].values()) == data["gpus_total"], key
    assert isinstance(data["nvlink_domains"], int)
    assert isinstance(data["power_mw"], float)


def test_fleet_show_json_from_a_path(runner: CliRunner, tmp_path: Path) -> None:
    """A user's own file: same JSON as the loaded spec's summary."""
    path = tmp_path / "mine.yaml"
    spec = load_fleet("demo").model_dump(mode="json", exclude_defaults=True)
    spec["name"] = "mine"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = runner.invoke(app, ["fleet", "show", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == fleet_summary(load_fleet(path))
    assert json.loads(result.stdout)["name"] == "mine"


def test_fleet_show_unknown_name_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fleet", "show", "atlantis"])
    assert result.exit_code == 2
    assert "atlantis: no bundled fleet or file of that name" in result.stderr
    assert "Traceback" not in result.output


def test_fleet_validate_good_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(load_fleet("demo").model_dump(mode="json")), encoding="utf-8")
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok: demo, 1,008 GPUs in 2 site(s)" in result.stdout


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "name: x\nsites: [\n",
            "line 3: not valid YAML",
            id="bad-yaml",
        ),
        pytest.param(
            "- just\n- a list\n",
            "document: must be a mapping with 'name', 'sites' and 'tenants'",
            id="not-a-mapping",
        ),
    ],
)
def test_fleet_validate_bad_file_exits_2(
    runner: CliRunner, tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}: {problem}" in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_fleet_validate_field_problems_come_first(runner: CliRunner, tmp_path: Path) -> None:
    """Cross-references are checked only on a document whose fields are valid."""
    spec = load_fleet("demo").model_dump(mode="json")
    spec["sites"][0]["pods"][0]["groups"][0]["domains"] = 0
    spec["links"][0]["b"] = "mars"
    path = tmp_path / "two-problems.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}: sites[0].pods[0].groups[0].domains: must be > 0"
    )


def test_fleet_validate_cross_reference_problems(runner: CliRunner, tmp_path: Path) -> None:
    spec = load_fleet("demo").model_dump(mode="json")
    spec["links"][0]["b"] = "mars"
    spec["default_tenant"] = "nobody"
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}: 2 problems" in result.stderr
    assert "  - links[0].b: unknown site 'mars'" in result.stderr
    assert "  - default_tenant: unknown tenant 'nobody'" in result.stderr


def test_fleet_validate_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}: file not found" in result.stderr


def test_fleet_schema_is_json_schema(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fleet", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "Fleet"
    assert {"name", "sites", "tenants"} <= set(schema["required"])
    assert {"Site", "Pod", "DomainGroup", "Tenant", "Quota", "Link"} <= set(schema["$defs"])


def test_readme_fleet_example_is_valid(runner: CliRunner, repo_root: Path, tmp_path: Path) -> None:
    """The README's fleet example stays a valid fleet."""
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```yaml\n")[1:]
    assert blocks, "README has a ```yaml fleet example"
    path = tmp_path / "my-fleet.yaml"
    path.write_text(blocks[0].split("```")[0], encoding="utf-8")
    result = runner.invoke(app, ["fleet", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok: my-fleet, 416 GPUs in 1 site(s)" in result.stdout
