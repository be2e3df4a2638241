"""Projects and allocations follow the tenant tree as jobs and quotas do (issues #17 §2,
#19): a parent tenant's admin sees and manages the projects, allocations and statements of
every tenant below its own; a child's admin sees neither its parent's nor its siblings';
a member sees only the projects that name it, and charges only those. Every role against
every endpoint, through the real service on SQLite and PostgreSQL.

The tree is test_service_subtree's (jobs and projects in leaves)::

    gov ─┬─ cons-a ─┬─ proj-a1        lab (a tenant of its own)
         │          └─ proj-a2
         └─ cons-b ─── proj-b1
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aifactory.service.auth import Role, create_token
from api_support import Env, running_api
from test_service_subtree import tree_fleet
from test_service_support import DB_PARAMS, database_url

PROJECTS = ("proj-a1", "proj-a2", "proj-b1", "lab")  # one project per leaf, named by it
ROLES = {
    "gov-admin": ("gov", Role.TENANT_ADMIN),
    "cons-a-admin": ("cons-a", Role.TENANT_ADMIN),
    "proj-a1-admin": ("proj-a1", Role.TENANT_ADMIN),
    "cons-a-member": ("cons-a", Role.MEMBER),
    "a1-named": ("proj-a1", Role.MEMBER),  # a member of proj-a1's project
    "a1-unnamed": ("proj-a1", Role.MEMBER),  # of the tenant, not of its project
}
DAY = 86_400.0


@dataclass
class Platform:
    env: Env
    ids: dict[str, int]  # token name -> token id
    project: dict[str, int]  # tenant -> its project's id
    alloc: dict[str, int]  # tenant -> its project's allocation id


@pytest.fixture(scope="module", params=DB_PARAMS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp(f"alloc-tree-{request.param}")
    for url in database_url(request.param, tmp):
        with running_api(url, tmp, fleet=tree_fleet()) as env:
            ids = {}
            for name, (tenant, role) in ROLES.items():
                ids[name], env.tokens[name] = create_token(
                    env.service.db, tenant=tenant, role=role, now=0.0
                )
            project, alloc = {}, {}
            now = env.service.clock()
            for tenant in PROJECTS:
                members = [ids["a1-named"]] if tenant == "proj-a1" else []
                body = {
                    "name": f"p-{tenant}",
                    "tenant": tenant,
                    "start_s": now - DAY,
                    "end_s": now + 30 * DAY,
                    "members": members,
                }
                made = env.client.post("/v1/projects", json=body, headers=env.h("admin"))
                assert made.status_code == 201, made.text
                project[tenant] = made.json()["id"]
                ask = {"project": project[tenant], "gpu_class": "gb200", "gpu_hours": 100.0}
                asked = env.client.post("/v1/allocations", json=ask, headers=env.h("admin"))
                assert asked.status_code == 201, asked.text
                alloc[tenant] = asked.json()["id"]
            yield Platform(env, ids, project, alloc)


# Whose projects each role sees (every other: left out of lists, 404 when named).
SEES = [
    pytest.param("admin", set(PROJECTS), id="admin-sees-all"),
    pytest.param("gov-admin", {"proj-a1", "proj-a2", "proj-b1"}, id="root-admin-its-tree"),
    pytest.param("cons-a-admin", {"proj-a1", "proj-a2"}, id="parent-admin-its-children"),
    pytest.param("proj-a1-admin", {"proj-a1"}, id="child-admin-not-sibling"),
    pytest.param("cons-a-member", set(), id="member-of-parent-none"),
    pytest.param("a1-named", {"proj-a1"}, id="member-its-project"),
    pytest.param("a1-unnamed", set(), id="member-not-named-none"),
    pytest.param("lab-admin", {"lab"}, id="leaf-admin-outside-the-tree"),
    pytest.param("lab", set(), id="member-outside-not-named"),
]


@pytest.mark.parametrize(("who", "sees"), SEES)
def test_who_sees_which_projects_allocations_and_statements(
    platform: Platform, who: str, sees: set[str]
) -> None:
    env, h = platform.env, platform.env.h(who)
    listed = env.client.get("/v1/projects", headers=h)
    assert listed.status_code == 200, listed.text
    assert {p["tenant"] for p in listed.json()} == sees
    allocs = env.client.get("/v1/allocations", headers=h).json()
    assert {a["id"] for a in allocs} == {platform.alloc[t] for t in sees}
    for tenant in PROJECTS:
        code = 200 if tenant in sees else 404
        pid, aid = platform.project[tenant], platform.alloc[tenant]
        assert env.client.get(f"/v1/projects/{pid}", headers=h).status_code == code, tenant
        assert env.client.get(f"/v1/allocations/{aid}", headers=h).status_code == code, tenant
        by_project = env.client.get("/v1/allocations", params={"project": pid}, headers=h)
        assert by_project.status_code == code, tenant
        month = env.client.get(
            f"/v1/projects/{pid}/statement", params={"month": "2026-12"}, headers=h
        )
        assert month.status_code == code, (tenant, month.text)
        charges = env.client.get(f"/v1/projects/{pid}/charges", headers=h)
        assert charges.status_code == code, (tenant, charges.text)


@pytest.mark.parametrize(
    ("who", "tenant", "code"),
    [
        ("cons-a-admin", "proj-a2", 201),  # below its own
        ("gov-admin", "proj-b1", 201),
        ("cons-a-admin", "proj-b1", 403),  # a cousin
        ("proj-a1-admin", "proj-a2", 403),  # a sibling
        ("proj-a1-admin", "cons-a", 403),  # its parent
        ("a1-named", "proj-a1", 403),  # members create none
    ],
)
def test_who_creates_projects_of_which_tenants(
    platform: Platform, who: str, tenant: str, code: int
) -> None:
    env = platform.env
    now = env.service.clock()
    body = {"name": f"new-{who}-{tenant}", "tenant": tenant, "start_s": now, "end_s": now + DAY}
    made = env.client.post("/v1/projects", json=body, headers=env.h(who))
    assert made.status_code == code, made.text


@pytest.mark.parametrize(
    ("who", "tenant", "code"),
    [
        ("cons-a-admin", "proj-a2", 200),
        ("gov-admin", "proj-b1", 200),
        ("proj-a1-admin", "proj-a2", 404),
        ("cons-a-admin", "proj-b1", 404),
        ("a1-named", "proj-a1", 403),  # a member sees its project, manages nothing
        ("lab-admin", "proj-a1", 404),
    ],
)
def test_who_manages_members_of_which_projects(
    platform: Platform, who: str, tenant: str, code: int
) -> None:
    env = platform.env
    pid = platform.project[tenant]
    got = env.client.post(f"/v1/projects/{pid}/members", json={"add": []}, headers=env.h(who))
    assert got.status_code == code, got.text


@pytest.mark.parametrize(
    ("who", "tenant", "code"),
    [
        ("cons-a-admin", "proj-a1", 200),  # a parent's admin endorses below it
        ("proj-a1-admin", "proj-a2", 404),
        ("a1-named", "proj-a1", 403),
        ("lab-admin", "proj-b1", 404),
    ],
)
def test_who_endorses_which_requests(platform: Platform, who: str, tenant: str, code: int) -> None:
    env = platform.env
    pid = platform.project[tenant]
    ask = {"project": pid, "gpu_class": "gb200", "gpu_hours": 5.0}
    made = env.client.post("/v1/allocations", json=ask, headers=env.h("admin"))
    assert made.status_code == 201, made.text
    got = env.client.post(
        f"/v1/allocations/{made.json()['id']}/endorse", json={}, headers=env.h(who)
    )
    assert got.status_code == code, got.text


def test_members_of_project_a_cannot_see_or_charge_project_b(platform: Platform) -> None:
    env = platform.env
    mine, theirs = platform.project["proj-a1"], platform.project["proj-a2"]
    job = {"gpus": 8, "gpu_class": "gb200", "command": "true"}
    ok = env.submit("a1-named", **job, project=mine)
    assert ok.status_code == 201, ok.text
    for who, project in (("a1-named", theirs), ("a1-unnamed", mine)):
        refused = env.submit(who, **job, project=project)
        assert refused.status_code == 422, refused.text
        assert "project" in {p["field"] for p in refused.json()["detail"]}
    # and asks for no GPU-hours on it either
    ask = {"project": theirs, "gpu_class": "gb200", "gpu_hours": 1.0}
    assert (
        env.client.post("/v1/allocations", json=ask, headers=env.h("a1-named")).status_code == 404
    )
