"""``aifactory job list/cancel`` and ``aifactory quota`` for a tenant-admin of a parent
tenant, against a live server (Uvicorn in a thread) on the tenant tree of
``test_service_subtree``: it sees and cancels its projects' jobs and sees their quotas,
and a project's own admin sees only its project (issue #17 §2)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli import app
from aifactory.service.api import Service
from aifactory.service.auth import Role, create_token
from aifactory.service.settings import ExecutorKind, ServiceSettings
from cli_support import serving
from test_service_subtree import tree_raw

runner = CliRunner()


@dataclass
class Live:
    """The service behind the server, and the server's URL."""

    service: Service
    url: str


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    spec = tmp_path / "tree.yaml"
    spec.write_text(yaml.safe_dump(tree_raw()))
    settings = ServiceSettings(
        database_url=f"sqlite:///{tmp_path}/cli.db",
        fleet=str(spec),
        data_dir=tmp_path,
        executor=ExecutorKind.NOOP,
        tick_s=0.05,
    )
    service = Service(settings)
    with serving(service) as url:
        yield Live(service, url)


def as_token(monkeypatch: pytest.MonkeyPatch, live: Live, tenant: str, role: Role) -> None:
    """Point the CLI at the server with a new token of ``tenant`` and ``role``."""
    monkeypatch.setenv("AIFACTORY_URL", live.url)
    token = create_token(live.service.db, tenant=tenant, role=role, now=time.time())[1]
    monkeypatch.setenv("AIFACTORY_TOKEN", token)


def cli_json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_parent_admin_lists_cancels_and_sees_quotas_of_its_projects(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = {}
    for tenant in ("proj-a1", "proj-a2", "proj-b1"):
        as_token(monkeypatch, live, tenant, Role.MEMBER)
        ids[tenant] = cli_json("job", "submit", "sleep 60", "--gpus", "8")["id"]
    as_token(monkeypatch, live, "cons-a", Role.TENANT_ADMIN)
    page = cli_json("job", "list")
    assert {j["tenant"] for j in page["items"]} == {"proj-a1", "proj-a2"}
    only = cli_json("job", "list", "--tenant", "proj-a2")
    assert [j["id"] for j in only["items"]] == [ids["proj-a2"]]
    sibling = runner.invoke(app, ["job", "list", "--tenant", "proj-b1"])
    assert sibling.exit_code == 2
    assert "may not see 'proj-b1'" in sibling.output
    cancelled = cli_json("job", "cancel", str(ids["proj-a1"]))
    assert cancelled["id"] == ids["proj-a1"]
    refused = runner.invoke(app, ["job", "cancel", str(ids["proj-b1"])])
    assert refused.exit_code == 2
    assert "not found" in refused.output
    quotas = cli_json("quota")
    assert {r["tenant"] for r in quotas} == {"cons-a", "proj-a1", "proj-a2"}
    table = runner.invoke(app, ["quota"])
    assert "proj-a2" in table.stdout
    assert "proj-b1" not in table.stdout

    as_token(monkeypatch, live, "proj-a2", Role.TENANT_ADMIN)
    page = cli_json("job", "list")
    assert {j["tenant"] for j in page["items"]} == {"proj-a2"}
    parent = runner.invoke(app, ["job", "list", "--tenant", "cons-a"])
    assert parent.exit_code == 2
    assert {r["tenant"] for r in cli_json("quota")} == {"proj-a2"}
